"""``gateway run``: turn the flags into a ``GatewayConfig`` and run the gateway in the foreground.

Only configuration happens here (flags, or a ``--config`` file of the same names, see
``config_file``); the gateway (and asyncio, aiohttp, uvloop) is imported when the
command runs, so the other commands start fast. Flag syntax (``H:P``, ``K=V``) is checked here
so that a typo is a usage error (exit 2) before anything starts.
"""

from __future__ import annotations

import gc
from pathlib import Path

import click
from click.core import ParameterSource

from clusterlink.cli.config_file import load_into_context
from clusterlink.cli.context import (
    PEER_DIR_ENV,
    Globals,
    address_option,
    peer_dir_of,
    usage_errors,
)
from clusterlink.cli.documents import parse_label

__all__ = ["LOG_LEVELS", "gateway_run"]

FROM_FILE = ParameterSource.DEFAULT_MAP
LOG_LEVELS = ("debug", "info", "warning", "error")


@click.command("run")
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=load_into_context,
    help="A YAML file of flag: value (the long flags below without --, e.g. "
    "metrics-listen: 127.0.0.1:9090); flags given here win.",
    show_default=False,
)
@click.option(
    "--peer-dir",
    type=click.Path(path_type=Path),
    envvar=PEER_DIR_ENV,
    show_envvar=True,
    help="This peer's directory (from `create peer-cert`).",
)
@click.option(
    "--listen",
    default="0.0.0.0:8443",
    callback=address_option,
    help="Peer listener (mTLS), HOST:PORT.",
)
@click.option(
    "--admin-listen",
    default="127.0.0.1:8444",
    callback=address_option,
    help="Admin API (mTLS), HOST:PORT.",
)
@click.option("--import-host", default="127.0.0.1", help="Address the import listeners bind to.")
@click.option(
    "--metrics-listen",
    callback=address_option,
    help="Prometheus metrics (plain HTTP), HOST:PORT.",
)
@click.option(
    "--label",
    multiple=True,
    help="A label of this peer, K=V; repeat for more.",
    show_default=False,
)
@click.option(
    "--state",
    type=click.Path(path_type=Path),
    help="State database.",
    show_default="PEER_DIR/state.db",
)
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info")
@click.option(
    "--log-format", type=click.Choice(["text", "json"], case_sensitive=False), default="text"
)
@click.option(
    "--tunnel-mode",
    type=click.Choice(["mux", "basic"], case_sensitive=False),
    default="mux",
    help="How this gateway opens tunnels: mux = streams of one connection per "
    "peer gateway; basic = one TLS connection per tunnel. Both are always accepted.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=10_000,
    help="Connections open at once on the peer listener, and on each import "
    "listener; more are reset.",
)
@click.option(
    "--max-connections-per-peer",
    type=click.IntRange(min=1),
    default=10_000,
    help="Tunnels to and from one peer at once, counting those being set up; more "
    "are refused (503 overloaded; a source at the limit is skipped).",
)
@click.option(
    "--max-pending-handshakes",
    type=click.IntRange(min=1),
    default=256,
    help="TLS handshakes in progress on the peer listener; more are reset.",
)
@click.option(
    "--handshake-timeout",
    type=click.FloatRange(min=0.01),
    default=5.0,
    help="Seconds a TLS handshake may take, either way.",
)
@click.option(
    "--request-head-timeout",
    type=click.FloatRange(min=0.01),
    default=10.0,
    help="Seconds a peer may take to send a whole request head, from its first byte "
    "(basic mode); 408 after.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=3600.0,
    help="Seconds without a byte either way after which a tunnel is reset; 0: never.",
)
@click.option(
    "--udp-idle-timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    help="Seconds without a datagram either way after which a UDP flow ends; 0: never.",
)
@click.option(
    "--heartbeat-interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    help="Seconds between heartbeats to each peer.",
)
@click.option(
    "--unreachable-after",
    type=click.IntRange(min=1),
    default=5,
    help="Failed heartbeats in a row that make a peer unreachable.",
)
@click.option(
    "--reachable-after",
    type=click.IntRange(min=1),
    default=3,
    help="Answered heartbeats in a row that make it reachable again.",
)
@click.option(
    "--cert-check-interval",
    type=click.FloatRange(min=0),
    default=5.0,
    help="Seconds between looks at cert.pem, key.pem and ca.pem for changes, which "
    "are then used for new connections; 0: only on SIGHUP.",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    help="Kubernetes mode: the resources are custom resources in the cluster's API "
    "(in a pod: its service account), Imports get Services.",
)
@click.option(
    "--namespace",
    default="clusterlink-system",
    help="Kubernetes mode: ClusterLink's own namespace (Peers, Lease, Services).",
)
@click.option(
    "--kube-api", help="Kubernetes mode: the API server's URL, no credentials (tests, proxies)."
)
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path),
    help="Kubernetes mode: a kubeconfig file (default: in-cluster, or ~/.kube).",
)
@click.option(
    "--flow-log",
    type=click.Path(path_type=Path),
    help="Also append every finished tunnel record (see `clusterlink flows`) to this "
    "file, as JSON lines.",
)
@click.option(
    "--lease-duration",
    type=click.FloatRange(min=1.0),
    default=15.0,
    help="Kubernetes mode: seconds without a renewal after which another replica takes the lead.",
)
@click.pass_context
def gateway_run(
    ctx: click.Context,
    *,
    peer_dir: Path | None,
    listen: str,
    admin_listen: str,
    import_host: str,
    metrics_listen: str | None,
    label: tuple[str, ...],
    state: Path | None,
    log_level: str,
    log_format: str,
    tunnel_mode: str,
    max_connections: int,
    max_connections_per_peer: int,
    max_pending_handshakes: int,
    handshake_timeout: float,
    request_head_timeout: float,
    idle_timeout: float,
    udp_idle_timeout: float,
    heartbeat_interval: float,
    unreachable_after: int,
    reachable_after: int,
    cert_check_interval: float,
    kubernetes: bool,
    namespace: str,
    kube_api: str | None,
    kubeconfig: Path | None,
    flow_log: Path | None,
    lease_duration: float,
) -> None:
    """Run this peer's gateway in the foreground; SIGTERM or SIGINT stops it (exit 0)."""
    given = ctx.find_object(Globals)
    if given and given.peer_dir and ctx.get_parameter_source("peer_dir") is FROM_FILE:
        peer_dir = given.peer_dir  # `clusterlink --peer-dir D gateway run --config F`: D wins
    peer_dir = peer_dir_of(ctx, peer_dir)
    with usage_errors("--label"):
        labels = dict(parse_label(item) for item in label)
    # Importing the gateway creates a few hundred thousand objects, and the cyclic collector
    # would walk them over and over while they are made (about a tenth of the start-up time);
    # the gateway freezes them out of its way and turns the collector back on once it serves.
    gc.disable()
    from clusterlink.gateway import (
        DataplaneSettings,
        GatewayConfig,
        HealthSettings,
        KubernetesSettings,
        run_gateway,
    )

    if not kubernetes and (kube_api or kubeconfig):
        raise click.BadParameter("--kube-api and --kubeconfig need --kubernetes")
    kube = (
        KubernetesSettings(
            namespace=namespace,
            api_url=kube_api,
            kubeconfig=kubeconfig,
            lease_duration_s=lease_duration,
            lease_renew_s=lease_duration / 3,
            lease_retry_s=min(2.0, lease_duration / 5),
        )
        if kubernetes
        else None
    )

    config = GatewayConfig(
        peer_dir=peer_dir,
        listen=listen,
        admin_listen=admin_listen,
        import_host=import_host,
        metrics_listen=metrics_listen,
        labels=labels,
        state_path=state,
        log_level=log_level,
        log_format=log_format,
        dataplane=DataplaneSettings(
            multiplex=tunnel_mode == "mux",
            max_connections=max_connections,
            max_connections_per_peer=max_connections_per_peer,
            max_pending_handshakes=max_pending_handshakes,
            handshake_timeout_s=handshake_timeout,
            request_head_timeout_s=request_head_timeout,
            idle_timeout_s=idle_timeout,
            udp_idle_timeout_s=udp_idle_timeout,
        ),
        health=HealthSettings(
            interval_s=heartbeat_interval,
            timeout_s=max(1.0, heartbeat_interval),
            unreachable_after=unreachable_after,
            reachable_after=reachable_after,
        ),
        cert_check_interval_s=cert_check_interval,
        kubernetes=kube,
        flow_log=flow_log,
    )
    ctx.exit(run_gateway(config))

"""``gateway run``: turn the flags into a ``GatewayConfig`` and run the gateway in the foreground.

Only configuration happens here (flags, or a ``--config`` file of the same names, see
``config_file``); the gateway (and asyncio, aiohttp, uvloop) is imported when the
command runs, so the other commands start fast. Flag syntax (``H:P``, ``K=V``) is checked here
so that a typo is a usage error (exit 2) before anything starts.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import ParameterSource

from clusterlink.cli.config_file import load_into_context
from clusterlink.cli.context import (
    PEER_DIR_ENV,
    Globals,
    address_option,
    peer_dir_of,
    usage_errors,
)
from clusterlink.cli.documents import parse_label

__all__ = ["gateway_run"]

FROM_FILE = ParameterSource.DEFAULT_MAP


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class TunnelMode(StrEnum):
    MUX = "mux"
    BASIC = "basic"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def gateway_run(
    ctx: typer.Context,
    *,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            is_eager=True,
            callback=load_into_context,
            help="A YAML file of flag: value (the long flags below without --, e.g. "
            "metrics-listen: 127.0.0.1:9090); flags given here win.",
            show_default=False,
        ),
    ] = None,
    peer_dir: Annotated[
        Path | None,
        typer.Option(envvar=PEER_DIR_ENV, help="This peer's directory (from `create peer-cert`)."),
    ] = None,
    listen: Annotated[
        str, typer.Option(callback=address_option, help="Peer listener (mTLS), HOST:PORT.")
    ] = "0.0.0.0:8443",
    admin_listen: Annotated[
        str, typer.Option(callback=address_option, help="Admin API (mTLS), HOST:PORT.")
    ] = "127.0.0.1:8444",
    import_host: Annotated[
        str, typer.Option(help="Address the import listeners bind to.")
    ] = "127.0.0.1",
    metrics_listen: Annotated[
        str | None,
        typer.Option(callback=address_option, help="Prometheus metrics (plain HTTP), HOST:PORT."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(help="A label of this peer, K=V; repeat for more.", show_default=False),
    ] = None,
    state: Annotated[
        Path | None, typer.Option(help="State database.", show_default="PEER_DIR/state.db")
    ] = None,
    log_level: Annotated[LogLevel, typer.Option(case_sensitive=False)] = LogLevel.INFO,
    log_format: Annotated[LogFormat, typer.Option(case_sensitive=False)] = LogFormat.TEXT,
    tunnel_mode: Annotated[
        TunnelMode,
        typer.Option(
            case_sensitive=False,
            help="How this gateway opens tunnels: mux = streams of one connection per "
            "peer gateway; basic = one TLS connection per tunnel. Both are always accepted.",
        ),
    ] = TunnelMode.MUX,
    max_connections: Annotated[
        int,
        typer.Option(
            min=1,
            help="Connections open at once on the peer listener, and on each import "
            "listener; more are reset.",
        ),
    ] = 10_000,
    max_connections_per_peer: Annotated[
        int,
        typer.Option(
            min=1,
            help="Tunnels to and from one peer at once, counting those being set up; more "
            "are refused (503 overloaded; a source at the limit is skipped).",
        ),
    ] = 10_000,
    max_pending_handshakes: Annotated[
        int,
        typer.Option(
            min=1, help="TLS handshakes in progress on the peer listener; more are reset."
        ),
    ] = 256,
    handshake_timeout: Annotated[
        float, typer.Option(min=0.01, help="Seconds a TLS handshake may take, either way.")
    ] = 5.0,
    request_head_timeout: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="Seconds a peer may take to send a whole request head, from its first byte "
            "(basic mode); 408 after.",
        ),
    ] = 10.0,
    idle_timeout: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds without a byte either way after which a tunnel is reset; 0: never."
        ),
    ] = 3600.0,
    udp_idle_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds without a datagram either way after which a UDP flow ends; 0: never.",
        ),
    ] = 60.0,
    heartbeat_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between heartbeats to each peer.")
    ] = 1.0,
    unreachable_after: Annotated[
        int, typer.Option(min=1, help="Failed heartbeats in a row that make a peer unreachable.")
    ] = 5,
    reachable_after: Annotated[
        int, typer.Option(min=1, help="Answered heartbeats in a row that make it reachable again.")
    ] = 3,
    cert_check_interval: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds between looks at cert.pem, key.pem and ca.pem for changes, which "
            "are then used for new connections; 0: only on SIGHUP.",
        ),
    ] = 5.0,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            help="Kubernetes mode: the resources are custom resources in the cluster's API "
            "(in a pod: its service account), Imports get Services.",
        ),
    ] = False,
    namespace: Annotated[
        str,
        typer.Option(help="Kubernetes mode: ClusterLink's own namespace (Peers, Lease, Services)."),
    ] = "clusterlink-system",
    kube_api: Annotated[
        str | None,
        typer.Option(
            help="Kubernetes mode: the API server's URL, no credentials (tests, proxies)."
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Kubernetes mode: a kubeconfig file (default: in-cluster, or ~/.kube)."),
    ] = None,
    flow_log: Annotated[
        Path | None,
        typer.Option(
            help="Also append every finished tunnel record (see `clusterlink flows`) to this "
            "file, as JSON lines."
        ),
    ] = None,
    lease_duration: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Kubernetes mode: seconds without a renewal after which another replica "
            "takes the lead.",
        ),
    ] = 15.0,
) -> None:
    """Run this peer's gateway in the foreground; SIGTERM or SIGINT stops it (exit 0)."""
    given = ctx.find_object(Globals)
    if given and given.peer_dir and ctx.get_parameter_source("peer_dir") is FROM_FILE:
        peer_dir = given.peer_dir  # `clusterlink --peer-dir D gateway run --config F`: D wins
    peer_dir = peer_dir_of(ctx, peer_dir)
    with usage_errors("--label"):
        labels = dict(parse_label(item) for item in label or [])
    from clusterlink.gateway import (
        DataplaneSettings,
        GatewayConfig,
        HealthSettings,
        KubernetesSettings,
        run_gateway,
    )

    if not kubernetes and (kube_api or kubeconfig):
        raise typer.BadParameter("--kube-api and --kubeconfig need --kubernetes")
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
        log_level=log_level.value,
        log_format=log_format.value,
        dataplane=DataplaneSettings(
            multiplex=tunnel_mode is TunnelMode.MUX,
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
    raise typer.Exit(run_gateway(config))

"""One gateway process: wires the parts together and runs until SIGTERM/SIGINT (DESIGN §2).

Start-up order matters for users: the lock of the peer directory first (one gateway per
directory, see ``peer_dir_lock``), then listeners (a port that is taken is an error before
anything else happens), then the stored Imports re-open their listeners (leased ports again),
then heartbeats start, and only then ``gateway.json`` is written, with the addresses actually
bound, so a tool that sees the file can use every address in it. On a stop signal the
gateway stops accepting, resets open tunnels, removes the ``gateway.json`` it wrote (never
another gateway's) and exits 0.

TLS credentials can change under a running gateway (a rotated certificate, an edited trust
bundle). All its TLS contexts come from one ``CredentialReloader`` and reach the listeners and
dialers through zero-argument callables, so a reload (files polled every
``cert_check_interval_s``, or SIGHUP) swaps them for every *new* connection at once, and open
connections and their tunnels go on with the contexts they were made with.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from clusterlink import __version__
from clusterlink.addresses import format_address, parse_address
from clusterlink.certs import (
    CredentialReloader,
    PeerDir,
)
from clusterlink.controlplane.admin import AdminServer
from clusterlink.controlplane.admin_explain import ExplainRoutes
from clusterlink.controlplane.admin_flows import FlowRoutes
from clusterlink.controlplane.admin_links import LinkRoutes
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog, Snapshot
from clusterlink.controlplane.health import HealthSettings, PeerHealth
from clusterlink.controlplane.inviting import InvitationDesk
from clusterlink.controlplane.linking import Linker
from clusterlink.controlplane.metrics_server import MetricsServer
from clusterlink.controlplane.resources import ResourceService, require_export_addresses
from clusterlink.dataplane.connector import PeerConnector
from clusterlink.dataplane.egress import Egress
from clusterlink.dataplane.import_listener import ImportListeners
from clusterlink.dataplane.ingress import Ingress, export_address
from clusterlink.dataplane.limits import Limits
from clusterlink.dataplane.peer_listener import PeerListener
from clusterlink.dataplane.reverse_dialer import KeepAlive, ReverseDialer
from clusterlink.dataplane.reverse_links import ReverseLinks
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.dataplane.tunnels import TunnelRegistry
from clusterlink.errors import ClusterLinkError
from clusterlink.file_limit import raise_file_limit
from clusterlink.flows import FlowLog
from clusterlink.gateway_config import GatewayConfig, TLSContexts
from clusterlink.ids import PeerName
from clusterlink.kube_settings import KubernetesSettings
from clusterlink.logs import setup_logging
from clusterlink.memory import keep_freed_memory_while_busy, return_free_memory_after_tunnels
from clusterlink.metrics import GatewayMetrics
from clusterlink.peer_dir_lock import hold_peer_dir
from clusterlink.protocol import Health
from clusterlink.store import SQLiteStore, Store
from clusterlink.store.invitations import SQLiteInvitations

if TYPE_CHECKING:
    from clusterlink.kube_mode import KubernetesMode

__all__ = [
    "DataplaneSettings",
    "GatewayConfig",
    "HealthSettings",
    "KubernetesSettings",
    "run_gateway",
]

log = logging.getLogger("clusterlink.gateway")


def run_gateway(config: GatewayConfig) -> int:
    """Run in the foreground until SIGTERM/SIGINT; 0 on a clean stop.

    Start-up problems (bad peer directory, port taken, unreadable state) raise
    ``ClusterLinkError`` with a one-line reason.
    """
    with hold_peer_dir(config.peer_dir):  # first: a refusal is the only line on stderr
        setup_logging(config.log_level, config.log_format)
        raise_file_limit()
        keep_freed_memory_while_busy()
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on every platform
            return asyncio.run(_main(config))
        return uvloop.run(_main(config))


async def _main(config: GatewayConfig) -> int:
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload_credentials)
    try:
        await gateway.start()
        _settle_collector()
        await stop.wait()
        log.info("stop signal received: shutting down")
    finally:
        await gateway.stop()
    return 0


def _settle_collector() -> None:
    """What start-up made lives as long as the process: move it out of the cyclic
    collector's generations (``gc.freeze``), so that no later collection walks it, and turn
    the collector on (the command line turns it off while the gateway is imported)."""
    gc.freeze()
    gc.enable()


class _Server(Protocol):
    """A listener of the gateway: the peer listener, the admin API, metrics."""

    async def start(self, host: str, port: int) -> tuple[str, int]: ...

    async def close(self) -> None: ...


class Gateway:
    """The parts of one gateway and their lifecycle."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self._tls = CredentialReloader(
            config.peer_dir, TLSContexts.build, require_admin=config.kubernetes is None
        )
        self.peer_dir: PeerDir = self._tls.peer_dir
        self.local = LocalPeer(self.peer_dir.name, config.labels)
        self.started_at = time.monotonic()
        self.addresses: dict[str, str | None] = {"listen": None, "admin": None, "metrics": None}
        self._gateway_json = self.peer_dir.path / "gateway.json"
        self._written_info: str | None = None  # what this gateway put in gateway.json
        self.store: SQLiteStore | None = None
        self.kube: KubernetesMode | None = None
        self._closers: list[Any] = []
        self._retirers: list[Callable[[], None]] = []

    async def start(self) -> None:
        config, settings = self.config, self.config.dataplane
        listen_addr = _parse(config.listen, "--listen")
        admin_addr = _parse(config.admin_listen, "--admin-listen")
        store: Store
        kube: KubernetesMode | None = None
        if config.kubernetes is None:
            self.store = store = SQLiteStore(config.state_path or self.peer_dir.path / "state.db")
        else:
            from clusterlink.kube_mode import KubernetesMode  # only here: it takes a while

            self.kube = kube = KubernetesMode(config.kubernetes)
            self._closers.append(kube.close)  # stopped last: the other parts use its store
            store = await kube.open_store()
        catalog = Catalog(store)
        # Peers that dial in reach us over links they keep (reverse_links); we keep links to
        # the peers that ask us to dial in (reverse_dialer; they say so in heartbeat answers).
        links = ReverseLinks(catalog=catalog, local_name=self.local.name)
        connector = PeerConnector(
            context=lambda: self._tls.current.client,
            mux_context=lambda: self._tls.current.mux_client,
            settings=settings,
            reverse=links,
        )
        health = PeerHealth(
            context=lambda: self._tls.current.client,
            settings=config.health,
            local_name=self.local.name,
            on_silent=connector.fail_pending,
            on_change=(lambda _peer, _state: kube.peer_changed()) if kube else None,
            on_answer=lambda peer, answer: dialer.answered(
                peer, answer, catalog.snapshot.peers.get(peer)
            ),
            ping_link=links.ping,
        )
        metrics = GatewayMetrics(peers=health.samples)
        tunnels = TunnelRegistry(
            idle_timeout_s=settings.idle_timeout_s,
            metrics=metrics,
            catalog=catalog,
            flows=FlowLog(capacity=config.flow_capacity, export_path=config.flow_log),
        )
        metrics.live_tunnels = tunnels.samples
        limits = Limits(settings, metrics)  # shared: a peer's tunnels count both ways
        metrics.limit_usage = limits.usage
        egress = Egress(
            catalog=catalog,
            local=self.local,
            peers=health,
            connector=connector,
            tunnels=tunnels,
            metrics=metrics,
            limits=limits,
            refuse_grace_s=settings.refuse_grace_s,
            identify=kube.identify if kube else lambda _ip: None,
        )
        imports = ImportListeners(
            host=config.import_host,
            egress=egress,
            limits=limits,
            port_of=kube.port_of if kube else lambda imp: imp.spec.listen_port,
            udp_idle_timeout_s=settings.udp_idle_timeout_s,
        )
        resources = ResourceService(
            store=store,
            catalog=catalog,
            binder=imports,
            check=(lambda _resources: None) if kube else require_export_addresses,
            follows_store=kube is not None,
        )
        ingress = Ingress(
            catalog=catalog,
            local=self.local,
            tunnels=tunnels,
            settings=settings,
            metrics=metrics,
            limits=limits,
            locate=kube.locate if kube else export_address,
        )
        # Invitations and links (DESIGN §10): the inviting side answers POST /link on the peer
        # listener, the invited side dials out with the basic protocol.
        desk = InvitationDesk(
            local=self.local,
            invitations=SQLiteInvitations(self.store) if self.store is not None else None,
            resources=resources,
            catalog=catalog,
            credentials=lambda: self._tls.credentials,
            listen_address=lambda: self.addresses["listen"],
        )
        linker = Linker(
            local=self.local,
            resources=resources,
            catalog=catalog,
            credentials=lambda: self._tls.credentials,
            context=lambda: self._tls.current.client,
            listen_address=lambda: self.addresses["listen"],
        )
        peer_listener = PeerListener(
            context=lambda: self._tls.current.server,
            ingress=ingress,
            health=partial(self._health_answer, catalog),
            link=desk.accept,
            settings=settings,
            limits=limits,
            reverse=links,
        )
        dialer = ReverseDialer(
            context=lambda: self._tls.current.reverse_client,
            settings=settings,
            keepalive=KeepAlive(
                interval_s=config.health.interval_s, misses=config.health.unreachable_after
            ),
            serve=ingress.serve_stream,
            refused=peer_listener.stream_refused,
            health=partial(self._health_answer, catalog),
        )
        admin = AdminServer(
            local_name=self.local.name,
            context=lambda: self._tls.current.admin,
            store=store,
            catalog=catalog,
            resources=resources,
            health=health,
            gateway_info=self.info,
            close_revoked_tunnels=tunnels.close_revoked,
            links=LinkRoutes(desk, linker),
            flows=FlowRoutes(tunnels.flows),
            explain=ExplainRoutes(
                lambda: catalog.snapshot, self.local, health.labels_of, egress.identify
            ),
        )
        # Stopped in reverse order: first no new connections, then the tunnels, then state.
        self._closers += [
            tunnels.close,
            connector.close,
            links.close,
            dialer.close,
            health.close,
            imports.close,
        ]
        self._retirers = [
            connector.retire_connections,
            health.reconnect,
            peer_listener.drain_inbound,
            dialer.retire,
        ]

        def on_change(old: Snapshot, new: Snapshot) -> None:
            health.sync(new.peers)
            links.sync()
            dialer.sync(new.peers)
            for name, peer in old.peers.items():
                if new.peers.get(name) != peer:
                    connector.forget_peer(name)

        catalog.subscribe(on_change)
        await self._serve("listen", "peers", "--listen", listen_addr, peer_listener)
        await self._serve("admin", "the admin API", "--admin-listen", admin_addr, admin)
        if config.metrics_listen:
            metrics_addr = _parse(config.metrics_listen, "--metrics-listen")
            await self._serve(
                "metrics", "metrics", "--metrics-listen", metrics_addr, MetricsServer(metrics)
            )
        await resources.start()
        if kube is not None:
            own = {parse_address(a)[1] for a in self.addresses.values() if a is not None}
            await kube.start(resources=resources, health=health, own_ports=frozenset(own))
        tunnels.start_sweeper()
        returner = asyncio.create_task(return_free_memory_after_tunnels(lambda: tunnels.n_closed))
        self._closers.append(returner.cancel)
        if config.cert_check_interval_s > 0:
            watcher = asyncio.create_task(self._watch_credentials(config.cert_check_interval_s))
            self._closers.append(watcher.cancel)
        self._write_gateway_json()
        log.info(
            "gateway %s (fabric %s) running: peers on %s, admin API on %s, imports on %s",
            self.local.name,
            self.peer_dir.fabric,
            self.addresses["listen"],
            self.addresses["admin"],
            config.import_host,
        )

    async def _serve(
        self, name: str, what: str, flag: str, address: tuple[str, int], server: _Server
    ) -> None:
        """Start one of the gateway's listeners; its address goes into ``gateway.json``."""
        try:
            bound = await server.start(*address)
        except OSError as exc:
            # asyncio's create_server words its strerror itself; the errno's text is plainer.
            reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            shown = format_address(address)
            raise ClusterLinkError(
                f"cannot listen for {what} ({flag}) on {shown}: {reason}"
            ) from exc
        self._closers.append(server.close)
        self.addresses[name] = format_address(bound)

    async def stop(self) -> None:
        # Only the file this gateway wrote: another gateway's (a restart that raced this
        # stop, a copy of the directory) tells the CLI where a live gateway is.
        with contextlib.suppress(OSError):
            if self._written_info is not None and (
                self._gateway_json.read_text() == self._written_info
            ):
                self._gateway_json.unlink()
        for close in reversed(self._closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result
        if self.store is not None:
            self.store.close()
        log.info("gateway %s stopped", self.local.name)

    def reload_credentials(self) -> None:
        """SIGHUP: read the TLS files now, whether or not they look changed."""
        log.info("SIGHUP: reading the TLS files of %s again", self.peer_dir.path)
        if self._tls.check(force=True):
            self._retire_connections()

    async def _watch_credentials(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if self._tls.check():
                self._retire_connections()

    def _retire_connections(self) -> None:
        """New credentials: connections made with the old ones are replaced, gracefully.

        Outgoing pools and sessions dial anew for the next tunnel, heartbeats redial at their
        next beat, accepted connections drain (so a CA just removed from the trust bundle
        cannot go on being trusted through a long-lived connection). Open tunnels finish.
        """
        for retire in self._retirers:
            retire()

    def _health_answer(self, catalog: Catalog, caller: PeerName) -> Health:
        """Who we are, whether ``caller`` is one of our Peers (if not, we refuse its
        tunnels, and it can say so in its status instead of "heartbeat ok"), and whether we
        need it to dial in (it keeps a reverse link to us then)."""
        peer = catalog.snapshot.peers.get(caller)
        dials_in = peer is not None and peer.spec.dials_in
        return Health(self.local.name, self.local.labels, __version__, peer is not None, dials_in)

    def info(self) -> Mapping[str, Any]:
        return {
            "name": self.local.name,
            "fabric": self.peer_dir.fabric,
            "version": __version__,
            "labels": self.local.labels,
            **self.addresses,
            "importHost": self.config.import_host,
            "uptimeS": round(time.monotonic() - self.started_at, 3),
        }

    def _write_gateway_json(self) -> None:
        """Atomically, so a reader never sees half a file. In a peer directory the gateway
        may not write (a Secret mounted into a pod), there is none: nothing there runs the
        CLI against it."""
        info = {"name": self.local.name, "pid": os.getpid(), **self.addresses}
        text = json.dumps(info, indent=2) + "\n"
        tmp = self._gateway_json.with_name(f".gateway.json.{os.getpid()}")
        try:
            tmp.write_text(text)
        except OSError as exc:
            if self.kube is None:
                raise
            log.info("not writing %s: %s", self._gateway_json, exc.strerror or exc)
            return
        tmp.replace(self._gateway_json)
        self._written_info = text


def _parse(text: str, flag: str) -> tuple[str, int]:
    try:
        return parse_address(text, what=flag)
    except ValueError as exc:
        raise ClusterLinkError(str(exc)) from None

"""The peer listener: where other gateways' heartbeats and tunnel requests arrive.

Sequence for one accepted connection (the target side of DESIGN §5):

    TLS handshake (fabric CA only) -> caller = peer name from the verified certificate
    -> requests: GET /healthz (answered, the connection stays for the next one)
                 CONNECT ns/name -> caller is a defined Peer (403) -> export lookup (404)
                 -> ingress policy (403)
                 -> dial the service (502) -> 200 -> relay on the same connection

The decisions are pure calls into ``controlplane``; this module only sequences them and does
the I/O. A refusal is answered with its status and closes the connection; nothing from the
caller reaches the service before the ``200``. A caller whose certificate names no peer (an
admin certificate, say) is dropped right after the handshake. Deleting a Peer revokes it:
its next CONNECT is refused (heartbeats are still answered, they reveal only name and
labels). One log line per refused or opened tunnel, one when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from functools import partial
from typing import cast

from clusterlink.certs import peer_name_of
from clusterlink.controlplane.authz import LocalPeer, ingress_decision
from clusterlink.controlplane.catalog import Catalog
from clusterlink.dataplane.relay import Parked, RelayResult
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.dataplane.tunnels import TunnelRegistry
from clusterlink.errors import ClusterLinkError, ProtocolError
from clusterlink.metrics import GatewayMetrics
from clusterlink.protocol import (
    ALPN_PROTOCOL,
    NEED_DATA,
    ConnectRequest,
    ExportRef,
    Health,
    HealthRequest,
    PeerServerConnection,
    Verdict,
)
from clusterlink.transport.dial import dial_tcp, format_address
from clusterlink.transport.tls import TLSLayer

__all__ = ["PeerListener"]

log = logging.getLogger("clusterlink.ingress")


class PeerListener:
    """Accepts mTLS connections from other gateways of the fabric."""

    def __init__(
        self,
        *,
        context: Callable[[], ssl.SSLContext],
        catalog: Catalog,
        local: LocalPeer,
        health: Callable[[], Health],
        tunnels: TunnelRegistry,
        settings: DataplaneSettings,
        metrics: GatewayMetrics,
    ) -> None:
        self._context = context
        self.metrics = metrics
        self.catalog = catalog
        self.local = local
        self.health = health
        self.tunnels = tunnels
        self.settings = settings
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, host, port, backlog=1024)
        return self._server.sockets[0].getsockname()[:2]  # type: ignore[no-any-return]

    def _accept(self) -> TLSLayer:
        return TLSLayer(
            self._context(),
            _PeerSession(self),
            server_side=True,
            handshake_timeout_s=self.settings.handshake_timeout_s,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class _PeerSession(asyncio.Protocol):
    """App protocol of one peer connection during its HTTP phase."""

    def __init__(self, listener: PeerListener) -> None:
        self.listener = listener
        self.conn = PeerServerConnection()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.caller = "?"
        self.remote = "?"
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        self.remote = format_address(peername) if peername else "?"
        name = peer_name_of(transport.get_extra_info("peercert"))
        if name is None:
            log.warning(
                "refused connection from %s: its certificate names no gateway of the fabric",
                self.remote,
            )
            self.transport.abort()
            return
        alpn = transport.get_extra_info("alpn_protocol")
        if alpn != ALPN_PROTOCOL:
            log.warning(
                "refused connection from peer %s (%s): it speaks %s, not %s",
                name,
                self.remote,
                repr(alpn) if alpn else "no ALPN protocol",
                ALPN_PROTOCOL,
            )
            self.transport.abort()
            return
        self.caller = name
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(
            self.listener.settings.request_timeout_s, self._on_timeout
        )

    def _on_timeout(self) -> None:
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def _process(self) -> None:
        while True:
            try:
                event = self.conn.next_event()
            except ProtocolError as exc:
                log.info("refused request from peer %s (%s): %s", self.caller, self.remote, exc)
                self._refuse(self.conn.send_error(exc))
                return
            if event is NEED_DATA:
                return
            if isinstance(event, HealthRequest):
                self.transport.write(self.conn.send_health(self.listener.health()))
                self._arm_timer()
                continue
            if isinstance(event, ConnectRequest):
                self.transport.pause_reading()  # tunnel bytes wait until the service is there
                if self._timer is not None:
                    self._timer.cancel()
                self._task = asyncio.create_task(self._connect(event))
                return
            self.transport.close()  # CLOSED: the caller is done with this connection
            return

    def _refuse(self, data: bytes) -> None:
        self.transport.write(data)
        self.transport.close()

    async def _connect(self, request: ConnectRequest) -> None:
        listener = self.listener
        metrics = listener.metrics
        started = asyncio.get_running_loop().time()
        snapshot = listener.catalog.snapshot
        ref = request.export
        resource = str(ref)
        what = f"peer={self.caller} export={ref} client={request.attributes.get(_CLIENT_IP, '?')}"

        def refuse(outcome: str, verdict: Verdict) -> None:
            metrics.connections.labels("ingress", resource, self.caller, outcome).inc()
            self._refuse(self.conn.send_verdict(verdict))

        if self.caller not in snapshot.peers:
            log.info("ingress denied %s: %s is not a Peer of this gateway", what, self.caller)
            message = f"peer {self.caller} is not a Peer of {listener.local.name}"
            refuse("denied", Verdict.denied(message))
            return
        export = snapshot.exports.get((ref.namespace, ref.name))
        if export is None:
            log.info("ingress refused %s: no such export", what)
            refuse("not_found", Verdict.not_found(f"no export {ref}"))
            return
        decision = ingress_decision(
            snapshot, listener.local, export, self.caller, request.attributes
        )
        metrics.decisions.labels("ingress", decision.action.value, decision.decided_by).inc()
        if not decision.is_allowed:
            log.info("ingress denied %s: %s", what, decision)
            refuse(
                "denied",
                Verdict.denied(f"denied by the ingress policy of peer {listener.local.name}"),
            )
            return
        service_addr = (export.spec.host, export.spec.port)
        try:
            service = await dial_tcp(
                service_addr,
                Parked(),
                connect_timeout_s=listener.settings.connect_timeout_s,
                what=f"service of export {ref}",
            )
        except ClusterLinkError as exc:
            log.info("ingress failed %s (%s): %s", what, decision, exc)
            refuse("unreachable", Verdict.unreachable(str(exc)))
            return
        self._task = None
        log.info("ingress allowed %s service=%s: %s", what, format_address(service_addr), decision)
        self.transport.write(self.conn.send_verdict(Verdict.allow()))
        labels = ("ingress", resource, self.caller)
        relay = listener.tunnels.open(
            self.transport,
            service,
            self._on_close(what),
            labels,
            still_allowed=partial(self._still_allowed, ref, request.attributes),
        )
        relay.start(to_service=self.conn.trailing_data)
        metrics.connections.labels(*labels, "allowed").inc()
        metrics.setup_seconds.labels("ingress").observe(asyncio.get_running_loop().time() - started)

    def _still_allowed(self, ref: ExportRef, claimed: Mapping[str, str]) -> bool:
        """Would this tunnel be accepted now? (Peer, Export and ingress policy.)"""
        listener = self.listener
        snapshot = listener.catalog.snapshot
        export = snapshot.exports.get((ref.namespace, ref.name))
        if export is None or self.caller not in snapshot.peers:
            return False
        return ingress_decision(snapshot, listener.local, export, self.caller, claimed).is_allowed

    def _on_close(self, what: str) -> Callable[[RelayResult], None]:
        started = asyncio.get_running_loop().time()

        def on_close(result: RelayResult) -> None:
            duration = asyncio.get_running_loop().time() - started
            log.info(
                "ingress closed %s bytes_in=%d bytes_out=%d duration_s=%.3f%s",
                what,
                result.bytes_up,
                result.bytes_down,
                duration,
                f" error={result.error!r}" if result.error else "",
            )

        return on_close


_CLIENT_IP = "client.clusterlink.net/ip"

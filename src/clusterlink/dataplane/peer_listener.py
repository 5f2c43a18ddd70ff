"""The peer listener: where other gateways' heartbeats and tunnel requests arrive.

Sequence for one accepted connection (the target side of DESIGN §5):

    TLS handshake (fabric CA only) -> caller = peer name from the verified certificate
    -> by ALPN: ``clusterlink/1`` (basic: HTTP/1.1, one tunnel per connection) or
       ``clusterlink-mux/1`` (multiplexed: every stream of the connection is a tunnel)
    -> for each CONNECT (basic) or OPEN (mux): caller is a defined Peer (403) -> export lookup (404)
       -> ingress policy (403) -> dial the service (502) -> 200 -> relay
    -> basic mode also answers GET /healthz, and the connection stays for the next request

Both modes share one ingress path (``PeerListener.ingress``); the decisions are pure calls
into ``controlplane``, this module only sequences them and does the I/O. A refusal is
answered with its status; nothing from the caller reaches the service before the ``200``.
A caller whose certificate names no peer (an admin certificate, say) is dropped right after
the handshake. Deleting a Peer revokes it: its next CONNECT is refused (heartbeats are still
answered, they reveal only name and labels). One log line per refused or opened tunnel, one
when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from clusterlink.protocol.mux import MUX_ALPN, StreamRefused, StreamRequest
from clusterlink.transport.dial import dial_tcp, format_address
from clusterlink.transport.mux import MuxSession
from clusterlink.transport.tls import TLSLayer

__all__ = ["PEER_ALPN", "PeerListener"]

log = logging.getLogger("clusterlink.ingress")

PEER_ALPN = (MUX_ALPN, ALPN_PROTOCOL)
"""What the peer listener speaks, in its order of preference."""

_CLIENT_IP = "client.clusterlink.net/ip"


@dataclass(slots=True)
class _Opened:
    """An allowed tunnel whose service is connected: the caller answers 200 and relays."""

    service: asyncio.Transport
    what: str
    labels: tuple[str, str, str]
    started: float


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
        self._setups: set[asyncio.Task[None]] = set()  # streams being decided

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, host, port, backlog=1024)
        return self._server.sockets[0].getsockname()[:2]  # type: ignore[no-any-return]

    def _accept(self) -> TLSLayer:
        return TLSLayer(
            self._context(),
            _Handshaken(self),
            server_side=True,
            handshake_timeout_s=self.settings.handshake_timeout_s,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._setups):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    # -- the ingress path, shared by both modes ---------------------------------------------

    async def ingress(self, caller: str, request: ConnectRequest) -> Verdict | _Opened:
        """Decide and, if allowed, connect the service; a refusal is already logged."""
        metrics = self.metrics
        started = asyncio.get_running_loop().time()
        snapshot = self.catalog.snapshot
        ref = request.export
        resource = str(ref)
        what = f"peer={caller} export={ref} client={request.attributes.get(_CLIENT_IP, '?')}"

        def refused(outcome: str, verdict: Verdict) -> Verdict:
            metrics.connections.labels("ingress", resource, caller, outcome).inc()
            return verdict

        if caller not in snapshot.peers:
            log.info("ingress denied %s: %s is not a Peer of this gateway", what, caller)
            message = f"peer {caller} is not a Peer of {self.local.name}"
            return refused("denied", Verdict.denied(message))
        export = snapshot.exports.get((ref.namespace, ref.name))
        if export is None:
            log.info("ingress refused %s: no such export", what)
            return refused("not_found", Verdict.not_found(f"no export {ref}"))
        decision = ingress_decision(snapshot, self.local, export, caller, request.attributes)
        metrics.decisions.labels("ingress", decision.action.value, decision.decided_by).inc()
        if not decision.is_allowed:
            log.info("ingress denied %s: %s", what, decision)
            message = f"denied by the ingress policy of peer {self.local.name}"
            return refused("denied", Verdict.denied(message))
        service_addr = (export.spec.host, export.spec.port)
        try:
            service = await dial_tcp(
                service_addr,
                Parked(),
                connect_timeout_s=self.settings.connect_timeout_s,
                what=f"service of export {ref}",
            )
        except ClusterLinkError as exc:
            log.info("ingress failed %s (%s): %s", what, decision, exc)
            return refused("unreachable", Verdict.unreachable(str(exc)))
        log.info("ingress allowed %s service=%s: %s", what, format_address(service_addr), decision)
        return _Opened(service, what, ("ingress", resource, caller), started)

    def relay(
        self,
        caller: str,
        request: ConnectRequest,
        tunnel: asyncio.Transport,
        opened: _Opened,
        early: bytes = b"",
    ) -> None:
        """Relay an answered tunnel to its service, and count it."""
        relay = self.tunnels.open(
            tunnel,
            opened.service,
            self._on_close(opened.what),
            opened.labels,
            still_allowed=partial(self._still_allowed, caller, request.export, request.attributes),
        )
        relay.start(to_service=early)
        self.metrics.connections.labels(*opened.labels, "allowed").inc()
        elapsed = asyncio.get_running_loop().time() - opened.started
        self.metrics.setup_seconds.labels("ingress").observe(elapsed)

    def _still_allowed(self, caller: str, ref: ExportRef, claimed: Mapping[str, str]) -> bool:
        """Would this tunnel be accepted now? (Peer, Export and ingress policy.)"""
        snapshot = self.catalog.snapshot
        export = snapshot.exports.get((ref.namespace, ref.name))
        if export is None or caller not in snapshot.peers:
            return False
        return ingress_decision(snapshot, self.local, export, caller, claimed).is_allowed

    @staticmethod
    def _on_close(what: str) -> Callable[[RelayResult], None]:
        loop = asyncio.get_running_loop()
        started = loop.time()

        def on_close(result: RelayResult) -> None:
            log.info(
                "ingress closed %s bytes_in=%d bytes_out=%d duration_s=%.3f%s",
                what,
                result.bytes_up,
                result.bytes_down,
                loop.time() - started,
                f" error={result.error!r}" if result.error else "",
            )

        return on_close

    # -- multiplexed mode ---------------------------------------------------------------------

    def serve_stream(self, caller: str, session: MuxSession, event: StreamRequest) -> None:
        task = asyncio.create_task(self._stream(caller, session, event))
        self._setups.add(task)  # a strong reference until it is done
        task.add_done_callback(self._setups.discard)

    async def _stream(self, caller: str, session: MuxSession, event: StreamRequest) -> None:
        outcome = await self.ingress(caller, event.request)
        if isinstance(outcome, Verdict):
            session.refuse(event.stream_id, outcome)
            return
        stream = session.accept(event.stream_id)
        if stream is None:  # the caller gave up meanwhile
            outcome.service.abort()
            log.info("ingress abandoned %s: the stream ended during set-up", outcome.what)
            return
        self.relay(caller, event.request, stream, outcome)


class _Handshaken(asyncio.Protocol):
    """First app protocol of an accepted connection: checks who called and in which mode."""

    def __init__(self, listener: PeerListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        remote = format_address(peername) if peername else "?"
        caller = peer_name_of(transport.get_extra_info("peercert"))
        if caller is None:
            log.warning(
                "refused connection from %s: its certificate names no gateway of the fabric",
                remote,
            )
            tls.abort()
            return
        alpn = transport.get_extra_info("alpn_protocol")
        app: asyncio.Protocol
        if alpn == ALPN_PROTOCOL:
            app = _BasicSession(self.listener, caller, remote)
        elif alpn == MUX_ALPN:
            app = MuxSession(
                client_side=False,
                peer_name=caller,
                settings=self.listener.settings.mux,
                on_request=partial(self._on_stream, caller),
                on_refused=partial(_log_refused_stream, caller, remote),
            )
        else:
            log.warning(
                "refused connection from peer %s (%s): it speaks %s, not one of %s",
                caller,
                remote,
                repr(alpn) if alpn else "no ALPN protocol",
                ", ".join(PEER_ALPN),
            )
            tls.abort()
            return
        tls.set_protocol(app)
        app.connection_made(tls)

    def _on_stream(self, caller: str, session: MuxSession, event: StreamRequest) -> None:
        self.listener.serve_stream(caller, session, event)


def _log_refused_stream(caller: str, remote: str, _: MuxSession, event: StreamRefused) -> None:
    log.info("refused stream from peer %s (%s): %s", caller, remote, event.error)


class _BasicSession(asyncio.Protocol):
    """App protocol of a basic-mode peer connection during its HTTP phase."""

    def __init__(self, listener: PeerListener, caller: str, remote: str) -> None:
        self.listener = listener
        self.caller = caller
        self.remote = remote
        self.conn = PeerServerConnection()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
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
        outcome = await self.listener.ingress(self.caller, request)
        self._task = None
        if isinstance(outcome, Verdict):
            self._refuse(self.conn.send_verdict(outcome))
            return
        self.transport.write(self.conn.send_verdict(Verdict.allow()))
        self.listener.relay(
            self.caller, request, self.transport, outcome, early=self.conn.trailing_data
        )

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

Hostile callers (DESIGN §5; the limits are in ``dataplane.limits``): a connection over
``max_connections`` or ``max_pending_handshakes`` is reset before any TLS work; a handshake
that fails or does not finish within ``handshake_timeout_s`` is closed and logged; in the
basic mode a request head must be complete ``request_head_timeout_s`` after its first byte
(``408`` otherwise: trickling bytes buys no time), while a connection with no request under
way may wait ``request_timeout_s`` for the next one (the source's warm pool); answers are
not written faster than the caller reads them. A tunnel over ``max_connections_per_peer``
is answered ``503 overloaded``. Lines about refusals are rate-limited per caller
(``throttle``), so a flood of bad requests cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import cast

from clusterlink.certs import peer_name_of
from clusterlink.controlplane.authz import LocalPeer, ingress_decision
from clusterlink.controlplane.catalog import Catalog
from clusterlink.dataplane.limits import Limit, Limits
from clusterlink.dataplane.relay import Parked, RelayResult, reset
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.dataplane.tunnels import TunnelRegistry
from clusterlink.errors import ClusterLinkError, ProtocolError
from clusterlink.log_throttle import LogThrottle
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
# Lines per caller and 10 s window (``throttle``): ingress decisions are an audit trail, so
# they get a large budget; broken input gets a small one, since it costs the caller nothing.
_DECISIONS_BURST = 100
_BAD_INPUT_BURST = 5


@dataclass(slots=True)
class _Opened:
    """An allowed tunnel whose service is connected: the caller answers 200 and relays."""

    service: asyncio.Transport
    what: str
    labels: tuple[str, str, str]
    started: float
    caller: str  # holds one of the caller's tunnel slots until the tunnel ends


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
        limits: Limits | None = None,
    ) -> None:
        self._context = context
        self.metrics = metrics
        self.catalog = catalog
        self.local = local
        self.health = health
        self.tunnels = tunnels
        self.settings = settings
        self.limits = limits or Limits(settings, metrics)
        self._decisions = LogThrottle(log, burst=_DECISIONS_BURST)
        self._bad_input = LogThrottle(log, burst=_BAD_INPUT_BURST)
        self._server: asyncio.Server | None = None
        self._setups: set[asyncio.Task[None]] = set()  # streams being decided
        # Accepted connections, to retire them after a credentials reload (held weakly:
        # a connection that ends is gone from here by itself).
        self._inbound: weakref.WeakSet[MuxSession | _BasicSession] = weakref.WeakSet()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, host, port, backlog=1024)
        return self._server.sockets[0].getsockname()[:2]  # type: ignore[no-any-return]

    def _accept(self) -> TLSLayer:
        return _PeerConnection(self, self._context())

    def handshake_ended(self, remote: str, done: asyncio.Future[None]) -> None:
        """A TLS handshake on the listener ended: free its slot, log a failure."""
        self.limits.pending_handshakes.give_back()
        exc = done.exception()
        if exc is None or isinstance(exc, ssl.SSLCertVerificationError):
            return  # a refused certificate is logged, with whose and why, by ``certs``
        if isinstance(exc, TimeoutError):
            self.limits.hit(Limit.HANDSHAKE_TIMEOUT, _host(remote), "closed %s: %s", remote, exc)
        elif isinstance(exc, ssl.SSLError):
            reason = exc.reason or str(exc)
            self._bad_input.log(
                logging.WARNING,
                _host(remote),
                "closed %s: TLS handshake failed: %s",
                remote,
                reason,
            )
        else:  # closed or reset by the caller: a port probe, a health check of a load balancer
            log.debug("connection from %s ended during the TLS handshake: %s", remote, exc)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._setups):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    def track(self, session: MuxSession | _BasicSession) -> None:
        self._inbound.add(session)

    def drain_inbound(self) -> None:
        """After a credentials reload (a CA removed from the trust bundle, say): every
        accepted connection is retired gracefully, so a caller's next tunnel comes over a new
        connection, verified against what we trust now; open tunnels finish where they are."""
        for session in list(self._inbound):
            session.drain()

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
            self._log_decision(
                caller, "ingress denied %s: %s is not a Peer of this gateway", what, caller
            )
            message = f"peer {caller} is not a Peer of {self.local.name}"
            return refused("denied", Verdict.denied(message))
        export = snapshot.exports.get((ref.namespace, ref.name))
        if export is None:
            self._log_decision(caller, "ingress refused %s: no such export", what)
            return refused("not_found", Verdict.not_found(f"no export {ref}"))
        decision = ingress_decision(snapshot, self.local, export, caller, request.attributes)
        metrics.decisions.labels("ingress", decision.action.value, decision.decided_by).inc()
        if not decision.is_allowed:
            self._log_decision(caller, "ingress denied %s: %s", what, decision)
            message = f"denied by the ingress policy of peer {self.local.name}"
            return refused("denied", Verdict.denied(message))
        peer_tunnels = self.limits.peer_tunnels
        if not peer_tunnels.take(caller):
            message = (
                f"peer {caller} has {peer_tunnels.maximum} tunnels open or opening at "
                f"{self.local.name}, its limit (--max-connections-per-peer)"
            )
            self.limits.hit(
                Limit.MAX_CONNECTIONS_PER_PEER, caller, "ingress refused %s: %s", what, message
            )
            return refused("overloaded", Verdict.overloaded(message))
        service_addr = (export.spec.host, export.spec.port)
        try:
            service = await dial_tcp(
                service_addr,
                Parked(),
                connect_timeout_s=self.settings.connect_timeout_s,
                what=f"service of export {ref}",
            )
        except ClusterLinkError as exc:
            peer_tunnels.give_back(caller)
            self._log_decision(caller, "ingress failed %s (%s): %s", what, decision, exc)
            return refused("unreachable", Verdict.unreachable(str(exc)))
        except BaseException:  # cancelled: the caller's connection is gone
            peer_tunnels.give_back(caller)
            raise
        log.info("ingress allowed %s service=%s: %s", what, format_address(service_addr), decision)
        return _Opened(service, what, ("ingress", resource, caller), started, caller)

    def _log_decision(self, caller: str, message: str, *args: object) -> None:
        self._decisions.log(logging.INFO, caller, message, *args)

    def log_bad_input(self, caller: str, message: str, *args: object) -> None:
        """A request or stream refused for what the caller sent (not for a decision)."""
        self._bad_input.log(logging.INFO, caller, message, *args)

    def abandon(self, opened: _Opened) -> None:
        """An opened tunnel whose caller left before it could be answered."""
        opened.service.abort()
        self.limits.peer_tunnels.give_back(opened.caller)
        log.info("ingress abandoned %s: the caller left during set-up", opened.what)

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
            self._on_close(opened),
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

    def _on_close(self, opened: _Opened) -> Callable[[RelayResult], None]:
        loop = asyncio.get_running_loop()
        started = loop.time()

        def on_close(result: RelayResult) -> None:
            self.limits.peer_tunnels.give_back(opened.caller)
            log.info(
                "ingress closed %s bytes_in=%d bytes_out=%d duration_s=%.3f%s",
                opened.what,
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
            self.abandon(outcome)
            return
        self.relay(caller, event.request, stream, outcome)

    def stream_refused(self, caller: str, remote: str, event: StreamRefused) -> None:
        """An OPEN the mux layer answered itself (malformed, or over the stream limit)."""
        error = event.error
        if error.status == 503:
            self.limits.hit(
                Limit.MAX_STREAMS_PER_CONNECTION,
                caller,
                "refused stream from peer %s (%s): %s",
                caller,
                remote,
                error,
            )
        else:
            self.log_bad_input(
                caller, "refused stream from peer %s (%s): %s", caller, remote, error
            )


class _PeerConnection(TLSLayer):
    """The TLS layer of one accepted connection, admitted against the listener's limits.

    Over ``max_connections`` or ``max_pending_handshakes`` the connection is reset before
    any TLS work, and counts nothing. Otherwise it holds a connection slot until it is lost
    and a handshake slot until its handshake ends (``PeerListener.handshake_ended``).
    """

    def __init__(self, listener: PeerListener, context: ssl.SSLContext) -> None:
        super().__init__(
            context,
            _Handshaken(listener),
            server_side=True,
            handshake_timeout_s=listener.settings.handshake_timeout_s,
        )
        self._listener = listener
        self._is_admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        limits = self._listener.limits
        peername = transport.get_extra_info("peername")
        remote = format_address(peername) if peername else "?"
        refusal = _admit(limits)
        if refusal is None:
            self._is_admitted = True
            self.handshake_done.add_done_callback(partial(self._listener.handshake_ended, remote))
            super().connection_made(transport)
            return
        limit, why = refusal
        limits.hit(limit, _host(remote), "reset %s: %s", remote, why)
        reset(cast(asyncio.Transport, transport))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._is_admitted:
            self._is_admitted = False
            self._listener.limits.peer_connections.give_back()
        super().connection_lost(exc)


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
                on_refused=partial(self._on_refused, caller, remote),
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
        self.listener.track(app)

    def _on_stream(self, caller: str, session: MuxSession, event: StreamRequest) -> None:
        self.listener.serve_stream(caller, session, event)

    def _on_refused(self, caller: str, remote: str, _: MuxSession, event: StreamRefused) -> None:
        self.listener.stream_refused(caller, remote, event)


def _admit(limits: Limits) -> tuple[Limit, str] | None:
    """Take a connection and a handshake slot; or the limit that refuses, and why."""
    connections, handshakes = limits.peer_connections, limits.pending_handshakes
    if not connections.take():
        why = f"{connections.maximum} connections are open, the limit (--max-connections)"
        return Limit.MAX_CONNECTIONS, why
    if not handshakes.take():
        connections.give_back()
        why = (
            f"{handshakes.maximum} TLS handshakes are in progress, "
            "the limit (--max-pending-handshakes)"
        )
        return Limit.MAX_PENDING_HANDSHAKES, why
    return None


def _host(remote: str) -> str:
    """The address part of ``host:port``: callers are told apart by address, not port."""
    return remote.rpartition(":")[0] or remote


class _BasicSession(asyncio.Protocol):
    """App protocol of a basic-mode peer connection during its HTTP phase.

    Two deadlines, never both: between requests the connection may wait
    ``request_timeout_s`` (a warm connection in the source's pool), and is then closed; from
    the first byte of a request its head must be complete within ``request_head_timeout_s``,
    else it is answered ``408`` and closed. The head deadline is set once per request, not
    moved by each byte, so trickling bytes buys nothing. Answers go out no faster than the
    caller reads them: while our writes are paused, its requests are not read.
    """

    def __init__(self, listener: PeerListener, caller: str, remote: str) -> None:
        self.listener = listener
        self.caller = caller
        self.remote = remote
        self.conn = PeerServerConnection()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._is_reading_head = False
        self._is_write_paused = False
        self.is_tunnel = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._await_request()

    def _await_request(self) -> None:
        self._is_reading_head = False
        self._arm(self.listener.settings.request_timeout_s, self.transport.abort)

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, callback)

    def _on_head_timeout(self) -> None:
        if self.transport.is_closing():
            return
        timeout_s = self.listener.settings.request_head_timeout_s
        message = f"the request head was not complete {timeout_s:g}s after its first byte"
        self.listener.limits.hit(
            Limit.REQUEST_HEAD_TIMEOUT,
            self.caller,
            "refused request from peer %s (%s): %s",
            self.caller,
            self.remote,
            message,
        )
        self._refuse(self.conn.send_verdict(Verdict(408, "timeout", message)))

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused already: nothing more is read
        if not self._is_reading_head:
            self._is_reading_head = True
            self._arm(self.listener.settings.request_head_timeout_s, self._on_head_timeout)
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

    def pause_writing(self) -> None:
        self._is_write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._is_write_paused = False
        if self._task is not None or self.transport.is_closing():
            return  # a CONNECT is being decided: its tunnel resumes reading
        self._process()
        if not self._is_write_paused and self._task is None:
            self.transport.resume_reading()

    def _process(self) -> None:
        while not self._is_write_paused:
            try:
                event = self.conn.next_event()
            except ProtocolError as exc:
                self.listener.log_bad_input(
                    self.caller,
                    "refused request from peer %s (%s): %s",
                    self.caller,
                    self.remote,
                    exc,
                )
                self._refuse(self.conn.send_error(exc))
                return
            if event is NEED_DATA:
                return
            if isinstance(event, HealthRequest):
                self.transport.write(self.conn.send_health(self.listener.health()))
                self._await_request()
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
        if self._timer is not None:
            self._timer.cancel()
        self.transport.write(data)
        self.transport.close()

    def drain(self) -> None:
        """Retire: a connection waiting for its next request is closed now (its caller will
        dial again, facing our current credentials); one busy with a request finishes it."""
        if not self._is_reading_head and self._task is None and not self.is_tunnel:
            if self._timer is not None:
                self._timer.cancel()
            self.transport.close()

    async def _connect(self, request: ConnectRequest) -> None:
        outcome = await self.listener.ingress(self.caller, request)
        self._task = None
        if isinstance(outcome, Verdict):
            self._refuse(self.conn.send_verdict(outcome))
            return
        if self.transport.is_closing():  # the caller left while we decided
            self.listener.abandon(outcome)
            return
        self.transport.write(self.conn.send_verdict(Verdict.allow()))
        self.is_tunnel = True
        self.listener.relay(
            self.caller, request, self.transport, outcome, early=self.conn.trailing_data
        )

"""The peer listener: where other gateways' heartbeats and tunnel requests arrive.

Sequence for one accepted connection:

    admission against the limits (before any TLS work)
    -> TLS handshake (fabric CA only) -> caller = peer name from the verified certificate
    -> by ALPN: ``clusterlink/1`` (``BasicSession``: HTTP/1.1 heartbeats, or one tunnel per
       connection, or one ``POST /link``) or ``clusterlink-mux/1`` (``MuxSession``: every
       stream is a tunnel), or ``clusterlink-mux-reverse/1`` (a reverse link from a peer that
       dials in: we open the streams on it, ``reverse_links``)
    -> each tunnel request goes to ``Ingress``, which decides and relays it; a link request
       goes to the control plane's ``link`` (``controlplane.inviting``).

This module only accepts and admits; what a request gets is ``ingress``'s business. A caller
whose certificate names no peer (an admin certificate, say) is dropped right after the
handshake.

Hostile callers (DESIGN §5; the limits are in ``dataplane.limits``): a connection over
``max_connections`` or ``max_pending_handshakes`` is reset before any TLS work; a handshake
that fails or does not finish within ``handshake_timeout_s`` is closed and logged; in the
basic mode a request head has a deadline (``basic_session``). Lines about refusals are
rate-limited per caller (``throttle``), so a flood of bad requests cannot flood the log.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import weakref
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

from clusterlink.addresses import format_peername
from clusterlink.certs import peer_name_of
from clusterlink.dataplane.basic_session import BasicSession
from clusterlink.dataplane.ingress import Ingress
from clusterlink.dataplane.limits import Limit, Limits
from clusterlink.dataplane.relay import reset
from clusterlink.dataplane.reverse_links import ReverseLinks
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.ids import PeerName
from clusterlink.log_throttle import LogThrottle
from clusterlink.protocol import ALPN_PROTOCOL, Health, LinkAnswer, LinkRequest, Verdict
from clusterlink.protocol.mux import (
    MUX_ALPN,
    REVERSE_MUX_ALPN,
    StreamRefused,
    StreamRequest,
)
from clusterlink.transport.mux import MuxSession
from clusterlink.transport.tls import TLSLayer
from clusterlink.transport.tls_sniff import peek_alpn, take_over
from clusterlink.transport.tls_socket import SocketTLSTransport, handshake

__all__ = ["PEER_ALPN", "PeerListener"]

log = logging.getLogger("clusterlink.ingress")

PEER_ALPN = (MUX_ALPN, ALPN_PROTOCOL, REVERSE_MUX_ALPN)
"""What the peer listener speaks, in its order of preference."""

# Lines per caller and 10 s window (``throttle``) about broken input: a small budget, since
# it costs the caller nothing.
_BAD_INPUT_BURST = 5


class PeerListener:
    """Accepts mTLS connections from other gateways of the fabric."""

    def __init__(
        self,
        *,
        context: Callable[[], ssl.SSLContext],
        ingress: Ingress,
        health: Callable[[PeerName], Health],
        settings: DataplaneSettings,
        limits: Limits,
        link: Callable[[PeerName, LinkRequest], Awaitable[LinkAnswer | Verdict]] | None = None,
        reverse: ReverseLinks | None = None,
    ) -> None:
        self._context = context
        self.ingress = ingress
        self.health = health  # the answer to a heartbeat from that caller
        # The answer to that caller's invitation; a listener without one serves no links.
        self.link = link or _no_links
        self.reverse = reverse  # links from peers that dial in; None: none are taken
        self.settings = settings
        self.limits = limits
        self._bad_input = LogThrottle(log, burst=_BAD_INPUT_BURST)
        self._server: asyncio.Server | None = None
        # Accepted connections, to retire them after a credentials reload (held weakly:
        # a connection that ends is gone from here by itself).
        self._inbound: weakref.WeakSet[MuxSession | BasicSession] = weakref.WeakSet()

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
        self.ingress.close()
        if self._server is not None:
            await self._server.wait_closed()

    def track(self, session: MuxSession | BasicSession) -> None:
        self._inbound.add(session)

    def drain_inbound(self) -> None:
        """After a credentials reload (a CA removed from the trust bundle, say): every
        accepted connection is retired gracefully, so a caller's next tunnel comes over a new
        connection, verified against what we trust now; open tunnels finish where they are."""
        for session in list(self._inbound):
            session.drain()

    def log_bad_input(self, caller: str, message: str, *args: object) -> None:
        """A request or stream refused for what the caller sent (not for a decision)."""
        self._bad_input.log(logging.INFO, caller, message, *args)

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

    Before TLS starts, the ClientHello is peeked at (``transport.tls_sniff``): a connection
    that will be multiplexed is served by a ``SocketTLSTransport`` (OpenSSL on the socket),
    every other one by this layer, on a transport the loop makes anew for the socket. Both
    take the slots along; a client that sends nothing meets the handshake deadline here.
    """

    def __init__(self, listener: PeerListener, context: ssl.SSLContext) -> None:
        super().__init__(
            context,
            _Handshaken(listener),
            server_side=True,
            handshake_timeout_s=listener.settings.handshake_timeout_s,
        )
        self._listener = listener
        self._context = context
        self._is_admitted = False
        self._is_sniffed = False  # the next connection_made is the layer's own
        self._stale_losses = 0  # losses of transports closed to take their socket over
        self._sniffing: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._is_sniffed:
            super().connection_made(transport)
            return
        limits = self._listener.limits
        remote = format_peername(transport.get_extra_info("peername"))
        refusal = _admit(limits)
        if refusal is None:
            self._is_admitted = True
            self.handshake_done.add_done_callback(partial(self._listener.handshake_ended, remote))
            sock = take_over(transport)
            if sock is None:
                self._is_sniffed = True
                super().connection_made(transport)
                return
            self._stale_losses += 1
            self._sniffing = asyncio.ensure_future(self._sniff(sock))
            return
        limit, why = refusal
        limits.hit(limit, _host(remote), "reset %s: %s", remote, why)
        reset(cast(asyncio.Transport, transport))

    async def _sniff(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._handshake_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                offered = await peek_alpn(sock)
            chosen = next((p for p in PEER_ALPN if offered is not None and p in offered), None)
            if chosen in (MUX_ALPN, REVERSE_MUX_ALPN):
                timeout_s = max(deadline - loop.time(), 0.001)
                tls = await handshake(sock, self._context, server_side=True, timeout_s=timeout_s)
                self.handshake_done.set_result(None)
                SocketTLSTransport(tls, self.app, on_lost=self._give_back).start()
                return
            self._is_sniffed = True  # the layer's own deadline starts now: the peek was short
            await loop.connect_accepted_socket(lambda: self, sock)
        except TimeoutError:
            timeout_s = self._listener.settings.handshake_timeout_s
            self._end_unserved(
                sock, TimeoutError(f"TLS handshake did not finish within {timeout_s:g}s")
            )
        except OSError as exc:
            self._end_unserved(sock, exc)
        except BaseException:
            sock.close()
            raise

    def _end_unserved(self, sock: socket.socket, exc: Exception) -> None:
        """The connection ends before any TLS layer took it: slots back, the failure told."""
        sock.close()
        self._give_back()
        if not self.handshake_done.done():
            self.handshake_done.set_exception(exc)
            self.handshake_done.exception()  # seen by handshake_ended

    def _give_back(self) -> None:
        if self._is_admitted:
            self._is_admitted = False
            self._listener.limits.peer_connections.give_back()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stale_losses:
            self._stale_losses -= 1
            return  # the first transport, closed by take_over: not the connection
        self._give_back()
        super().connection_lost(exc)


class _Handshaken(asyncio.Protocol):
    """First app protocol of an accepted connection: checks who called and in which mode."""

    def __init__(self, listener: PeerListener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tls = cast(asyncio.Transport, transport)
        remote = format_peername(transport.get_extra_info("peername"))
        name = peer_name_of(transport.get_extra_info("peercert"))
        if name is None:
            log.warning(
                "refused connection from %s: its certificate names no gateway of the fabric",
                remote,
            )
            tls.abort()
            return
        caller = PeerName(name)
        alpn = transport.get_extra_info("alpn_protocol")
        app: asyncio.Protocol
        refusal: str | None = None
        if alpn == ALPN_PROTOCOL:
            app = BasicSession(self.listener, caller, remote)
        elif alpn == MUX_ALPN:
            app = MuxSession(
                client_side=False,
                peer_name=caller,
                settings=self.listener.settings.mux,
                on_request=partial(self._on_stream, caller),
                on_refused=partial(self._on_refused, caller, remote),
            )
        elif alpn == REVERSE_MUX_ALPN:
            app, refusal = self._reverse_link(caller, remote)
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
        if refusal is not None:
            assert isinstance(app, MuxSession)
            app.close(refusal)

    def _reverse_link(self, caller: PeerName, remote: str) -> tuple[MuxSession, str | None]:
        """A link dialled by a peer that dials in: we are the client of its streams. One we
        do not take is closed with a GOAWAY that says why, for the peer's log (the refusal,
        returned)."""
        listener = self.listener
        session = MuxSession(
            client_side=True,
            peer_name=caller,
            settings=listener.settings.mux,
            health=partial(listener.health, caller),
        )
        links = listener.reverse
        why = "this gateway takes no reverse links" if links is None else links.refusal(caller)
        if why is not None or links is None:
            listener.log_bad_input(
                caller, "refused reverse link from peer %s (%s): %s", caller, remote, why
            )
            return session, why
        links.attach(caller, session, remote)
        return session, None

    def _on_stream(self, caller: PeerName, session: MuxSession, event: StreamRequest) -> None:
        self.listener.ingress.serve_stream(caller, session, event)

    def _on_refused(self, caller: str, remote: str, _: MuxSession, event: StreamRefused) -> None:
        self.listener.stream_refused(caller, remote, event)


async def _no_links(caller: PeerName, request: LinkRequest) -> LinkAnswer | Verdict:
    return Verdict.not_found("this gateway accepts no invitations")


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

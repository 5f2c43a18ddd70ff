"""Opening a tunnel to a peer gateway: CONNECT on a warm mTLS connection, then the verdict.

The source side of DESIGN §5 after the egress decision: take an already-handshaken
connection from the peer's pool (or dial one), send ``CONNECT ns/name`` with the client's
attributes, and wait for the answer. On ``200`` the same connection is the tunnel, and bytes
the service sent right behind the ``200`` are handed back so the relay delivers them first.

A peer may list several gateways; they are tried in order and the first that answers
serves. A warm connection that turns out to have been closed by the other side before it
answered is replaced once by a fresh dial: that race is normal for pooled connections and
must not cost the client its connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import cast

from clusterlink.addresses import format_address
from clusterlink.api import Gateway
from clusterlink.dataplane.reverse_links import ReverseLinks
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.errors import PeerUnreachable, RemoteProtocolError, TunnelRefused
from clusterlink.ids import PeerName
from clusterlink.protocol import NEED_DATA, ExportRef, PeerClientConnection, Verdict
from clusterlink.protocol.mux import MUX_ALPN
from clusterlink.transport.dial import dial_tls, dial_tls_socket, expect_peer_listener
from clusterlink.transport.mux import MuxSession
from clusterlink.transport.mux_pool import MuxPool
from clusterlink.transport.pool import WarmPool
from clusterlink.transport.tls import TLSLayer, TLSTransport

__all__ = ["PeerConnector"]


def _refused(peer: str, verdict: Verdict) -> TunnelRefused:
    return TunnelRefused(
        peer, status=verdict.status, reason=verdict.reason, message=verdict.message
    )


class _NoMultiplex(PeerUnreachable):
    """The gateway did not negotiate the multiplexed mode: use the basic mode with it."""


class _LostBeforeAnswer(PeerUnreachable):
    """The connection ended before any answer: on a warm connection, worth one retry."""


class _AwaitVerdict(asyncio.Protocol):
    """App protocol of a peer connection between sending CONNECT and reading the answer."""

    def __init__(self, conn: PeerClientConnection, what: str) -> None:
        self.conn = conn
        self.what = what
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)  # after the answer: tunnel bytes, kept as trailing data
        if not self.answer.done():
            self._parse()

    def eof_received(self) -> bool:
        if not self.answer.done():
            self.conn.receive_data(b"")
            self._parse()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            reason = f": {exc}" if exc else ""
            self.answer.set_exception(
                _LostBeforeAnswer(f"{self.what} closed the connection before answering{reason}")
            )

    def _parse(self) -> None:
        try:
            event = self.conn.next_event()
        except RemoteProtocolError as exc:
            self.answer.set_exception(PeerUnreachable(f"{self.what}: {exc}"))
            return
        if event is NEED_DATA:
            return
        if not isinstance(event, Verdict):  # a CONNECT is answered with a verdict, or broken
            kind = type(event).__name__
            self.answer.set_exception(PeerUnreachable(f"{self.what} answered with a {kind}"))
            return
        assert self.transport is not None
        self.transport.pause_reading()  # what follows belongs to the relay
        self.answer.set_result(event)


class PeerConnector:
    """Warm pools per peer gateway address, and the CONNECT exchange on top of them."""

    def __init__(
        self,
        *,
        context: Callable[[], ssl.SSLContext],
        mux_context: Callable[[], ssl.SSLContext],
        settings: DataplaneSettings,
        reverse: ReverseLinks | None = None,
    ) -> None:
        self._context = context
        self._mux_context = mux_context
        self._settings = settings
        self._reverse = reverse  # links from peers that dial in
        self._pools: dict[tuple[str, str, int], WarmPool] = {}
        self._mux_pools: dict[tuple[str, str, int], MuxPool] = {}
        self._basic_only: set[tuple[str, str, int]] = set()  # gateways without the mux mode

    def _dialer(
        self, peer: str, gateway: Gateway, context: Callable[[], ssl.SSLContext]
    ) -> Callable[[asyncio.Protocol], Awaitable[TLSLayer]]:
        settings = self._settings
        addr = (gateway.host, gateway.port)

        async def dial(app: asyncio.Protocol) -> TLSLayer:
            return await dial_tls(
                addr,
                app,
                context=context(),
                server_name=peer,
                connect_timeout_s=settings.connect_timeout_s,
                handshake_timeout_s=settings.handshake_timeout_s,
                what=f"peer {peer} gateway",
            )

        return dial

    def _basic_dialer(
        self, peer: str, gateway: Gateway
    ) -> Callable[[asyncio.Protocol], Awaitable[TLSLayer]]:
        """Dials for the basic mode, which every peer listener speaks: a connection that
        did not select it reached something else (an admin API port), and says so."""
        dial = self._dialer(peer, gateway, self._context)
        where = format_address((gateway.host, gateway.port))

        async def dial_basic(app: asyncio.Protocol) -> TLSLayer:
            layer = await dial(app)
            expect_peer_listener(layer, where)
            return layer

        return dial_basic

    def _pool(self, peer: str, gateway: Gateway) -> WarmPool:
        key = (peer, gateway.host, gateway.port)
        pool = self._pools.get(key)
        if pool is None:
            dial = self._basic_dialer(peer, gateway)
            settings = self._settings
            pool = WarmPool(dial, size=settings.pool_size, max_idle_s=settings.pool_max_idle_s)
            self._pools[key] = pool
        return pool

    def _mux_pool(self, peer: str, gateway: Gateway) -> MuxPool:
        key = (peer, gateway.host, gateway.port)
        pool = self._mux_pools.get(key)
        if pool is None:
            settings = self._settings
            addr = (gateway.host, gateway.port)

            async def session() -> MuxSession:
                app = MuxSession(client_side=True, peer_name=peer, settings=settings.mux)
                # No memory BIO: a multiplexed connection never half-closes (tls_socket).
                layer = await dial_tls_socket(
                    addr,
                    app,
                    context=self._mux_context(),
                    server_name=peer,
                    connect_timeout_s=settings.connect_timeout_s,
                    handshake_timeout_s=settings.handshake_timeout_s,
                    what=f"peer {peer} gateway",
                )
                if layer.get_extra_info("alpn_protocol") != MUX_ALPN:
                    layer.abort()
                    raise _NoMultiplex(f"peer {peer} gateway does not offer multiplexing")
                return app

            pool = self._mux_pools[key] = MuxPool(session)
        return pool

    async def open(
        self,
        peer: str,
        gateways: Sequence[Gateway],
        export: ExportRef,
        attributes: Mapping[str, str],
        *,
        dials_in: bool = False,
    ) -> tuple[asyncio.Transport, bytes]:
        """The tunnel's transport and the service's first bytes; raises if refused/failed.

        A peer that ``dials_in`` is reached only over a link it dialled (``ReverseLinks``).
        """
        timeout_s = self._settings.verdict_timeout_s
        if dials_in:
            if self._reverse is None:
                raise PeerUnreachable(f"peer {peer} dials in, and this gateway takes no links")
            try:
                async with asyncio.timeout(timeout_s):
                    return await self._open_reverse(self._reverse, peer, export, attributes)
            except TimeoutError:
                raise PeerUnreachable(
                    f"peer {peer} did not answer over its link within {timeout_s:g}s"
                ) from None
        errors: list[str] = []
        for gateway in gateways:
            key = (peer, gateway.host, gateway.port)
            what = f"peer {peer} at {format_address((gateway.host, gateway.port))}"
            try:
                async with asyncio.timeout(timeout_s):
                    if self._settings.multiplex and key not in self._basic_only:
                        try:
                            return await self._open_stream(
                                self._mux_pool(peer, gateway), peer, export, attributes
                            )
                        except _NoMultiplex:
                            self._basic_only.add(key)
                    return await self._connect(
                        self._pool(peer, gateway), peer, what, export, attributes
                    )
            except TimeoutError:
                errors.append(f"{what} did not answer within {timeout_s:g}s")
            except PeerUnreachable as exc:
                errors.append(str(exc))
        raise PeerUnreachable("; ".join(errors) or f"peer {peer} lists no gateway")

    @staticmethod
    async def _open_stream(
        pool: MuxPool, peer: str, export: ExportRef, attributes: Mapping[str, str]
    ) -> tuple[asyncio.Transport, bytes]:
        """A tunnel as a stream of the peer's multiplexed connection (bytes behind the 200
        wait in the stream itself, so nothing comes back beside it)."""
        session, is_new = await pool.session()
        try:
            stream, verdict = await session.open_stream(export, attributes)
        except PeerUnreachable:
            if is_new or (session.is_open and session.can_open_stream):
                raise
            # The shared connection died or started draining under us (a normal race, e.g.
            # a GOAWAY after a certificate reload crossed our open): once more on a new one.
            session, _ = await pool.session()
            stream, verdict = await session.open_stream(export, attributes)
        if not verdict.is_allowed:
            raise _refused(peer, verdict)
        return stream, b""

    @staticmethod
    async def _open_reverse(
        links: ReverseLinks, peer: str, export: ExportRef, attributes: Mapping[str, str]
    ) -> tuple[asyncio.Transport, bytes]:
        session = links.session(PeerName(peer))
        stream, verdict = await session.open_stream(export, attributes)
        if not verdict.is_allowed:
            raise _refused(peer, verdict)
        return stream, b""

    async def _connect(
        self,
        pool: WarmPool,
        peer: str,
        what: str,
        export: ExportRef,
        attributes: Mapping[str, str],
    ) -> tuple[TLSTransport, bytes]:
        conn = PeerClientConnection(peer)
        reader = _AwaitVerdict(conn, what)
        layer, was_warm = await pool.acquire(reader)
        try:
            return await self._exchange(layer, reader, peer, export, attributes)
        except _LostBeforeAnswer:
            if not was_warm:
                raise
        conn = PeerClientConnection(peer)
        reader = _AwaitVerdict(conn, what)
        layer = await pool.dial_fresh(reader)
        return await self._exchange(layer, reader, peer, export, attributes)

    @staticmethod
    async def _exchange(
        layer: TLSLayer,
        reader: _AwaitVerdict,
        peer: str,
        export: ExportRef,
        attributes: Mapping[str, str],
    ) -> tuple[TLSTransport, bytes]:
        layer.transport.write(reader.conn.connect_request(export, attributes))
        try:
            verdict = await reader.answer
        except BaseException:
            layer.abort()
            raise
        if not verdict.is_allowed:
            layer.abort()
            raise _refused(peer, verdict)
        return layer.transport, reader.conn.trailing_data

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        for mux_pool in self._mux_pools.values():
            mux_pool.close()
        self._pools.clear()
        self._mux_pools.clear()

    def retire_connections(self) -> None:
        """After a certificate reload: new tunnels go over new connections (made with the new
        credentials); tunnels already open finish on the old ones."""
        for pool in self._pools.values():
            pool.retire()
        for mux_pool in self._mux_pools.values():
            mux_pool.retire()

    def fail_pending(self, peer: str, gateway: Gateway) -> None:
        """The gateway missed a heartbeat: tunnels still waiting for its verdict give up now
        and try their next source, instead of waiting out ``verdict_timeout_s``."""
        pool = self._mux_pools.get((peer, gateway.host, gateway.port))
        if pool is not None:
            where = format_address((gateway.host, gateway.port))
            pool.fail_pending(f"peer {peer} at {where} missed its heartbeat; trying elsewhere")

    def forget_peer(self, peer: str) -> None:
        """A peer was deleted or changed its gateways: no new tunnel goes over the
        connections made for it so far. Its open tunnels are not cut: like every change of
        resources this one applies to new connections (``--close-tunnels`` cuts them); a
        multiplexed connection closes once its last tunnel has ended."""
        for key in [k for k in self._pools if k[0] == peer]:
            self._pools.pop(key).close()  # idle ones only: a basic tunnel is a connection
        for key in [k for k in self._mux_pools if k[0] == peer]:
            self._mux_pools.pop(key).close(drain=True)
        self._basic_only = {k for k in self._basic_only if k[0] != peer}

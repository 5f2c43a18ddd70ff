"""Every way a gateway joins two connections through a relay, as real loopback tunnels.

The kinds, named client side - service side, as the relay conformance checks
(``relay_conformance.py``) open them:

- ``tcp-tcp``: plain TCP on both sides;
- ``tcp-tls``: a plain client, and the ``TLSLayer`` towards the service (the source gateway
  in the basic mode: import listener -> a TLS connection to the peer);
- ``tls-tcp``: the ``TLSLayer`` towards the client, plain TCP to the service (the target
  gateway in the basic mode: the peer's TLS connection -> the exported service);
- ``tcp-stream``: a plain client, and a stream of a multiplexed mTLS connection towards the
  service (the source gateway in the mux mode);
- ``stream-tcp``: a stream from the peer, plain TCP to the service (the target gateway in the
  mux mode).

The test owns both outer ends (``Endpoint``s, on a socket or on the far end of the stream);
the relay's sides are handed over as the listeners hand them: connected, reading paused
(``Parked``, or a stream not yet attached). All the stream tunnels of one ``StreamJoin`` are
streams of one connection, ``MuxLink``: client "a" and server "b" talking the mux protocol over
a real ``TLSLayer`` with the fabric's certificates, the test answering every OPEN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from clusterlink.certs import peer_client_context, peer_server_context
from clusterlink.dataplane.relay import Parked
from clusterlink.protocol import ExportRef
from clusterlink.protocol.mux import MUX_ALPN, MuxSettings, StreamRequest
from clusterlink.transport.dial import dial_tls_socket
from clusterlink.transport.mux import MuxSession, StreamTransport
from clusterlink.transport.tls import TLSLayer
from clusterlink.transport.tls_socket import SocketTLSTransport
from tests.component._net import (
    LOCALHOST,
    WAIT_S,
    Endpoint,
    Fabric,
    connect_tcp,
    connect_tls,
    dial_b,
    listen,
    tls_server_factory,
    until,
)
from tests.component.relay_conformance import (
    HIGH_WATER,
    MAX_READ,
    TLS_OVERHEAD,
    Join,
    Tunnel,
)

__all__ = [
    "DB",
    "KINDS",
    "MuxLink",
    "PlainJoin",
    "StreamJoin",
    "attach",
    "join_for",
    "mux_link",
    "parked_tcp",
]

KINDS = ["tcp-tcp", "tcp-tls", "tls-tcp", "tcp-stream", "stream-tcp"]
DB = ExportRef("default", "db")


class _SignalParked(Parked):
    """A ``Parked`` that says when its connection is there (the relay accepts subclasses)."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ready.set_result(None)


@dataclass
class _ParkedSide:
    """The relay's side of a TCP or TLS connection: a ``Parked`` protocol holds it."""

    parked: _SignalParked
    layers: list[TLSLayer]  # the relay's TLS layer of it, if any (the test's listener's list)

    @property
    def transport(self) -> asyncio.Transport:
        return self.parked.transport

    async def until_eof(self) -> None:
        await self._deliver_until(lambda: self.parked.eof)

    async def until_lost(self) -> None:
        await self._deliver_until(lambda: self.parked.is_lost)

    async def _deliver_until(self, done: Callable[[], bool]) -> None:
        """Let the parked connection read until ``done()``, as the loop may before the relay
        attaches (uvloop reads a chunk whatever ``connection_made`` asked; a TLS record may
        hold more than one read)."""
        async with asyncio.timeout(WAIT_S):
            while not done():
                self.parked.transport.resume_reading()  # Parked pauses again on every chunk
                await asyncio.sleep(0.001)  # the poll's own interval

    def parts(self) -> list[object]:
        return list(self.layers)

    def let_go(self) -> None:
        self.parked.transport = None  # type: ignore[assignment]  # the tunnel is over
        self.layers.clear()


@dataclass
class _StreamSide:
    """The relay's side of a stream: not attached yet, so it holds what arrives."""

    stream: StreamTransport | None

    @property
    def transport(self) -> asyncio.Transport:
        assert self.stream is not None
        return self.stream

    async def until_eof(self) -> None:
        stream = self.stream
        assert stream is not None
        # The END is held with the bytes before it until a protocol reads: no event says so.
        await until(lambda: stream._got_end)

    async def until_lost(self) -> None:
        await until(self.transport.is_closing)

    def parts(self) -> list[object]:
        return [self.transport]

    def let_go(self) -> None:
        self.stream = None


async def parked_tcp(end: Endpoint, *, accepted: bool) -> _ParkedSide:
    """A loopback TCP connection: the test's ``end`` on one side, a parked one for the
    relay on the other (``accepted``: the relay's side is the listening one)."""
    parked = _SignalParked()
    if accepted:
        _, port = await listen(lambda: parked)
        await connect_tcp(port, end)
    else:
        _, port = await listen(lambda: end)
        await connect_tcp(port, parked)
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(parked.ready, end.made)
    return _ParkedSide(parked, [])


@dataclass
class PlainJoin:
    """Tunnels of the kinds ``tcp-tcp``, ``tcp-tls`` and ``tls-tcp``."""

    fabric: Fabric
    kind: str
    # The TLS layer under each of the test's own ends that is on TLS.
    test_layers: dict[Endpoint, TLSLayer] = field(default_factory=dict)

    async def __call__(self, *, service: Endpoint | None = None, start: bool = True) -> Tunnel:
        client_kind, service_kind = self.kind.split("-")
        service = service or Endpoint()
        client = Endpoint()

        # The service, and the relay's connection to it.
        if service_kind == "tcp":
            down = await parked_tcp(service, accepted=False)
        else:
            service_layers: list[TLSLayer] = []
            _, service_port = await listen(
                tls_server_factory(self.fabric.server(), lambda: service, service_layers)
            )
            service_parked = _SignalParked()
            layer = await dial_b(
                service_port, service_parked, self.fabric.client(), what="test service"
            )
            async with asyncio.timeout(WAIT_S):
                await asyncio.gather(service.made, service_parked.ready)
            self.test_layers[service] = service_layers[0]
            down = _ParkedSide(service_parked, [layer])

        # The client, and the relay's accepted connection from it.
        if client_kind == "tcp":
            up = await parked_tcp(client, accepted=True)
        else:
            client_parked = _SignalParked()
            accepted: list[TLSLayer] = []
            _, front_port = await listen(
                tls_server_factory(self.fabric.server(), lambda: client_parked, accepted)
            )
            self.test_layers[client] = await connect_tls(front_port, client, self.fabric.client())
            async with asyncio.timeout(WAIT_S):
                await asyncio.gather(client.made, client_parked.ready)
            up = _ParkedSide(client_parked, accepted)

        limit = HIGH_WATER + MAX_READ + (TLS_OVERHEAD if service_kind == "tls" else 0)
        tunnel = Tunnel(client, service, up, down, buffer_limit=limit)
        if start:
            tunnel.start()
        return tunnel


# -- multiplexed connections ------------------------------------------------------------------


@dataclass
class MuxLink:
    """Client "a" and server "b" of one multiplexed mTLS connection; the test answers."""

    client: MuxSession
    server: MuxSession
    client_layer: SocketTLSTransport  # as a gateway dials: OpenSSL on the socket
    server_layer: TLSLayer
    requests: asyncio.Queue[StreamRequest]

    async def request(self) -> StreamRequest:
        async with asyncio.timeout(WAIT_S):
            return await self.requests.get()

    async def open(self) -> tuple[StreamTransport, StreamTransport]:
        """An allowed stream: (the client's end, the server's end), both reading paused."""
        opening = asyncio.create_task(self.client.open_stream(DB, {}))
        served = self.server.accept((await self.request()).stream_id)
        assert served is not None
        async with asyncio.timeout(WAIT_S):
            stream, verdict = await opening
        assert verdict.is_allowed
        return stream, served


async def mux_link(
    fabric: Fabric, *, client: MuxSettings | None = None, server: MuxSettings | None = None
) -> MuxLink:
    requests: asyncio.Queue[StreamRequest] = asyncio.Queue()
    sessions: list[MuxSession] = []
    layers: list[TLSLayer] = []

    def serve() -> MuxSession:
        session = MuxSession(
            client_side=False,
            peer_name="a",
            settings=server,
            on_request=lambda _, event: requests.put_nowait(event),
        )
        sessions.append(session)
        return session

    context = peer_server_context(fabric.b, [MUX_ALPN])
    _, port = await listen(tls_server_factory(context, serve, layers))
    session = MuxSession(client_side=True, peer_name="b", settings=client)
    context = peer_client_context(fabric.a, [MUX_ALPN])
    layer = await dial_tls_socket(
        (LOCALHOST, port),
        session,
        context=context,
        server_name="b",
        connect_timeout_s=WAIT_S,
        handshake_timeout_s=WAIT_S,
        what="test gateway b",
    )
    assert layer.get_extra_info("alpn_protocol") == MUX_ALPN
    await until(lambda: bool(sessions) and sessions[0].transport is not None)
    return MuxLink(session, sessions[0], layer, layers[0], requests)


def attach(stream: StreamTransport, end: Endpoint) -> Endpoint:
    """Make ``end`` the protocol of ``stream`` as a relay does, and let it read (unless
    ``end`` holds its reading back)."""
    stream.set_protocol(end)
    end.connection_made(stream)
    if not end.is_held:
        stream.resume_reading()
    return end


@dataclass
class StreamJoin:
    """Tunnels of the kinds ``tcp-stream`` and ``stream-tcp``, all on one ``link`` (made by
    the first call unless given)."""

    fabric: Fabric
    kind: str
    link: MuxLink | None = None

    async def __call__(self, *, service: Endpoint | None = None, start: bool = True) -> Tunnel:
        if self.link is None:
            self.link = await mux_link(self.fabric)
        service, client = service or Endpoint(), Endpoint()
        stream, served = await self.link.open()
        limit = HIGH_WATER + MAX_READ
        if self.kind == "tcp-stream":  # source gateway: client TCP -> relay -> stream
            up = await parked_tcp(client, accepted=True)
            attach(served, service)
            tunnel = Tunnel(client, service, up, _StreamSide(stream), buffer_limit=limit)
        else:  # target gateway: stream -> relay -> service TCP
            down = await parked_tcp(service, accepted=False)
            attach(stream, client)
            tunnel = Tunnel(client, service, _StreamSide(served), down, buffer_limit=limit)
        if start:
            tunnel.start()
        return tunnel


def join_for(fabric: Fabric, kind: str) -> Join:
    """A fresh ``Join`` of ``kind`` (one of ``KINDS``)."""
    if kind in ("tcp-stream", "stream-tcp"):
        return StreamJoin(fabric, kind)
    return PlainJoin(fabric, kind)

"""Tunnels as streams of one multiplexed mTLS connection, over real sockets, on both loops.

Two ``MuxSession``s, client "a" and server "b", talk the mux protocol over a real loopback
``TLSLayer`` with the fabric's certificates. On top, the relay conformance check of
``test_relay.py``, with one side of the relay a ``StreamTransport``:

- ``tcp-stream``: the source gateway (a plain client, the relay, a stream to the peer);
- ``stream-tcp``: the target gateway (a stream from the peer, the relay, a plain service).

The test owns both outer ends: a TCP ``Endpoint``, or an ``Endpoint`` set on the far stream. The
checks are test_relay's, one for one and under the same names, with a reset stream
(a RESET frame) counting as a reset where the end is a stream: bytes both ways byte-identical,
half-close both ways with the reply still flowing, a reset on one side is a reset on the other
(never a clean EOF), ``on_close`` once with the right counts, and a slow reader that cannot make
the relay buffer without bound -- here *while another stream of the same connection keeps
flowing*. Then what only streams have: the loss of the TLS connection (or a peer breaking the
protocol) resetting every stream on it, a GOAWAY draining it, a stream reset before its relay
attached, bytes sent right behind the OPEN, 200 streams on one connection, a reset that must not
touch the shared socket, windows handed back for bytes nobody will read, an open that gets no
answer, and ``MuxPool``'s dial sharing and replacement.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from clusterlink.certs import peer_client_context, peer_name_of, peer_server_context
from clusterlink.dataplane.relay import Relay, RelayResult, reset
from clusterlink.errors import PeerUnreachable
from clusterlink.protocol import ExportRef, Verdict
from clusterlink.protocol.mux import (
    MUX_ALPN,
    MuxEvent,
    MuxSettings,
    StreamData,
    StreamEnded,
    StreamRequest,
)
from clusterlink.transport.dial import dial_tls
from clusterlink.transport.mux import MuxSession, StreamTransport
from clusterlink.transport.mux_pool import MuxPool
from clusterlink.transport.tls import TLSLayer
from tests.component._net import (
    LOCALHOST,
    WAIT_S,
    Endpoint,
    Fabric,
    Run,
    close_both,
    connect_tcp,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    is_reset,
    listen,
    pattern,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
    run_without_cycle_collector,
    still_alive,
    tls_server_factory,
    until,
)
from tests.component.test_relay import HIGH_WATER, MAX_READ, _SignalParked

pytestmark = pytest.mark.component

DB = ExportRef("default", "db")
ARRANGEMENTS = ["tcp-stream", "stream-tcp"]


@pytest.fixture(params=ARRANGEMENTS)
def arrangement(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- a multiplexed connection -----------------------------------------------------------------


@dataclass
class Link:
    """Client "a" and server "b" of one multiplexed mTLS connection; the test answers."""

    client: MuxSession
    server: MuxSession
    client_layer: TLSLayer
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
) -> Link:
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
    layer = await dial_tls(
        (LOCALHOST, port),
        session,
        context=peer_client_context(fabric.a, [MUX_ALPN]),
        server_name="b",
        connect_timeout_s=WAIT_S,
        handshake_timeout_s=WAIT_S,
        what="test gateway b",
    )
    assert layer.get_extra_info("alpn_protocol") == MUX_ALPN
    await until(lambda: bool(sessions) and sessions[0].transport is not None)
    return Link(session, sessions[0], layer, layers[0], requests)


def attach(stream: StreamTransport, end: Endpoint, *, reading: bool = True) -> Endpoint:
    """Make ``end`` the protocol of ``stream`` as a relay does, and let it read."""
    stream.set_protocol(end)
    end.connection_made(stream)
    if reading:
        stream.resume_reading()
    return end


async def parked_tcp(end: Endpoint, *, accepted: bool) -> asyncio.Transport:
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
    return parked.transport


# -- the relay over a stream ------------------------------------------------------------------


@dataclass
class Tunnel:
    client: Endpoint  # the test's client (TCP, or on the client's stream)
    service: Endpoint  # the test's service (on the server's stream, or TCP)
    up: asyncio.Transport  # the relay's client side
    down: asyncio.Transport  # the relay's service side
    results: list[RelayResult] = field(default_factory=list)
    relay: Relay | None = None

    def start(self) -> Relay:
        self.relay = Relay(self.up, self.down, on_close=self.results.append)
        self.relay.start()
        return self.relay

    async def wait_closed(self) -> RelayResult:
        """The relay's single report, once both sides are gone."""
        await until(lambda: bool(self.results))
        for _ in range(10):  # a second report would come from callbacks already queued
            await asyncio.sleep(0)
        assert len(self.results) == 1, self.results
        return self.results[0]


async def open_tunnel(
    link: Link,
    arrangement: str,
    *,
    slow_service: bool = False,
    start: bool = True,
) -> Tunnel:
    """A relay between a TCP connection and a stream of ``link``; ``slow_service``: the
    test's service does not read until ``release()``."""
    service, client = Endpoint(paused=slow_service), Endpoint()
    stream, served = await link.open()
    if arrangement == "tcp-stream":  # source gateway: client TCP -> relay -> stream
        up = await parked_tcp(client, accepted=True)
        tunnel = Tunnel(client, attach(served, service, reading=not slow_service), up, stream)
    else:  # target gateway: stream -> relay -> service TCP
        down = await parked_tcp(service, accepted=False)
        tunnel = Tunnel(attach(stream, client), service, served, down)
    if start:
        tunnel.start()
    return tunnel


def is_broken(end: Endpoint, exc: BaseException | None) -> bool:
    """The end saw its connection reset: ECONNRESET on TCP, a reset stream on a stream."""
    if isinstance(end.transport, StreamTransport):
        return isinstance(exc, ConnectionResetError)
    return is_reset(exc)


async def exchange(tunnel: Tunnel, up: bytes, down: bytes) -> None:
    """``up`` and ``down`` sent at once, each followed by EOF; each arrives whole."""

    async def talk(end: Endpoint, data: bytes) -> None:
        await end.send(data)
        end.transport.write_eof()

    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(talk(tunnel.client, up), talk(tunnel.service, down))
    assert await tunnel.service.read_to_eof() == up
    assert await tunnel.client.read_to_eof() == down


def test_bytes_cross_both_ways_byte_identical(run: Run, fabric: Fabric, arrangement: str) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(await mux_link(fabric), arrangement)
        up, down = pattern(3 * 1024 * 1024 + 17, 1), pattern(2 * 1024 * 1024 + 5, 2)
        await exchange(tunnel, up, down)

        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=len(up), bytes_down=len(down), error=None)
        for end in (tunnel.client, tunnel.service):
            end.transport.close()
            assert await end.wait_lost() is None  # a clean end: nobody saw a reset
            assert end.n_lost == 1

    run(scenario())


def test_client_half_close_reaches_the_service_and_the_reply_still_flows(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(await mux_link(fabric), arrangement)
        request, reply = pattern(100_000, 3), pattern(1_500_000, 4)
        await tunnel.client.send(request)
        tunnel.client.transport.write_eof()

        assert await tunnel.service.read_to_eof() == request
        assert tunnel.client.received == b""
        await tunnel.service.send(reply)
        tunnel.service.transport.write_eof()

        assert await tunnel.client.read_to_eof() == reply
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=len(request), bytes_down=len(reply), error=None)

    run(scenario())


def test_service_half_close_reaches_the_client_which_may_still_send(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(await mux_link(fabric), arrangement)
        banner, upload = b"220 ready; send, I will not write again\r\n", pattern(1_500_000, 5)
        await tunnel.service.send(banner)
        tunnel.service.transport.write_eof()

        assert await tunnel.client.read_to_eof() == banner
        await tunnel.client.send(upload)
        tunnel.client.transport.write_eof()

        assert await tunnel.service.read_to_eof() == upload
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=len(upload), bytes_down=len(banner), error=None)

    run(scenario())


@pytest.mark.parametrize("broken", ["client", "service"])
def test_a_reset_on_one_side_is_a_reset_on_the_other(
    run: Run, fabric: Fabric, arrangement: str, broken: str
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        tunnel = await open_tunnel(link, arrangement)
        culprit, victim = tunnel.client, tunnel.service
        if broken == "service":
            culprit, victim = victim, culprit
        await culprit.send(b"ping")
        await victim.read(4)
        reset(culprit.transport)

        assert is_broken(victim, await victim.wait_lost())
        assert not victim.eof.is_set()  # never mistaken for a clean end of stream
        result = await tunnel.wait_closed()
        assert result.error is not None and result.error.startswith(f"{broken} side: ")
        assert "ConnectionResetError" in result.error
        up, down = (4, 0) if broken == "client" else (0, 4)
        assert (result.bytes_up, result.bytes_down) == (up, down)
        # Only that tunnel ended: the connection carries the next one.
        assert link.client.is_open and link.server.is_open
        await open_tunnel(link, arrangement)

    run(scenario())


def test_a_reset_after_a_half_close_is_still_a_reset(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(await mux_link(fabric), arrangement)
        tunnel.client.transport.write_eof()  # the client has finished sending ...
        await tunnel.service.read_to_eof()
        reset(tunnel.service.transport)  # ... and the service breaks before answering
        assert is_broken(tunnel.client, await tunnel.client.wait_lost())
        assert not tunnel.client.eof.is_set()
        assert (await tunnel.wait_closed()).error is not None

    run(scenario())


def test_close_from_outside_resets_both_sides_and_reports_the_reason(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(await mux_link(fabric), arrangement)
        assert tunnel.relay is not None
        tunnel.relay.close("idle for 3600s")
        assert is_broken(tunnel.client, await tunnel.client.wait_lost())
        assert is_broken(tunnel.service, await tunnel.service.wait_lost())
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=0, bytes_down=0, error="idle for 3600s")

    run(scenario())


# -- back-pressure ----------------------------------------------------------------------------


def test_a_slow_reader_stops_its_stream_only_and_the_relay_buffers_boundedly(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        tunnel = await open_tunnel(link, arrangement, slow_service=True)
        relay = tunnel.relay
        assert relay is not None
        biggest = 0

        def sample() -> bool:
            nonlocal biggest
            biggest = max(biggest, tunnel.down.get_write_buffer_size())
            return False

        data = pattern(64 * 1024 * 1024, 6)  # far more than windows and socket buffers
        sender = asyncio.create_task(tunnel.client.send(data))
        sampler = asyncio.create_task(until(sample))
        try:
            # The service does not read: the stream's window or the socket fills, and the
            # relay must stop reading the client ...
            await until(
                lambda: (
                    tunnel.down.get_write_buffer_size() > HIGH_WATER
                    and not relay.up.transport.is_reading()
                )
            )
            # ... and then stays stopped: no more bytes move, the sender is held back ...
            moved = relay.up.n_bytes
            await asyncio.sleep(0.1)
            assert relay.up.n_bytes == moved < len(data)
            assert not sender.done()
            assert tunnel.client.is_write_paused
            # ... while another tunnel on the same connection moves megabytes both ways.
            other = await open_tunnel(link, arrangement)
            await exchange(other, pattern(3 * 1024 * 1024, 7), pattern(3 * 1024 * 1024, 8))
            assert relay.up.n_bytes == moved
        finally:
            sampler.cancel()
        limit = HIGH_WATER + MAX_READ
        assert biggest <= limit, f"relay buffered {biggest} bytes towards a slow reader"

        tunnel.service.release()
        async with asyncio.timeout(WAIT_S):
            await sender
        tunnel.client.transport.write_eof()
        assert await tunnel.service.read_to_eof() == data
        assert tunnel.service.bytes_while_paused == 0

    run(scenario())


# -- ends of the whole connection and of streams before the relay -------------------------------


@pytest.mark.parametrize("side", ["client", "server"])
def test_losing_the_tls_connection_resets_every_tunnel_on_it(
    run: Run, fabric: Fabric, side: str
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        tunnels = [await open_tunnel(link, a) for a in ARRANGEMENTS * 3]
        for tunnel in tunnels:
            await tunnel.client.send(b"hello")
            await tunnel.service.read(5)
        layer = link.client_layer if side == "client" else link.server_layer
        reset(layer.raw)  # the TCP connection under the TLS dies

        for tunnel in tunnels:
            for end in (tunnel.client, tunnel.service):
                assert is_broken(end, await end.wait_lost())
                assert not end.eof.is_set()
            assert (await tunnel.wait_closed()).error is not None
        assert not link.client.is_open
        await until(lambda: not link.server.is_open)
        assert link.client.streams == {} and link.server.streams == {}

    run(scenario())


def test_a_stream_reset_before_the_relay_attached_is_reported_when_it_attaches(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        tunnel = await open_tunnel(link, arrangement, start=False)
        if arrangement == "tcp-stream":  # the target side resets the source's stream
            relays_stream, peer, tcp_end, side = (
                tunnel.down,
                tunnel.service,
                tunnel.client,
                "service",
            )
        else:  # the source side resets the target's stream
            relays_stream, peer, tcp_end, side = tunnel.up, tunnel.client, tunnel.service, "client"
        reset(peer.transport)
        await until(relays_stream.is_closing)

        tunnel.start()
        assert is_reset(await tcp_end.wait_lost())
        assert not tcp_end.eof.is_set()
        result = await tunnel.wait_closed()
        assert result.error is not None and result.error.startswith(f"{side} side: ")

    run(scenario())


def test_bytes_sent_right_behind_the_connect_reach_the_service(run: Run, fabric: Fabric) -> None:
    """The server keeps what arrives before its answer (the stream exists from the request
    on, reading paused) and the relay delivers it first."""

    async def scenario() -> None:
        link = await mux_link(fabric)
        ledger = FlowLedger.of(link.server)
        sid = await connect_by_hand(link, b"early bytes")
        link.client.mux.end_stream(sid)
        link.client.flush()
        await until(lambda: sid in ledger.ended)  # all in, before the answer

        served = link.server.accept(sid)
        assert served is not None
        service = Endpoint()
        down = await parked_tcp(service, accepted=False)
        Relay(served, down, on_close=lambda _: None).start()
        assert await service.read_to_eof() == b"early bytes"

    run(scenario())


# -- what only streams have -------------------------------------------------------------------


def test_two_hundred_concurrent_streams_each_carry_their_own_bytes(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        n = 200
        pairs = await asyncio.gather(*(link.open() for _ in range(n)))
        assert len({stream.stream_id for stream, _ in pairs}) == n
        ends = [(attach(a, Endpoint()), attach(b, Endpoint())) for a, b in pairs]

        async def talk(end: Endpoint, data: bytes) -> None:
            await end.send(data, chunk=7_000)
            end.transport.write_eof()

        sizes = [20_000 + 997 * i for i in range(n)]
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(
                *(talk(c, pattern(sizes[i], i)) for i, (c, _) in enumerate(ends)),
                *(talk(s, pattern(sizes[i], -i)) for i, (_, s) in enumerate(ends)),
            )
        for i, (client, server) in enumerate(ends):
            assert await server.read_to_eof() == pattern(sizes[i], i)
            assert await client.read_to_eof() == pattern(sizes[i], -i)
            assert await client.wait_lost() is None and await server.wait_lost() is None
        assert link.client.streams == {} and link.server.streams == {}

    run(scenario())


def test_resetting_a_stream_leaves_the_shared_socket_alone(run: Run, fabric: Fabric) -> None:
    """``relay.reset`` sets SO_LINGER 0 on a transport's socket so that its close is a RST.
    A stream has no socket of its own: lingering the connection's would turn the graceful
    close of the whole connection, every other tunnel included, into a RST."""

    async def scenario() -> None:
        link = await mux_link(fabric)
        (stream, _), (other, other_served) = await link.open(), await link.open()
        reset(stream)
        for layer in (link.client_layer, link.server_layer):
            sock = layer.raw.get_extra_info("socket")
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.calcsize("ii"))
            assert struct.unpack("ii", raw)[0] == 0, "SO_LINGER was set on the shared socket"
        client, server = attach(other, Endpoint()), attach(other_served, Endpoint())
        await client.send(b"the other tunnel")
        assert await server.read(16) == b"the other tunnel"

    run(scenario())


def test_a_stream_tells_who_is_at_the_other_end_like_its_connection(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        stream, served = await link.open()
        assert peer_name_of(stream.get_extra_info("peercert")) == "b"
        assert peer_name_of(served.get_extra_info("peercert")) == "a"  # the ingress caller
        assert stream.get_extra_info("alpn_protocol") == MUX_ALPN
        assert stream.get_extra_info("peername") == link.client_layer.raw.get_extra_info("peername")
        assert (stream.get_extra_info("stream_id"), served.get_extra_info("stream_id")) == (
            stream.stream_id,
            served.stream_id,
        )
        assert stream.get_extra_info("socket") is None  # shared: see the test above

    run(scenario())


def test_eof_received_returning_false_closes_the_stream_cleanly(run: Run, fabric: Fabric) -> None:
    """As with asyncio's transports: a protocol that does not keep a half-open stream gets
    it closed, and the peer sees a clean end, not a reset."""

    async def scenario() -> None:
        link = await mux_link(fabric)
        stream, served = await link.open()
        client = attach(stream, Endpoint())
        server = attach(served, Endpoint(keep_open_on_eof=False))
        await client.send(b"last words")
        client.transport.write_eof()
        assert await server.wait_lost() is None
        assert server.received == b"last words"
        assert await client.read_to_eof() == b""
        assert await client.wait_lost() is None

    run(scenario())


def test_an_open_that_gets_no_answer_in_time_leaves_no_stream_at_either_end(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await link.client.open_stream(DB, {})  # the test never answers
        await link.request()
        assert link.client.streams == {}
        assert link.client._verdicts == {}  # no waiter kept for an answer that cannot come
        await until(lambda: link.server.streams == {})  # the client reset it
        await link.open()  # and the connection goes on

    run(scenario())


def test_opens_waiting_on_a_silent_peer_fail_at_once_and_open_tunnels_go_on(
    run: Run, fabric: Fabric
) -> None:
    """What ``fail_pending`` is for: the peer missed a heartbeat, so the opens still waiting
    for its verdict give up now (their clients try another source) instead of waiting out the
    verdict timeout; a tunnel already open on the same connection is not touched."""

    async def scenario() -> None:
        link = await mux_link(fabric)
        stream, served = await link.open()
        client, server = attach(stream, Endpoint()), attach(served, Endpoint())
        waiting = asyncio.create_task(link.client.open_stream(DB, {}))
        await link.request()  # it reached the peer, which will not answer
        link.client.fail_pending("peer b missed its heartbeat; trying elsewhere")
        with pytest.raises(PeerUnreachable, match="missed its heartbeat"):
            async with asyncio.timeout(WAIT_S):
                await waiting
        assert link.client._verdicts == {}
        stream.write(b"still here")
        assert await server.read(len(b"still here")) == b"still here"
        served.write(b"and answered")
        assert await client.read(len(b"and answered")) == b"and answered"

    run(scenario())


def test_a_peer_that_breaks_the_protocol_loses_the_connection_and_every_tunnel_on_it(
    run: Run, fabric: Fabric, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        pairs = [await link.open() for _ in range(3)]
        ends = [attach(stream, Endpoint()) for stream, _ in pairs]
        # A WINDOW frame must carry exactly 4 bytes; this one carries 2 (behind the engine).
        malformed_window = struct.pack("!II", 6 << 24 | 2, 1) + b"xx"
        link.server_layer.transport.write(malformed_window)
        for end in ends:
            assert isinstance(await end.wait_lost(), ConnectionResetError)
        assert not link.client.is_open and link.client.streams == {}
        await until(lambda: not link.server.is_open)
        with pytest.raises(PeerUnreachable):
            await link.client.open_stream(DB, {})

    with caplog.at_level(logging.WARNING, logger="clusterlink.mux"):
        run(scenario())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "clusterlink.mux"]
    assert line.startswith("closing multiplexed connection to b: malformed WINDOW frame")


@dataclass
class FlowLedger:
    """What one session's ``MuxConnection`` was given and handed back, per stream: a byte
    never handed back (``consumed``) shrinks the whole connection's window for good."""

    received: Counter[int] = field(default_factory=Counter)
    handed_back: Counter[int] = field(default_factory=Counter)
    ended: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, session: MuxSession) -> FlowLedger:
        ledger, mux = cls(), session.mux
        receive, consumed = mux.receive_data, mux.consumed

        def receiving(data: bytes) -> list[MuxEvent]:
            events = receive(data)
            for event in events:
                if isinstance(event, StreamData):
                    ledger.received[event.stream_id] += event.flow_bytes
                elif isinstance(event, StreamEnded):
                    ledger.ended.add(event.stream_id)
            return events

        def handing_back(stream_id: int, flow_bytes: int) -> None:
            ledger.handed_back[stream_id] += flow_bytes
            consumed(stream_id, flow_bytes)

        # Spies with the same signatures; the session looks both up on every call.
        mux.receive_data = receiving  # type: ignore[method-assign]
        mux.consumed = handing_back  # type: ignore[method-assign]
        return ledger


async def connect_by_hand(link: Link, data: bytes) -> int:
    """A CONNECT with ``data`` right behind it, before any answer (``MuxSession.open_stream``
    waits for the answer first); the server's request for it has arrived."""
    mux = link.client.mux
    sid = mux.open_stream(DB, {})
    link.client.flush()
    await until(lambda: mux.send_window(sid) >= len(data))  # the server's settings are in
    assert mux.send_data(sid, data) == len(data)
    link.client.flush()
    assert (await link.request()).stream_id == sid
    return sid


def _abort_here(link: Link, sid: int) -> None:
    stream = link.server.accept(sid)
    assert stream is not None
    stream.abort()


def _reset_by_the_peer(link: Link, sid: int) -> None:
    link.server.accept(sid)
    link.client.mux.reset_stream(sid)
    link.client.flush()


def _refused(link: Link, sid: int) -> None:
    link.server.refuse(sid, Verdict.denied("no policy allows it"))


def _closed_after_both_ends(link: Link, sid: int) -> None:
    stream = link.server.accept(sid)
    assert stream is not None
    stream.write_eof()
    link.client.mux.end_stream(sid)
    link.client.flush()
    asyncio.get_running_loop().call_later(0.02, stream.close)  # after the END arrived


ENDINGS: dict[str, Callable[[Link, int], None]] = {
    "aborted here": _abort_here,
    "reset by the peer": _reset_by_the_peer,
    "refused before the answer": _refused,
    "closed after both ends": _closed_after_both_ends,
}


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_bytes_nobody_will_read_are_handed_back_to_the_connection_window(
    run: Run, fabric: Fabric, ending: Callable[[Link, int], None]
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        ledger = FlowLedger.of(link.server)
        sid = await connect_by_hand(link, b"x" * 300_000)
        await until(lambda: ledger.received[sid] == 300_000)  # held: no relay reads them
        assert ledger.handed_back[sid] == 0

        ending(link, sid)
        await until(lambda: sid not in link.server.streams)
        await asyncio.sleep(0.05)
        assert ledger.handed_back[sid] == 300_000

    run(scenario())


def test_a_goaway_drains_the_connection_open_tunnels_go_on_and_new_ones_go_elsewhere(
    run: Run, fabric: Fabric
) -> None:
    """GOAWAY means: no new streams here. The tunnels already open finish normally; a new
    open on this connection is refused locally (the pool then dials another)."""

    async def scenario() -> None:
        link = await mux_link(fabric)
        stream, served = await link.open()
        client = attach(stream, Endpoint())
        server = attach(served, Endpoint())
        link.server.mux.close()  # GOAWAY, the connection left open (a draining peer)
        link.server.flush()
        await until(lambda: not link.client.can_open_stream)
        stream.write(b"after the GOAWAY")
        assert await server.read(len(b"after the GOAWAY")) == b"after the GOAWAY"
        served.write(b"still answered")
        assert await client.read(len(b"still answered")) == b"still answered"
        with pytest.raises(PeerUnreachable):
            await link.client.open_stream(DB, {})
        assert link.client.is_open

    run(scenario())


def test_a_drained_session_takes_no_new_stream_lets_open_ones_finish_then_closes(
    run: Run, fabric: Fabric
) -> None:
    """``drain`` retires a connection (after a certificate reload): GOAWAY at once, the open
    tunnels finish on it, and the connection closes when the last of them has ended."""

    async def scenario() -> None:
        link = await mux_link(fabric)
        stream, served = await link.open()
        client, server = attach(stream, Endpoint()), attach(served, Endpoint())
        link.client.drain()
        assert not link.client.can_open_stream
        with pytest.raises(PeerUnreachable):
            await link.client.open_stream(DB, {})
        stream.write(b"still flowing")
        assert await server.read(len(b"still flowing")) == b"still flowing"
        assert link.client.is_open  # a stream is still open on it
        stream.write_eof()
        served.write_eof()
        assert await client.read_to_eof() == b""
        await until(lambda: not link.client.is_open)  # the last stream ended: closed
        await until(lambda: not link.server.is_open)

    run(scenario())


def test_one_write_of_several_frames_worth_is_sent_whole(run: Run, fabric: Fabric) -> None:
    """A DATA frame carries at most 1 MiB: a bigger single write must go out as several,
    not stall after the first one with the rest held."""

    async def scenario() -> None:
        link = await mux_link(fabric, server=MuxSettings(stream_window_bytes=64 * 1024 * 1024))
        stream, served = await link.open()
        server = attach(served, Endpoint())
        data = pattern(3 * 1024 * 1024 + 5, 10)
        stream.write(data)
        stream.write_eof()
        assert await server.read_to_eof() == data

    run(scenario())


def test_a_drained_session_closing_after_its_last_stream_delivers_that_streams_tail(
    run: Run, fabric: Fabric
) -> None:
    """The last stream of a retired connection ends while most of its bytes still wait in
    the socket buffers (the peer reads slowly), and the peer writes to us after we closed
    (its own GOAWAY here; window updates in real life). Those unread bytes must not turn our
    close into a RST that destroys the stream's tail: the peer gets every byte and the END."""

    async def scenario() -> None:
        window = MuxSettings(stream_window_bytes=64 * 1024 * 1024)  # nothing held back
        link = await mux_link(fabric, server=window)
        stream, served = await link.open()
        client, server = attach(stream, Endpoint()), attach(served, Endpoint())
        served.write_eof()
        assert await client.read_to_eof() == b""
        link.client.drain()
        link.server_layer.pause_reading()  # a slow peer: our bytes back up
        data = pattern(8 * 1024 * 1024, 9)
        stream.write(data)
        stream.write_eof()  # the last stream ends: the drained session closes
        await until(lambda: not link.client.is_open)
        link.server.mux.close()  # the peer writes to a connection we are closing
        link.server.flush()

        link.server_layer.resume_reading()
        assert await server.read_to_eof() == data

    run(scenario())


# -- MuxPool ----------------------------------------------------------------------------------


@dataclass
class Dialer:
    """The pool's dial: a real multiplexed connection each time, counted."""

    fabric: Fabric
    server: MuxSettings | None = None
    links: list[Link] = field(default_factory=list)
    fail_next: bool = False

    async def __call__(self) -> MuxSession:
        if self.fail_next:
            self.fail_next = False
            await asyncio.sleep(0.01)
            raise PeerUnreachable("peer b at 127.0.0.1:1: connection refused")
        link = await mux_link(self.fabric, server=self.server)
        self.links.append(link)
        return link.client


def test_concurrent_callers_share_one_dial(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        dialer = Dialer(fabric)
        pool = MuxPool(dialer)
        got = await asyncio.gather(*(pool.session() for _ in range(20)))
        assert len(dialer.links) == 1
        assert {id(session) for session, _ in got} == {id(dialer.links[0].client)}
        session, is_new = await pool.session()
        assert (session, is_new) == (dialer.links[0].client, False)
        pool.close()

    run(scenario())


def test_a_closed_or_lost_session_is_replaced_by_a_new_dial(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        dialer = Dialer(fabric)
        pool = MuxPool(dialer)
        first, _ = await pool.session()
        first.close()
        second, is_new = await pool.session()
        assert is_new and second is not first and len(dialer.links) == 2

        reset(dialer.links[1].server_layer.raw)  # lost from the other side
        await until(lambda: not second.is_open)
        third, is_new = await pool.session()
        assert is_new and third is not second and len(dialer.links) == 3
        pool.close()
        assert not third.is_open

    run(scenario())


def test_a_retired_pool_dials_anew_while_its_old_session_finishes_its_tunnels(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        dialer = Dialer(fabric)
        pool = MuxPool(dialer)
        old, _ = await pool.session()
        stream, _ = await dialer.links[0].open()  # a tunnel open on ``old``
        pool.retire()
        new, is_new = await pool.session()
        assert is_new and new is not old and len(dialer.links) == 2
        assert old.is_open and old.is_draining and not old.can_open_stream
        stream.abort()
        await until(lambda: not old.is_open)
        pool.close()

    run(scenario())


def test_a_full_session_gets_a_second_one_beside_it(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        dialer = Dialer(fabric, server=MuxSettings(max_concurrent_streams=2))
        pool = MuxPool(dialer)
        first, _ = await pool.session()
        link = dialer.links[0]
        opened = [await link.open() for _ in range(2)]
        assert not first.can_open_stream
        second, is_new = await pool.session()
        assert is_new and second is not first

        # Once a stream of the first ends, the first serves again (no third dial).
        opened[0][0].abort()
        await until(lambda: first.can_open_stream)
        again, is_new = await pool.session()
        assert (again, is_new) == (first, False)
        assert len(dialer.links) == 2
        pool.close()

    run(scenario())


def test_refused_streams_do_not_use_up_the_session(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric, server=MuxSettings(max_concurrent_streams=2))
        for _ in range(5):
            opening = asyncio.create_task(link.client.open_stream(DB, {}))
            link.server.refuse((await link.request()).stream_id, Verdict.denied("no"))
            async with asyncio.timeout(WAIT_S):
                _, verdict = await opening
            assert verdict.status == 403
        await until(lambda: link.client.can_open_stream)
        await link.open()

    run(scenario())


def test_a_failed_dial_fails_every_waiter_and_the_next_call_dials_again(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        dialer = Dialer(fabric, fail_next=True)
        pool = MuxPool(dialer)
        outcomes = await asyncio.gather(*(pool.session() for _ in range(5)), return_exceptions=True)
        assert all(isinstance(o, PeerUnreachable) for o in outcomes)
        session, is_new = await pool.session()
        assert is_new and session.is_open and len(dialer.links) == 1
        pool.close()

    run(scenario())


def test_a_finished_stream_tunnel_is_freed_at_once_without_the_cycle_collector(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    """A stream and its protocol refer to each other; a finished stream must let go, or
    finished tunnels wait for the cycle collector by the hundred under load."""

    async def scenario() -> None:
        tunnel = await open_tunnel(await mux_link(fabric), arrangement)
        relay = tunnel.relay
        assert relay is not None
        stream = tunnel.down if arrangement == "tcp-stream" else tunnel.up
        assert isinstance(stream, StreamTransport)
        gone: list[weakref.ref[object]] = [weakref.ref(relay), weakref.ref(stream)]
        await exchange(tunnel, pattern(300_000, 5), pattern(300_000, 6))
        await tunnel.wait_closed()
        await close_both(tunnel.client, tunnel.service)

        del relay, stream
        tunnel.relay = None
        tunnel.up = tunnel.down = None  # type: ignore[assignment]
        assert not still_alive(gone), "kept alive by a reference cycle"

    run_without_cycle_collector(run, scenario())

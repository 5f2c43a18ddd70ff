"""Tunnels as streams of one multiplexed mTLS connection, over real sockets, on both loops.

Two ``MuxSession``s, client "a" and server "b", talk the mux protocol over a real loopback
``TLSLayer`` with the fabric's certificates (``_tunnels.MuxLink``). What every tunnel must do
(bytes, half-close, resets, back-pressure with another stream of the connection flowing,
memory) is checked over streams, ``tcp-stream`` and ``stream-tcp``, by the relay conformance
checks in test_relay.py. Here is what only streams have: the loss of the TLS connection (or a
peer breaking the protocol) resetting every stream on it, bytes sent right behind the OPEN,
200 streams on one connection, a reset that must not touch the shared socket, what a stream
tells about its peer, windows handed back for bytes nobody will read, an open that gets no
answer, a GOAWAY or a drain retiring the connection, and ``MuxPool``'s dial sharing and
replacement.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from clusterlink.certs import peer_name_of
from clusterlink.dataplane.relay import Relay, reset
from clusterlink.errors import PeerUnreachable
from clusterlink.protocol import Verdict
from clusterlink.protocol.mux import MUX_ALPN, MuxEvent, MuxSettings, StreamData, StreamEnded
from clusterlink.transport.mux import MuxSession
from clusterlink.transport.mux_pool import MuxPool
from tests.component._net import (
    WAIT_S,
    Endpoint,
    Fabric,
    Run,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    pattern,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
    until,
)
from tests.component._tunnels import DB, MuxLink, StreamJoin, attach, mux_link, parked_tcp
from tests.component.relay_conformance import is_broken

pytestmark = pytest.mark.component

STREAM_KINDS = ["tcp-stream", "stream-tcp"]


# -- ends of the whole connection, and bytes before the relay -------------------------------


@pytest.mark.parametrize("side", ["client", "server"])
def test_losing_the_tls_connection_resets_every_tunnel_on_it(
    run: Run, fabric: Fabric, side: str
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        tunnels = [await StreamJoin(fabric, kind, link)() for kind in STREAM_KINDS * 3]
        for tunnel in tunnels:
            await tunnel.client.send(b"hello")
            await tunnel.service.read(5)
        # The TCP connection under the TLS dies.
        reset(link.client_layer if side == "client" else link.server_layer.raw)

        for tunnel in tunnels:
            for end in (tunnel.client, tunnel.service):
                assert is_broken(end, await end.wait_lost())
                assert not end.eof.is_set()
            assert (await tunnel.wait_closed()).error is not None
        assert not link.client.is_open
        await until(lambda: not link.server.is_open)
        assert link.client.streams == {} and link.server.streams == {}

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
        Relay(served, down.transport, on_close=lambda _: None).start()
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
            sock = layer.get_extra_info("socket")
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
        assert stream.get_extra_info("peername") == link.client_layer.get_extra_info("peername")
        assert (stream.get_extra_info("stream_id"), served.get_extra_info("stream_id")) == (
            stream.stream_id,
            served.stream_id,
        )
        assert stream.get_extra_info("socket") is None  # shared: see the test above

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


async def connect_by_hand(link: MuxLink, data: bytes) -> int:
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


def _abort_here(link: MuxLink, sid: int) -> None:
    stream = link.server.accept(sid)
    assert stream is not None
    stream.abort()


def _reset_by_the_peer(link: MuxLink, sid: int) -> None:
    link.server.accept(sid)
    link.client.mux.reset_stream(sid)
    link.client.flush()


def _refused(link: MuxLink, sid: int) -> None:
    link.server.refuse(sid, Verdict.denied("no policy allows it"))


def _closed_after_both_ends(link: MuxLink, sid: int) -> None:
    stream = link.server.accept(sid)
    assert stream is not None
    stream.write_eof()
    link.client.mux.end_stream(sid)
    link.client.flush()
    asyncio.get_running_loop().call_later(0.02, stream.close)  # after the END arrived


ENDINGS: dict[str, Callable[[MuxLink, int], None]] = {
    "aborted here": _abort_here,
    "reset by the peer": _reset_by_the_peer,
    "refused before the answer": _refused,
    "closed after both ends": _closed_after_both_ends,
}


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_bytes_nobody_will_read_are_handed_back_to_the_connection_window(
    run: Run, fabric: Fabric, ending: Callable[[MuxLink, int], None]
) -> None:
    async def scenario() -> None:
        link = await mux_link(fabric)
        ledger = FlowLedger.of(link.server)
        sid = await connect_by_hand(link, b"x" * 300_000)
        await until(lambda: ledger.received[sid] == 300_000)  # held: no relay reads them
        assert ledger.handed_back[sid] == 0

        ending(link, sid)
        await until(lambda: sid not in link.server.streams)
        await until(lambda: ledger.handed_back[sid] >= 300_000)
        assert ledger.handed_back[sid] == 300_000  # all of them, and no more

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
    links: list[MuxLink] = field(default_factory=list)
    fail_next: bool = False

    async def __call__(self) -> MuxSession:
        if self.fail_next:
            self.fail_next = False
            await asyncio.sleep(0.01)  # not a wait: the failure comes while every caller waits
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

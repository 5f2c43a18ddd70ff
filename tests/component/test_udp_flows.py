"""A UDP flow as the relay sees it, on a real loopback UDP socket (``dataplane.udp_flows``).

What a user of a UDP Import would notice: datagrams arrive whole and in order; while the
tunnel is not ready, at most the queue's worth waits and the oldest go first (counted); the
service's answers come back framed; a quiet end reaches the relay as EOF.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from clusterlink.dataplane.udp_flows import DatagramFlow, Drop, dial_udp
from clusterlink.protocol.datagrams import DatagramReader, frame_datagram

pytestmark = pytest.mark.component


class Recorder(asyncio.Protocol):
    """The relay's end of a flow: what it was given, as datagrams again."""

    def __init__(self) -> None:
        self.reader = DatagramReader()
        self.datagrams: list[bytes] = []
        self.eof = False
        self.lost = asyncio.get_running_loop().create_future()
        self.arrived = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.datagrams += self.reader.feed(data)
        self.arrived.set()

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


@pytest.fixture
def service() -> Iterator[socket.socket]:
    """A UDP socket standing for the exported service (the test answers by hand)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        yield sock


async def open_flow(
    service: socket.socket, drops: list[tuple[Drop, int]], queue: int = 4
) -> tuple[DatagramFlow, Recorder]:
    recorder = Recorder()
    flow = await dial_udp(
        service.getsockname(),
        recorder,
        queue_datagrams=queue,
        on_drop=lambda reason, n: drops.append((reason, n)),
        what="service",
    )
    return flow, recorder


async def test_framed_bytes_leave_as_datagrams_and_answers_come_back_framed(
    service: socket.socket,
) -> None:
    drops: list[tuple[Drop, int]] = []
    flow, recorder = await open_flow(service, drops)
    sent = [b"", b"a", b"x" * 65_507]
    wire = b"".join(frame_datagram(d) for d in sent)

    for cut in (1, 3, 70_000):  # the tunnel's chunks may cut frames anywhere
        flow.write(wire[:cut])
        flow.write(wire[cut:])
    got = [await asyncio.to_thread(service.recvfrom, 70_000) for _ in range(3 * len(sent))]
    flow.resume_reading()
    service.sendto(b"answer", got[0][1])
    async with asyncio.timeout(5):
        await recorder.arrived.wait()
    flow.close()

    assert [data for data, _addr in got] == sent * 3
    assert recorder.datagrams == [b"answer"]
    assert drops == []


async def test_while_paused_the_queue_keeps_the_newest_and_counts_the_oldest(
    service: socket.socket,
) -> None:
    drops: list[tuple[Drop, int]] = []
    flow, recorder = await open_flow(service, drops, queue=4)

    for n in range(6):  # the tunnel is not ready: nothing reaches the relay yet
        flow.datagram_in(f"{n}".encode())
    flow.datagram_in(b"x" * 65_508)
    assert recorder.datagrams == []
    flow.resume_reading()

    assert recorder.datagrams == [b"2", b"3", b"4", b"5"]
    assert drops == [(Drop.QUEUE_FULL, 1), (Drop.QUEUE_FULL, 1), (Drop.TOO_LARGE, 1)]
    flow.close()


async def test_a_quiet_end_is_eof_to_the_relay_then_the_flow_ends_once(
    service: socket.socket,
) -> None:
    drops: list[tuple[Drop, int]] = []
    flow, recorder = await open_flow(service, drops)
    flow.datagram_in(b"waiting")

    flow.finish()
    flow.datagram_in(b"too late")
    flow.write_eof()  # the other side's end followed

    async with asyncio.timeout(5):
        assert await recorder.lost is None
    assert recorder.eof and recorder.datagrams == []
    assert drops == [(Drop.FLOW_ENDED, 1)]
    assert flow.is_closing()

"""A tunnel stream of a multiplexed connection keeps the bytes it holds until they are read.

Two ``MuxSession``s talk over an in-memory wire, so the test controls exactly when the relay
attaches and in which order it replays what arrived during set-up.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clusterlink.protocol import ExportRef
from clusterlink.protocol.mux import StreamRequest
from clusterlink.transport.mux import MuxSession


class _Wire(asyncio.Transport):
    """One end of an in-memory connection: what is written reaches ``peer`` a loop turn later."""

    def __init__(self, peer: asyncio.Protocol) -> None:
        super().__init__()
        self.peer = peer
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        asyncio.get_running_loop().call_soon(self.peer.data_received, bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Reader(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)


async def _turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_reply_held_before_the_relay_reads_survives_the_clients_early_eof() -> None:
    """The client half-closed before the tunnel opened and the service answered at once: the
    relay first passes on the client's EOF (our END_STREAM), then resumes reading. The reply
    and the service's END_STREAM already wait in the stream; both must still be delivered."""
    requests: list[StreamRequest] = []
    server = MuxSession(client_side=False, on_request=lambda _, event: requests.append(event))
    client = MuxSession(client_side=True, peer_name="b")
    client.connection_made(_Wire(server))
    server.connection_made(_Wire(client))
    opening = asyncio.create_task(client.open_stream(ExportRef("default", "web"), {}))
    await _turns()
    served = server.accept(requests[0].stream_id)
    assert served is not None
    stream, verdict = await opening
    assert verdict.is_allowed
    served.write(b"reply")
    served.write_eof()
    await _turns()  # reply and END_STREAM are in; reading is still paused

    reader = _Reader()
    stream.set_protocol(reader)
    stream.write_eof()
    stream.resume_reading()

    assert bytes(reader.data) == b"reply"
    assert reader.eof
    assert reader.lost == [None]  # then a clean end: both directions are done


class _Producer(_Reader):
    """Counts what the stream tells its producer about writing."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses = 0
        self.resumes = 0

    def pause_writing(self) -> None:
        self.pauses += 1

    def resume_writing(self) -> None:
        self.resumes += 1


async def test_a_write_while_the_connection_is_congested_is_held_and_pauses_the_producer() -> None:
    """Whatever window the peer granted: once the connection's own buffer is full (a peer that
    reads nothing), a write -- also to a stream opened after that -- is held and pauses its
    producer, so what waits for the peer is one write per stream, not a window per stream."""
    requests: list[StreamRequest] = []
    server = MuxSession(client_side=False, on_request=lambda _, event: requests.append(event))
    client = MuxSession(client_side=True, peer_name="b")
    client.connection_made(_Wire(server))
    server.connection_made(_Wire(client))
    opening = asyncio.create_task(client.open_stream(ExportRef("default", "web"), {}))
    await _turns()
    server.pause_writing()  # what the TLS transport says when its buffer is over the mark
    served = server.accept(requests[0].stream_id)
    assert served is not None
    producer = _Producer()
    served.set_protocol(producer)

    served.write(b"x" * 100_000)  # within the window the client granted

    assert (producer.pauses, served.get_write_buffer_size()) == (1, 100_000)
    server.resume_writing()
    assert (producer.resumes, served.get_write_buffer_size()) == (1, 0)
    stream, _ = await opening
    reader = _Reader()
    stream.set_protocol(reader)
    stream.resume_reading()
    await _turns()
    assert reader.data == b"x" * 100_000

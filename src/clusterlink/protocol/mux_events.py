"""What a ``MuxConnection`` tells its driver: a small dataclass per thing that happened.

Why apart from ``mux``: these are the vocabulary between the sans-io state machine and
whatever drives it (``transport.mux.MuxSession``, the tests); a reader of the driver needs
them and not the machine, as with h11's events. They carry what happened and nothing else:
no behaviour, no state, no reference back to the connection. A ``StreamData`` holds a slice
of the bytes given to ``MuxConnection.receive_data``, never a copy: those bytes must not
change afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol.events import ConnectRequest, Health, Verdict

__all__ = [
    "ConnectionEnded",
    "MuxEvent",
    "PingReceived",
    "PongReceived",
    "StreamData",
    "StreamEnded",
    "StreamRefused",
    "StreamRequest",
    "StreamReset",
    "StreamVerdict",
    "WindowOpened",
]


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Server side: a valid OPEN; answer it with ``send_verdict``."""

    stream_id: int
    request: ConnectRequest


@dataclass(frozen=True, slots=True)
class StreamRefused:
    """Server side: a request this layer refused itself (already answered); for the log."""

    stream_id: int
    error: RemoteProtocolError


@dataclass(frozen=True, slots=True)
class StreamVerdict:
    """Client side: the answer to our OPEN (a refusal also ends the stream)."""

    stream_id: int
    verdict: Verdict


@dataclass(slots=True)
class StreamData:
    """Tunnel bytes (a slice of what was received); ``consumed`` them once passed on.

    The one event not frozen: one is made per DATA frame received, and a frozen dataclass
    is made through ``object.__setattr__`` per field, which costs more than twice as much
    (a tenth of the Python time of a small message). Nothing changes it after it is made.
    """

    stream_id: int
    data: memoryview

    @property
    def flow_bytes(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The other side half-closed the stream (it sends no more)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The other side reset the stream; it is gone."""

    stream_id: int
    error_code: int


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """The send window grew: streams waiting to send may go on (``None``: all of them)."""

    stream_id: int | None


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The other side will take no new streams (GOAWAY), and why, if it said."""

    error_code: int
    last_stream_id: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class PingReceived:
    """The other side asks for our health: answer with ``send_pong(token, ...)``."""

    token: int


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The answer to our PING ``token``: the other side's health."""

    token: int
    health: Health


MuxEvent = (
    StreamRequest
    | StreamRefused
    | StreamVerdict
    | StreamData
    | StreamEnded
    | StreamReset
    | WindowOpened
    | ConnectionEnded
    | PingReceived
    | PongReceived
)

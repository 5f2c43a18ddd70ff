"""UDP datagrams inside a tunnel: a 2-byte length in front of each, nothing else.

Why a tunnel per flow and not datagram frames: a UDP *flow* (one client address of an Import
and the exported service) is opened exactly as a TCP connection is, with the same request
(a basic-mode CONNECT, a mux OPEN) carrying the protocol, the same two authorizations, the
same load balancing, flow control, limits, records and metrics. Inside it the datagrams
travel as a byte stream, so neither tunnel mode needs a frame type of its own, and a flow
gets the stream's ordering and back-pressure; what UDP does not promise (delivery) is
dropped at the edges, never inside the tunnel.

The rules, in the order a datagram meets them:

1. Each datagram is ``length: u16`` (big-endian) then ``length`` bytes; a length of 0 is an
   empty datagram, which UDP allows and which is carried as such.
2. A datagram holds at most ``MAX_DATAGRAM_BYTES`` (65,507: the largest UDP payload over
   IPv4). The sender never frames a larger one; a receiver that reads a larger length has a
   broken peer and ends the tunnel (``RemoteProtocolError``).
3. Frames follow each other with no padding and may be cut anywhere by the stream's chunks:
   ``DatagramReader`` keeps at most one incomplete frame between calls.
4. The end of the stream ends the flow. Bytes of an incomplete frame at that point are
   discarded (the reader reports how many it held: ``pending_bytes``).

Pure: no sockets, no clocks; the data plane owns the sockets at both ends.
"""

from __future__ import annotations

import struct
from typing import Final

from clusterlink.errors import RemoteProtocolError

__all__ = ["LENGTH_BYTES", "MAX_DATAGRAM_BYTES", "DatagramReader", "frame_datagram"]

MAX_DATAGRAM_BYTES: Final = 65_507
_LENGTH = struct.Struct("!H")
LENGTH_BYTES: Final = _LENGTH.size


def frame_datagram(payload: bytes) -> bytes:
    """One datagram as it travels in the tunnel (rule 1); ``ValueError`` if too large."""
    if len(payload) > MAX_DATAGRAM_BYTES:
        raise ValueError(
            f"a datagram of {len(payload)} bytes is over the limit of {MAX_DATAGRAM_BYTES}"
        )
    return _LENGTH.pack(len(payload)) + payload


class DatagramReader:
    """Cuts the tunnel's byte stream back into datagrams (rules 1 to 3).

    The common case, a chunk holding whole frames, costs one slice per datagram and no
    buffering; only a frame cut by the end of a chunk is kept, until the rest arrives.
    """

    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = bytearray()  # the start of a frame cut by the end of a chunk

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame held for the next chunk."""
        return len(self._partial)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The datagrams completed by ``data``, in order; ``RemoteProtocolError`` for a length
        over the limit (the tunnel is then broken: nothing after it can be trusted)."""
        if self._partial:
            self._partial += data
            view = memoryview(bytes(self._partial))
            self._partial.clear()
        else:
            view = memoryview(data).cast("B")
        found: list[bytes] = []
        pos, size = 0, len(view)
        while size - pos >= LENGTH_BYTES:
            (length,) = _LENGTH.unpack_from(view, pos)
            if length > MAX_DATAGRAM_BYTES:
                raise RemoteProtocolError(
                    f"a datagram of {length} bytes in the tunnel is over the limit of "
                    f"{MAX_DATAGRAM_BYTES}"
                )
            end = pos + LENGTH_BYTES + length
            if end > size:
                break
            found.append(bytes(view[pos + LENGTH_BYTES : end]))
            pos = end
        if pos < size:
            self._partial += view[pos:]
        return found

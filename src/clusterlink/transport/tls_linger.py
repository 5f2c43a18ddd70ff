"""The end of a graceful close: ``Linger`` waits for the peer to take our last bytes.

Why a closed connection lingers instead of just closing the socket: a socket closed with input
it has not read answers with a RST, and on a RST the kernel drops every byte of ours still
queued for the peer. The peer may well be writing when we close: a multiplexed connection's
window updates, a heartbeat, the tail of a stream we no longer care about. Without the
lingering, a slow reader would lose the end of what we sent. So ``TLSLayer.close`` ends our
side (FIN after the buffered bytes) and keeps reading, dropping the input, until the peer
closes as well. Once the peer has taken all our bytes a RST costs nothing (what a kernel
received stays readable), so the wait ends then, or when the bytes stopped moving for
``_LINGER_STALL_S``.

Why apart from ``tls``: when to give up waiting is a policy of its own, with its own clock
and the kernel's send queue, and none of it touches TLS; the layer only starts a ``Linger``,
drops what it reads meanwhile and cancels it when the connection is lost. Nothing here reads
from the socket or sees a byte of the connection: it only watches how much is still unsent.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import termios

__all__ = ["Linger"]

# A closed connection waits for the peer's own close while its last bytes still move towards
# the peer: it closes anyway once the peer has taken them all, or they did not move for
# _LINGER_STALL_S. It looks at growing intervals, from _LINGER_FIRST_CHECK_S (a peer on
# the same host has taken everything within a millisecond) to _LINGER_MAX_CHECK_S.
_LINGER_STALL_S = 5.0
_LINGER_FIRST_CHECK_S = 0.001
_LINGER_MAX_CHECK_S = 0.5


class Linger:
    """Closes ``raw`` once the peer has taken all our bytes, or they stopped moving."""

    __slots__ = ("_check_s", "_loop", "_moved_at", "_raw", "_timer", "_unsent")

    @classmethod
    def start(cls, raw: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> Linger | None:
        """End our side (FIN after the buffered bytes) and start waiting; None if the
        connection is gone already (then ``raw`` is closed)."""
        try:
            raw.write_eof()
        except OSError:  # the connection is gone already (the peer reset it): nothing to keep
            raw.close()
            return None
        return cls(raw, loop)

    def __init__(self, raw: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._raw = raw
        self._loop = loop
        self._unsent = -1  # bytes not yet taken by the peer at the last check
        self._moved_at = loop.time()  # when that number last went down
        self._check_s = _LINGER_FIRST_CHECK_S
        self._timer: asyncio.TimerHandle | None = loop.call_later(self._check_s, self._check)

    def cancel(self) -> None:
        """The connection is lost: stop watching it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        unsent = self._raw.get_write_buffer_size() + _kernel_unsent(self._raw)
        now = self._loop.time()
        if unsent and (self._unsent < 0 or unsent < self._unsent):
            self._unsent, self._moved_at = unsent, now
        if not unsent or now - self._moved_at >= _LINGER_STALL_S:
            self._raw.close()
            return
        self._check_s = min(self._check_s * 2, _LINGER_MAX_CHECK_S)
        self._timer = self._loop.call_later(self._check_s, self._check)


def _kernel_unsent(transport: asyncio.Transport) -> int:
    """Bytes written to the socket that the peer has not acknowledged yet (Linux ``SIOCOUTQ``);
    0 where that cannot be read."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    out = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, out, True)
    except (OSError, ValueError):
        return 0
    return out[0]

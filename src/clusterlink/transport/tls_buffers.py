"""How the bytes of a TLS socket are laid out in buffers: what is joined before a send, and
the buffer a batch of received records is decrypted into.

Why apart from ``tls_socket``: both are pure decisions about buffers, each with its own
reason, and they are tested here without a socket. With OpenSSL on the socket every buffer
handed to a send is at least one TLS record and one system call, and every buffer read into
must be zeroed when new; these two keep both counts down.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["BatchBuffer", "Buffer", "joined"]

Buffer = bytes | bytearray | memoryview


def joined(buffers: Iterable[Buffer], *, record: int, most: int) -> list[Buffer]:
    """Runs of buffers smaller than ``record`` joined into one, up to about ``most`` bytes;
    bigger buffers are sent as they are (a copy would cost more than a send).

    A run shorter than a record that comes before a big buffer (a DATA frame's header before
    its payload) is joined with the big one's first bytes, up to a full record: else that run
    would be a record of its own, a send here and one more read at the other end.
    """
    out: list[Buffer] = []
    run: list[Buffer] = []
    size = 0
    for data in buffers:
        n = len(data)
        if n >= record:
            if run and size < record:
                view = memoryview(bytes(data) if isinstance(data, bytearray) else data)
                take = record - size
                run.append(view[:take])
                out.append(b"".join(run))
                out.append(view[take:])
                run, size = [], 0
                continue
            if run:
                out.append(b"".join(run) if len(run) > 1 else run[0])
                run, size = [], 0
            out.append(data)
            continue
        run.append(data)
        size += n
        if size >= most:
            out.append(b"".join(run))
            run, size = [], 0
    if run:
        out.append(b"".join(run) if len(run) > 1 else run[0])
    return out


class BatchBuffer:
    """One buffer of ``size`` bytes, used again for the next batch once nothing holds a piece
    of it.

    Why: a new buffer is zero-filled (256 KiB per batch of records: a tenth of the CPU of
    decrypting them), but whoever got a batch may keep slices of it (a stream's inbox while
    its reader is paused, a socket's unsent tail), and those must never change under them.
    A bytearray with live views cannot be resized, so growing it by one byte tells exactly
    whether any view is left.
    """

    __slots__ = ("_buffer", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._buffer: bytearray | None = None  # made at the first batch

    def get(self) -> bytearray:
        """A buffer of ``size`` bytes that nobody else holds a view of."""
        buffer = self._buffer
        if buffer is not None:
            try:
                buffer.append(0)
            except BufferError:  # a slice of it is still held: leave it to its holders
                buffer = None
            else:
                del buffer[-1]
        if buffer is None:
            buffer = self._buffer = bytearray(self._size)
        return buffer

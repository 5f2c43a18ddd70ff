"""How the bytes a TLS socket sends are laid out in buffers: what is joined before a send.

Why apart from ``tls_socket``: it is a pure decision about buffers, tested here without a
socket. With OpenSSL on the socket every buffer handed to a send is at least one TLS record
and one system call; joining keeps that count down.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Buffer", "joined"]

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

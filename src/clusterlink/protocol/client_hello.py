"""The ALPN protocols a TLS ClientHello offers, read from its bytes before any TLS is done.

Why: a peer listener serves two kinds of connection on one port, told apart by ALPN, and they
need different TLS plumbing (the basic mode a memory-BIO layer that can half-close, the
multiplexed mode OpenSSL on the socket itself, which cannot). OpenSSL picks the protocol
inside the handshake, too late to choose; the client's offer is in the clear in its first
bytes (TLS 1.3 encrypts only what comes after the ClientHello), so the listener peeks at them.
Anything this does not understand is simply "unknown", and the listener then takes the path
that serves every kind of connection.
"""

from __future__ import annotations

__all__ = ["offered_alpn"]

_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 0x01
_ALPN_EXTENSION = 16


def offered_alpn(data: bytes) -> tuple[str, ...] | None:
    """The protocols offered by the ClientHello that ``data`` starts with (``()``: none);
    None when ``data`` is not one whole ClientHello record (too short, or something else)."""
    if len(data) < 5 or data[0] != _HANDSHAKE_RECORD:
        return None
    end = 5 + int.from_bytes(data[3:5])
    if len(data) < end or end < 9 or data[5] != _CLIENT_HELLO:
        return None
    body = data[9:end]
    try:
        at = 2 + 32  # version, random
        at += 1 + body[at]  # session id
        at += 2 + int.from_bytes(body[at : at + 2])  # cipher suites
        at += 1 + body[at]  # compression methods
        if at == len(body):
            return ()  # no extensions at all
        extensions_end = at + 2 + int.from_bytes(body[at : at + 2])
        at += 2
        while at + 4 <= extensions_end:
            kind = int.from_bytes(body[at : at + 2])
            size = int.from_bytes(body[at + 2 : at + 4])
            at += 4
            if kind == _ALPN_EXTENSION:
                return _names(body[at + 2 : at + size])
            at += size
    except IndexError:
        return None
    return ()


def _names(data: bytes) -> tuple[str, ...] | None:
    """ALPN's list of length-prefixed names."""
    names = []
    at = 0
    while at < len(data):
        size = data[at]
        name = data[at + 1 : at + 1 + size]
        if size == 0 or len(name) != size:
            return None
        names.append(name.decode("ascii", "replace"))
        at += 1 + size
    return tuple(names)

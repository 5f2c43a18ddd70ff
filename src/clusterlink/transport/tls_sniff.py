"""Which ALPN protocols an accepted connection's ClientHello offers, read before TLS starts.

Why: the peer listener's two kinds of connection need different TLS plumbing (see
``transport.tls_socket``), and OpenSSL chooses the protocol only inside the handshake. The
ClientHello is peeked at (``MSG_PEEK``: it stays in the socket for whichever TLS takes the
connection). The event loop's transport of the accepted connection cannot simply be paused
for that (uvloop starts reading right after ``connection_made`` whatever it was told), so the
listener takes the socket over (``take_over``) and hands it back to the loop afterwards if
the memory-BIO layer is to serve it. One look, once the first bytes are there: a gateway
sends its ClientHello in one write; a ClientHello that came in pieces (or anything else) is
"unknown", and the caller takes the path that serves every connection.
"""

from __future__ import annotations

import asyncio
import os
import socket

from clusterlink.protocol.client_hello import offered_alpn
from clusterlink.transport.tls_socket import wait_readable

__all__ = ["peek_alpn", "take_over"]

_PEEK_BYTES = 16 * 1024 + 5  # one TLS record, the most a ClientHello is in practice


def take_over(transport: asyncio.BaseTransport) -> socket.socket | None:
    """The connection's socket, duplicated before ``transport`` is closed (which closes only
    its own descriptor: nothing is sent and nothing was read). None: it has no socket."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        dup = socket.socket(fileno=os.dup(sock.fileno()))
        dup.setblocking(False)
    except OSError:
        return None
    transport.close()
    return dup


async def peek_alpn(sock: socket.socket) -> tuple[str, ...] | None:
    """The protocols the client offers; None if unknown. Nothing is read off the socket;
    bound the wait from outside."""
    await wait_readable(sock)
    try:
        return offered_alpn(sock.recv(_PEEK_BYTES, socket.MSG_PEEK))
    except OSError:
        return None

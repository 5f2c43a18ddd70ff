"""Local TCP services for the gateways to export: plain blocking sockets, a thread each.

A service is a function of one accepted connection. Each kind exists to make one behaviour of
the tunnel observable from the client's end: ``echo`` for byte-identical transfer, ``digest``
for a client's half-close (it can only answer after the client's EOF has crossed the tunnel),
``SendThenListen`` for the service's half-close (it stops sending first and still reads) and
for a reply that backs up while the client is still sending.

Invariants: loopback only; every blocking call has a timeout, so a broken tunnel makes a
handler give up instead of hanging the test run; ``close`` never waits for handlers.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import socket
import socketserver
import threading
from collections.abc import Callable

__all__ = [
    "SendThenListen",
    "TCPService",
    "closed_port",
    "digest",
    "echo",
    "read_to_eof",
]

HANDLER_TIMEOUT_S = 30.0
CHUNK = 64 * 1024

Handler = Callable[[socket.socket], None]


def read_to_eof(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(CHUNK):
        data += chunk
    return bytes(data)


def echo(sock: socket.socket) -> None:
    """Send back every byte; end (FIN) after the client's EOF."""
    while chunk := sock.recv(CHUNK):
        sock.sendall(chunk)


def digest(sock: socket.socket) -> None:
    """Read until the client's EOF, then answer ``<length> <sha256>\\n`` and close."""
    data = read_to_eof(sock)
    sock.sendall(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n".encode())


class SendThenListen:
    """Send ``payload`` at once, shut the write side if ``shut_write``, then read to EOF and
    keep what arrived in ``received``."""

    def __init__(self, payload: bytes, *, shut_write: bool) -> None:
        self.payload = payload
        self.shut_write = shut_write
        self.received: queue.Queue[bytes] = queue.Queue()

    def __call__(self, sock: socket.socket) -> None:
        sock.sendall(self.payload)
        if self.shut_write:
            sock.shutdown(socket.SHUT_WR)
        self.received.put(read_to_eof(sock))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False  # a stuck handler must not hang the test's clean-up
    allow_reuse_address = True

    def __init__(self, serve_connection: Handler) -> None:
        self.serve_connection = serve_connection
        self.connections = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Connection)


class _Connection(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(HANDLER_TIMEOUT_S)
        with self.server.lock:
            self.server.connections += 1
        with contextlib.suppress(OSError):  # a reset tunnel is the test's business, not ours
            self.server.serve_connection(sock)


class TCPService:
    """A service on 127.0.0.1 and a free port, running ``handle`` for every connection."""

    def __init__(self, handle: Handler) -> None:
        self._server = _Server(handle)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def connections(self) -> int:
        """How many connections reached the service (none may, for a refused tunnel)."""
        return self._server.connections

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

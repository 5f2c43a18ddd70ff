"""One kept-alive HTTPS connection to a gateway's admin API, on the standard library alone.

A CLI run makes one or two calls; an HTTP client library would cost more to import than the
whole of such a run (bench/cli_speed.py), and ``http.client`` does what the admin API needs:
JSON bodies, keep-alive, bounded waits. What it lacks is a TLS server name that differs from
the address dialled (the gateway's certificate names the *peer*, while we dial an address such
as 127.0.0.1), which ``AdminConnection.connect`` adds.

Errors are the standard library's (``OSError``, ``ssl.SSLError``, ``TimeoutError``,
``http.client.HTTPException``); ``admin`` turns them into the product's.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
from dataclasses import dataclass

__all__ = ["AdminConnection", "Answer"]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class AdminConnection(http.client.HTTPSConnection):
    """Requests over one TLS connection to ``host:port``, reopened when the server closed it.

    ``server_name`` is sent as SNI and checked against the server's certificate;
    ``connect_timeout_s`` bounds the TCP and TLS set-up, ``timeout_s`` each read and write.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        server_name: str,
        ssl_context: ssl.SSLContext,
        timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout_s, context=ssl_context)
        self._server_name = server_name
        self._tls = ssl_context
        self._connect_timeout_s = connect_timeout_s

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self._connect_timeout_s)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = self._tls.wrap_socket(raw, server_hostname=self._server_name)
        except BaseException:
            raw.close()
            raise
        tls.settimeout(self.timeout)
        self.sock = tls

    def open(self) -> None:
        """Connect now if not connected (or if the server closed the connection while it was
        idle), so that set-up failures can be told apart from failures of a request."""
        if self.sock is not None and _closed_by_server(self.sock):
            self.close()
        if self.sock is None:
            self.connect()

    def call(self, method: str, target: str, body: bytes | None) -> Answer:
        """Send one request (``target`` is the path and query) and read the whole answer."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            self.request(method, target, body=body, headers=headers)
            response = self.getresponse()
            answer = Answer(response.status, response.read())
        except BaseException:
            self.close()  # never reuse a connection in an unknown state
            raise
        if response.will_close:
            self.close()
        return answer


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection was closed by the server: it is readable while
    no request is outstanding (an EOF, or a TLS alert before it)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)

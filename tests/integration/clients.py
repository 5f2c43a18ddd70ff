"""Clients of the gateways, as users and attackers have them: plain TCP and Python ``ssl``.

A TCP exchange reports how the connection *ended* (``eof``, ``reset``, ``timeout``), because
DESIGN §5 makes the difference part of the contract: a refused tunnel must be a reset with no
byte delivered, never a clean end of stream that a client could take for an empty answer.

The TLS client does not verify the server: the tests that use it check what the *server*
accepts from a client certificate, so the client must not give up first. HTTP framing is h11,
the same small library the peer protocol is specified on.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import h11

__all__ = [
    "Exchange",
    "HTTPAnswer",
    "http_over_tls",
    "is_refused",
    "talk",
    "tls_client_context",
]

CHUNK = 64 * 1024
# ENOTCONN: shutdown() of a connection the other side has reset (a FIN would leave it open).
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN}


@dataclass(frozen=True, slots=True)
class Exchange:
    """What a client received and how its connection ended."""

    received: bytes
    end: str  # "eof" | "reset" | "timeout" | "refused"

    def __str__(self) -> str:
        return f"{len(self.received)} bytes received ({self.received[:60]!r}), then {self.end}"


def talk(
    address: tuple[str, int],
    payload: bytes = b"",
    *,
    half_close: bool = True,
    timeout_s: float = 10,
) -> Exchange:
    """Connect, send ``payload`` (from a thread, so a large echo cannot deadlock on full
    buffers), shut the write side if ``half_close``, and read until the connection ends."""
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection(address, timeout=timeout_s)
    except ConnectionRefusedError:
        return Exchange(b"", "refused")
    except ConnectionResetError:  # a quick refusal can reset the connection while it opens
        return Exchange(b"", "reset")
    with sock:
        send_errors: list[OSError] = []
        sender = threading.Thread(
            target=_send, args=(sock, payload, half_close, send_errors), daemon=True
        )
        sender.start()
        received, end = bytearray(), "timeout"
        try:
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(CHUNK)
                if not chunk:
                    end = "eof"
                    break
                received += chunk
        except TimeoutError:
            end = "timeout"
        except OSError as exc:
            end = "reset" if exc.errno in _RESET_ERRNOS else f"error: {exc}"
        sender.join(timeout=max(deadline - time.monotonic(), 0.1))
    # The kernel reports a reset to one call only: if the sender got it, the reader saw "EOF".
    if end == "eof" and any(e.errno in _RESET_ERRNOS for e in send_errors):
        end = "reset"
    return Exchange(bytes(received), end)


def _send(sock: socket.socket, payload: bytes, half_close: bool, errors: list[OSError]) -> None:
    try:
        sock.sendall(payload)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        errors.append(exc)


def is_refused(address: tuple[str, int]) -> bool:
    """Whether nothing listens at ``address`` any more (connect refused)."""
    try:
        with socket.create_connection(address, timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def tls_client_context(cert: Path, key: Path, *, alpn: str | None = None) -> ssl.SSLContext:
    """TLS 1.3 with ``cert``/``key`` as client certificate; the server is not verified."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    if alpn:
        context.set_alpn_protocols([alpn])
    return context


@dataclass(frozen=True, slots=True)
class HTTPAnswer:
    """The server's answer, or why there was none (``status`` is None then)."""

    status: int | None
    body: bytes = b""
    error: str = ""


def http_over_tls(
    address: tuple[str, int],
    context: ssl.SSLContext,
    *,
    method: str,
    target: str,
    headers: tuple[tuple[str, str], ...] = (),
    timeout_s: float = 10,
) -> HTTPAnswer:
    """One request on a fresh TLS connection; a refused handshake is an answer too."""
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(method=method, target=target, headers=[("host", "gateway"), *headers])
    try:
        with (
            socket.create_connection(address, timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname="gateway") as sock,
        ):
            for event in (request, h11.EndOfMessage()):
                sock.sendall(conn.send(event) or b"")
            return _read_answer(conn, sock, is_connect=method == "CONNECT")
    except (OSError, h11.RemoteProtocolError) as exc:  # ssl.SSLError is an OSError
        return HTTPAnswer(None, error=f"{type(exc).__name__}: {exc}")


def _read_answer(conn: h11.Connection, sock: ssl.SSLSocket, *, is_connect: bool) -> HTTPAnswer:
    status, body = None, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(CHUNK))
        elif isinstance(event, h11.Response):
            status = event.status_code
            if is_connect and 200 <= status < 300:
                return HTTPAnswer(status)  # the tunnel is open: no body follows
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if status is None:
                return HTTPAnswer(None, error="connection closed before any answer")
            return HTTPAnswer(status, bytes(body))

"""Callers that misbehave on purpose, and the probes that watch a gateway cope with them.

Everything here is built from the standard library (sockets, ``ssl``, ``struct``) and the
wire format as DESIGN §5 and docs/protocols.md describe it, never from the product's own
encoders: a hostile peer does not use our code, and a test must not pass because both ends
share a bug. Every blocking call has a timeout.

- ``raw``/``tls``: a connection to a peer listener, plain or with a fabric certificate;
- ``ending``: how a connection ended (``eof``, ``reset``, ``open``) and what came before;
- mux frames by hand (``frame``, ``settings``, ``open_frame``) and a reader for the answers;
- ``client_hello``: the first flight of a real TLS client, to send only part of it;
- ``Firehose``: a service that sends as fast as it may and counts what the gateway took;
- ``metric``: one sample of a gateway's Prometheus metrics.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.clients import tls_client_context
from tests.integration.gateways import Gateway, parse_address

__all__ = [
    "BASIC_ALPN",
    "DATA",
    "MUX_ALPN",
    "VERDICT",
    "WINDOW",
    "Ending",
    "Firehose",
    "client_hello",
    "connect_and_wait",
    "ending",
    "frame",
    "metric",
    "open_frame",
    "raw",
    "read_frames",
    "settings",
    "tls",
    "verdict_of",
]

BASIC_ALPN = "clusterlink/1"
MUX_ALPN = "clusterlink-mux/1"
TIMEOUT_S = 10.0
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}

# Mux frame types (docs/protocols.md).
SETTINGS, OPEN, VERDICT, DATA, END, RESET, WINDOW, GOAWAY = range(8)
_HEADER = struct.Struct("!II")


@contextmanager
def raw(address: tuple[str, int]) -> Iterator[socket.socket]:
    with socket.create_connection(address, timeout=TIMEOUT_S) as sock:
        yield sock


@contextmanager
def tls(address: tuple[str, int], cert_dir: Path, alpn: str) -> Iterator[ssl.SSLSocket]:
    """A TLS connection with the certificate in ``cert_dir``, handshake done."""
    context = tls_client_context(cert_dir / "cert.pem", cert_dir / "key.pem", alpn=alpn)
    with (
        socket.create_connection(address, timeout=TIMEOUT_S) as sock,
        context.wrap_socket(sock, server_hostname="gateway") as conn,
    ):
        yield conn


@dataclass(frozen=True, slots=True)
class Ending:
    """What arrived on a connection, how it ended, and after how long."""

    received: bytes
    end: str  # "eof" | "reset" | "open" (still open when we stopped waiting)
    after_s: float


def ending(sock: socket.socket, *, wait_s: float = TIMEOUT_S) -> Ending:
    """Read until the other side ends the connection, or ``wait_s`` passes."""
    started = time.monotonic()
    received = bytearray()
    end = "open"
    try:
        while (left := started + wait_s - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                end = "eof"
                break
            received += chunk
    except TimeoutError:
        end = "open"
    except ssl.SSLError:
        end = "reset"  # a TLS alert or a truncated record: the server ended it
    except OSError as exc:
        end = "reset" if exc.errno in _RESET_ERRNOS else f"error: {exc}"
    return Ending(bytes(received), end, time.monotonic() - started)


def connect_and_wait(address: tuple[str, int], *, wait_s: float = TIMEOUT_S) -> Ending:
    """Connect, send nothing, and see how the connection ends. A reset that comes while the
    connection is still being made counts as a reset (on loopback it can beat ``connect``)."""
    started = time.monotonic()
    try:
        sock = socket.create_connection(address, timeout=TIMEOUT_S)
    except ConnectionResetError:
        return Ending(b"", "reset", time.monotonic() - started)
    with sock:
        return ending(sock, wait_s=wait_s)


def client_hello(alpn: str = BASIC_ALPN) -> bytes:
    """The ClientHello a real TLS 1.3 client sends first (no network involved)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    outgoing = ssl.MemoryBIO()
    conn = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="gateway")
    with suppress(ssl.SSLWantReadError):  # it waits for the server: the hello is out
        conn.do_handshake()
    return outgoing.read()


# -- mux frames ---------------------------------------------------------------------------


def frame(kind: int, stream: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """A frame; ``length`` lies about the payload's size if given."""
    size = len(payload) if length is None else length
    return _HEADER.pack(kind << 24 | size, stream) + payload


def settings(*, window: int, streams: int = 1000) -> bytes:
    return frame(SETTINGS, 0, struct.pack("!HIHI", 1, window, 2, streams))


def open_frame(stream: int, target: str) -> bytes:
    return frame(OPEN, stream, target.encode())


def read_frames(sock: socket.socket, buffer: bytearray) -> Iterator[tuple[int, int, bytes]]:
    """Frames as they arrive: (type, stream, payload); stops at EOF. ``buffer`` keeps the
    bytes of a frame cut by the end of a read for the next call."""
    while True:
        while len(buffer) >= 8:
            word, stream = _HEADER.unpack_from(buffer)
            size = word & 0xFFFFFF
            if len(buffer) < 8 + size:
                break
            payload = bytes(buffer[8 : 8 + size])
            del buffer[: 8 + size]
            yield word >> 24, stream, payload
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk


def verdict_of(payload: bytes) -> tuple[int, str]:
    """(status, reason) of a VERDICT payload."""
    status = struct.unpack("!H", payload[:2])[0]
    reason = json.loads(payload[2:])["reason"] if len(payload) > 2 else ""
    return status, reason


# -- services and metrics -------------------------------------------------------------------


class Firehose:
    """A service that sends to every client as fast as the other end takes it, and counts.

    ``sent`` is what the kernel accepted from us: what the gateway read, plus what the
    socket buffers between us hold. Each connection sends at most ``limit_bytes``.
    """

    CHUNK = 256 * 1024

    def __init__(self, *, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.sent = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self._server.getsockname()[1])

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._socks.append(sock)
            threading.Thread(target=self._send, args=(sock,), daemon=True).start()

    def _send(self, sock: socket.socket) -> None:
        chunk = b"\x5a" * self.CHUNK
        sock.settimeout(0.2)
        total = 0
        while not self._stop.is_set() and total < self.limit_bytes:
            try:
                n = sock.send(chunk)
            except TimeoutError:
                continue
            except OSError:
                return
            total += n
            with self._lock:
                self.sent += n

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        with self._lock:
            for sock in self._socks:
                sock.close()


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    """The value of the sample of ``name`` with exactly ``labels`` (0 if there is none)."""
    host, port = parse_address(gateway.info["metrics"])
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=TIMEOUT_S) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0

"""TLS driven over a plain asyncio transport with ``ssl.MemoryBIO``.

Why not asyncio's own TLS transport: it cannot half-close (``can_write_eof()`` is false), and a
tunnel must carry "the client has finished sending" while the reply still flows. TLS 1.3 can:
``close_notify`` ends one direction only, and OpenSSL keeps reading after sending it and keeps
writing after receiving it. So this layer maps ``write_eof()`` to ``close_notify`` (followed by
a TCP FIN) and a received ``close_notify`` to ``eof_received()``. Measured on loopback it moves
bulk data as fast as uvloop's built-in TLS transport and faster than asyncio's.

Shape: ``TLSLayer`` is the protocol of the raw TCP transport; the application sees a
``TLSTransport`` (``transport.tls_transport``, re-exported here: a real ``asyncio.Transport``
that passes every call on to the layer) and keeps writing plain bytes. Back-pressure
passes straight through: the raw transport's ``pause_writing`` reaches the application
protocol, and the application's ``pause_reading`` stops the raw transport; ciphertext that
already arrived waits, still encrypted, in the incoming BIO.

Invariants:
- The application protocol gets ``connection_made`` only after a successful handshake; a failed
  or timed-out handshake resolves ``handshake_done`` with the error and closes the socket.
- A TCP EOF without a ``close_notify`` is a truncation: the application sees
  ``connection_lost(ConnectionResetError)``, never a clean EOF.
- Nothing here logs or decides policy; callers read the verified peer certificate with
  ``get_extra_info("peercert")``.
- ``close()`` is graceful: close_notify, then FIN, then input is read and dropped until the
  peer closes too (``transport.tls_linger``), so that our last bytes are never lost to a RST.
- A finished connection is freed by reference counting, not left to the cycle collector: the
  layer holds its transport weakly and lets go of the app once the connection is lost. (Left
  to the collector, hundreds of finished tunnels, each with its BIO buffers of up to a few
  hundred KiB, waited for a full collection: gigabytes of churn showed as 150 MB of RSS.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
import weakref
from collections.abc import Callable, Iterable
from typing import Any, cast

from clusterlink.transport.tls_linger import Linger
from clusterlink.transport.tls_transport import LOST_APP, TLSTransport

__all__ = ["TLSLayer", "TLSTransport"]

# Ciphertext up to this size holds at most one full record (16 KiB of plaintext and its
# overhead): it is read in one call as exact-size bytes, without a batch buffer.
_ONE_RECORD_BYTES = 16 * 1024 + 256

# Where the event loop reads ciphertext for every layer (see ``TLSLayer.get_buffer``). One is
# enough: the loop reads into it and calls ``buffer_updated`` at once, which copies the bytes
# into the layer's BIO before anything else can run.
_READ_BUFFER = memoryview(bytearray(256 * 1024))


def _dead_ref() -> None:
    """A weak reference whose object is gone."""


class TLSLayer(asyncio.BufferedProtocol):
    """Protocol of the raw TCP transport; runs TLS and feeds ``app`` plain bytes.

    A buffered protocol, so that the event loop reads straight into a buffer of ours instead
    of into one of its own that it then copies into a new ``bytes`` for every read: the
    ciphertext is copied once, into the incoming BIO, instead of twice.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.Protocol,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        handshake_timeout_s: float = 5.0,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.app = app
        self._transport_ref: Callable[[], TLSTransport | None] = _dead_ref  # see ``transport``
        self.raw: asyncio.Transport = None  # type: ignore[assignment]  # set in connection_made
        self._loop = asyncio.get_running_loop()
        self.handshake_done: asyncio.Future[None] = self._loop.create_future()
        self._handshake_timeout_s = handshake_timeout_s
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._is_handshaken = False
        self.reading_paused = False
        self._eof_sent = False
        self._eof_received = False
        self._peer_fin = False  # TCP EOF received (the BIO is not marked: see eof_received)
        self._is_closing = False
        self._closed_locally = False
        self._lingering = False  # closed by us, waiting for the peer's close (``_linger``)
        self._linger_watch: Linger | None = None  # closes the socket when the wait is over
        self._error: Exception | None = None  # a TLS error that ended the connection
        # Plaintext taken out of OpenSSL before our close_notify (see _send_close_notify),
        # delivered before anything decrypted after it.
        self._held: collections.deque[bytes] = collections.deque()

    @property
    def transport(self) -> TLSTransport:
        """The app's transport. Held weakly, so that layer and transport make no reference
        cycle: whoever uses it holds it, and when nobody does a new one (it is stateless)
        stands in."""
        transport = self._transport_ref()
        if transport is None:
            transport = TLSTransport(self)
            self._transport_ref = weakref.ref(transport)
        return transport

    # -- raw side ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._handshake_timer = self._loop.call_later(
            self._handshake_timeout_s, self._on_handshake_timeout
        )
        self._do_handshake()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ_BUFFER[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._lingering:
            return  # closed by us: read only so that unread input cannot turn into a RST
        self._incoming.write(data)
        if self._is_handshaken:
            if not self.reading_paused:
                self._read_plain()
        else:
            self._do_handshake()

    def eof_received(self) -> bool:
        if self._lingering:
            return False  # the peer closed too: the socket closes once our bytes are out
        if not self._is_handshaken:
            self._fail_handshake(ConnectionResetError("connection closed during TLS handshake"))
            return False
        # Ciphertext may still sit in the BIO (reading paused): the close_notify, if any, is
        # in there and is found once reading resumes. The BIO itself is not marked EOF, so
        # that _send_close_notify can always put unread ciphertext back into it.
        self._peer_fin = True
        if not self.reading_paused:
            self._read_plain()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._is_closing = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self._linger_watch is not None:
            self._linger_watch.cancel()
            self._linger_watch = None
        if not self._is_handshaken:
            self._fail_handshake(exc or ConnectionResetError("connection closed during handshake"))
            return
        exc = exc or self._error
        if exc is None and not self._eof_received and not self._closed_locally:
            exc = ConnectionResetError("peer closed the TLS connection without close_notify")
        app, self.app = self.app, LOST_APP
        app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._is_handshaken:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self._is_handshaken:
            self.app.resume_writing()

    # -- handshake --------------------------------------------------------------------------

    def _do_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush()  # let the peer see our alert
            self._fail_handshake(exc)
            return
        self._is_handshaken = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self._flush()
        if not self.handshake_done.done():
            self.handshake_done.set_result(None)
        self.app.connection_made(self.transport)
        if not self.reading_paused:
            self._read_plain()

    def _on_handshake_timeout(self) -> None:
        self._fail_handshake(
            TimeoutError(f"TLS handshake did not finish within {self._handshake_timeout_s:g}s")
        )

    def _fail_handshake(self, exc: BaseException) -> None:
        if not self.handshake_done.done():
            self.handshake_done.set_exception(exc)
            # The caller may have stopped waiting; don't warn about an unretrieved exception.
            self.handshake_done.exception()
        if self.raw is not None and not self.raw.is_closing():
            self.raw.close()

    # -- application data -------------------------------------------------------------------

    def _read_plain(self) -> None:
        """Decrypt everything that has arrived into one buffer and hand it on in one piece.

        OpenSSL returns one record (16 KiB) per read; delivered one by one, a 256 KiB read
        from the socket became sixteen writes downstream. The records of a batch are
        decrypted side by side into a fresh buffer sized by the ciphertext (an upper bound of
        the plaintext), so joining them costs no copy; the app gets a ``memoryview`` of it,
        which every consumer on our data path takes, and the buffer is never reused.
        """
        incoming, ssl_obj = self._incoming, self._ssl
        ended = ""  # why reading stopped: "", close-notify, broken
        held = self._held
        while not self.reading_paused and not ended:
            if held:
                self.app.data_received(held.popleft())
                continue
            available = incoming.pending + ssl_obj.pending()
            if not available:
                if self._peer_fin and not self._eof_received:
                    ended = "broken"  # a TCP EOF with no close_notify: a truncation
                break
            data, ended = self._decrypt(available)
            if data:
                self.app.data_received(data)  # type: ignore[arg-type]  # any buffer will do
            elif not ended:
                break  # only part of a record so far
        if ended == "close-notify":
            self._on_close_notify()
        elif ended == "broken":
            self.raw.abort()  # ``connection_lost`` reports it as a ConnectionResetError
        self._flush()

    def _decrypt(self, available: int) -> tuple[bytes | memoryview, str]:
        """Decrypt up to ``available`` bytes of plaintext -> (plaintext, why it stopped)."""
        ssl_obj, incoming = self._ssl, self._incoming
        if available <= _ONE_RECORD_BYTES:
            buffer: memoryview | None = None  # small: one read, exact-size bytes
        else:
            buffer = memoryview(bytearray(available))
        filled = 0
        data: bytes | memoryview = b""
        try:
            if buffer is None:
                data = ssl_obj.read(available)
                return data, "" if data else "close-notify"
            while filled < available:
                n = cast(int, ssl_obj.read(available - filled, buffer[filled:]))
                if not n:
                    return buffer[:filled], "close-notify"
                filled += n
                if not incoming.pending and not ssl_obj.pending():
                    break
        except ssl.SSLWantReadError:
            ended = ""  # a partial record: the rest comes with the next read from the socket
        except ssl.SSLZeroReturnError:
            ended = "close-notify"
        except ssl.SSLEOFError:
            ended = "broken"  # a TCP EOF with no close_notify, as OpenSSL 3 says it
        except ssl.SSLError as exc:
            # E.g. the server's alert when it rejects our certificate after a TLS 1.3
            # handshake that looked complete from our side.
            self._error = exc
            ended = "broken"
        else:
            ended = ""
        # What was decrypted before the end is delivered before it.
        return (buffer[:filled] if buffer is not None else data), ended

    def _on_close_notify(self) -> None:
        if self._eof_received:
            return
        self._eof_received = True
        keep_open = self.app.eof_received()
        if self._eof_sent or not keep_open:
            self.close()

    def write_plain(self, data: bytes | bytearray | memoryview) -> None:
        if self._is_closing or self._eof_sent:
            return
        self._ssl.write(data)
        self._flush()

    def write_plain_many(self, buffers: Iterable[bytes | bytearray | memoryview]) -> None:
        if self._is_closing or self._eof_sent:
            return
        write = self._ssl.write
        for data in buffers:
            write(data)
        self._flush()

    def write_eof(self) -> None:
        """Send ``close_notify`` (and a TCP FIN): we will write nothing more, reading goes on."""
        if self._eof_sent or self._is_closing:
            return
        self._eof_sent = True
        self._send_close_notify()
        if self._eof_received:
            self.close()
        elif self.raw.can_write_eof():
            self.raw.write_eof()

    def _send_close_notify(self) -> None:
        """Send our close_notify without touching what the peer still has to say.

        ``unwrap()`` calls ``SSL_shutdown()`` twice, and the second call reads on, looking for
        the peer's close_notify: any application data it meets there makes OpenSSL fail the
        connection for good (APPLICATION_DATA_AFTER_CLOSE_NOTIFY), and the rest of the peer's
        stream is lost. With our reading paused, application data waits in two places: as
        ciphertext in the incoming BIO, and as the plaintext of a record that OpenSSL already
        decrypted but we have not read out (``pending()``: reading paused in the middle of
        a record). Both are taken aside for the shutdown and read afterwards, in order.
        """
        unread = self._incoming.read()
        self._held.extend(self._read_decrypted())
        with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLError):
            self._ssl.unwrap()
        self._incoming.write(unread)
        self._flush()

    def _read_decrypted(self) -> list[bytes]:
        """The plaintext OpenSSL has already decrypted (with the incoming BIO empty, a read
        cannot start a new record)."""
        chunks: list[bytes] = []
        while pending := self._ssl.pending():
            try:
                chunks.append(self._ssl.read(pending))
            except ssl.SSLError:
                break
        return chunks

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self.raw is not None and not self.raw.is_closing():
            self.raw.write(data)

    # -- control ----------------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.reading_paused and not self._lingering:
            self.reading_paused = True
            if self.raw is not None and not self.raw.is_closing():
                self.raw.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            if not self.raw.is_closing():
                self.raw.resume_reading()
            if self._is_handshaken:
                self._read_plain()

    def close(self) -> None:
        if self._is_closing:
            return
        if self._is_handshaken and not self._eof_sent:
            self._eof_sent = True
            self._send_close_notify()
        self._is_closing = self._closed_locally = True
        if self._is_handshaken and not self._peer_fin and not self.raw.is_closing():
            self._linger()
        else:
            self.raw.close()

    def _linger(self) -> None:
        """End our side (FIN after the buffered bytes) and keep reading, dropping the input,
        until the peer closes as well or ``Linger`` ends the wait (why: ``tls_linger``)."""
        self._linger_watch = Linger.start(self.raw, self._loop)
        if self._linger_watch is None:
            return  # the connection is gone already: nothing to keep
        self._lingering = True
        if self.reading_paused:
            self.reading_paused = False
            self.raw.resume_reading()

    def abort(self) -> None:
        self._is_closing = self._closed_locally = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self._is_closing or self.raw is None or self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "ssl_object":
            return self._ssl
        if name == "alpn_protocol":
            return self._ssl.selected_alpn_protocol()
        if name == "sslcontext":
            return self._ssl.context
        return self.raw.get_extra_info(name, default) if self.raw is not None else default

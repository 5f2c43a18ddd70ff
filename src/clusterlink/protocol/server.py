"""The peer listener's side of the protocol: bytes in, requests out, answers as bytes.

Nothing here reads a socket, sleeps or logs. The caller feeds what it received with
``receive_data`` (``b""`` for EOF), asks ``next_event`` for the next request, decides, and
writes what ``send_health`` / ``send_verdict`` return. So every edge case is a unit test
made of byte strings.

Rules, in the order a connection meets them:

1. Any number of ``GET /healthz`` may come first, each answered before the next is read
   (heartbeats reuse one connection).
2. At most one ``CONNECT`` ends the HTTP phase: a ``200`` turns the connection into a raw
   tunnel, any refusal carries ``connection: close`` and ends it. A ``POST /link`` (a peer
   presenting an invitation, ``link``) ends it too: its JSON body, at most
   ``max_link_body_bytes``, is read whole before the request is an event, and its answer, a
   ``200`` with JSON or a refusal, carries ``connection: close``.
3. Bytes that arrived behind the CONNECT head already belong to the tunnel; after the ``200``
   they are in ``trailing_data`` and must be relayed, never dropped.
4. A request the server cannot accept raises ``RemoteProtocolError`` whose ``status`` and ``reason``
   are the refusal to send (``send_error``). No other exception comes from peer bytes.
5. Misuse by the caller (answering twice or out of turn, reading a tunnel as HTTP) raises
   ``LocalProtocolError``: that is our bug, not the peer's.

h11 does the HTTP/1.1 framing; this module keeps it to the three requests we serve and owns
the size limits, because h11 only bounds heads (and never bodies) that arrive incomplete.
"""

from __future__ import annotations

import enum
from http import HTTPStatus
from typing import Final, Literal, TypeAlias

import h11

from clusterlink.errors import LocalProtocolError, RemoteProtocolError, ValidationError
from clusterlink.protocol.attributes import decode_attributes
from clusterlink.protocol.events import (
    CLOSED,
    NEED_DATA,
    ConnectRequest,
    ExportRef,
    Health,
    HealthRequest,
    LinkAnswer,
    LinkRequest,
    Signal,
    Verdict,
)
from clusterlink.protocol.health_body import encode_health
from clusterlink.protocol.link import encode_link_answer, parse_link_request
from clusterlink.protocol.wire import (
    ATTRIBUTES_HEADER,
    HEALTH_PATH,
    JSON_CONTENT_TYPE,
    LINK_PATH,
    MAX_ATTRIBUTE_BYTES,
    MAX_ATTRIBUTE_ENTRIES,
    MAX_HEAD_BYTES,
    MAX_LINK_BODY_BYTES,
    dump_json,
    render,
)

__all__ = ["PeerServerConnection", "ServerEvent"]

ServerEvent: TypeAlias = (
    ConnectRequest | HealthRequest | LinkRequest | Literal[Signal.NEED_DATA, Signal.CLOSED]
)


class _Phase(enum.Enum):
    READING = enum.auto()  # waiting for a request head
    READING_LINK_BODY = enum.auto()  # a POST /link head came; its body is arriving
    ANSWERING_HEALTH = enum.auto()
    ANSWERING_CONNECT = enum.auto()
    ANSWERING_LINK = enum.auto()
    FAILED = enum.auto()  # the peer broke the protocol; only a refusal may follow
    TUNNEL = enum.auto()
    CLOSED = enum.auto()


_HEALTH_REQUEST: Final = HealthRequest()
_ALLOW_BYTES: Final = b"HTTP/1.1 200 OK\r\n\r\n"
_PHRASES: Final = {status.value: status.phrase.encode() for status in HTTPStatus}
_CLOSE: Final = (b"connection", b"close")
_SERVED_METHODS: Final = (b"GET", b"CONNECT", b"POST")


class _LinkBodyFollows:
    """What ``_accept`` says of a ``POST /link`` head: its body is still to be read."""


_LINK_BODY_FOLLOWS: Final = _LinkBodyFollows()
# "METHOD TARGET HTTP/1.1\r\n" + "\r\n", less the method and target.
_REQUEST_LINE_OVERHEAD: Final = 14


class PeerServerConnection:
    """One accepted peer connection, from its first request to tunnel or close."""

    __slots__ = (
        "_body",
        "_h11",
        "_is_head_request",
        "_max_attribute_bytes",
        "_max_attribute_entries",
        "_max_head_bytes",
        "_max_link_body_bytes",
        "_phase",
    )

    def __init__(
        self,
        *,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_attribute_entries: int = MAX_ATTRIBUTE_ENTRIES,
        max_attribute_bytes: int = MAX_ATTRIBUTE_BYTES,
        max_link_body_bytes: int = MAX_LINK_BODY_BYTES,
    ) -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self._phase = _Phase.READING
        self._is_head_request = False
        self._max_head_bytes = max_head_bytes
        self._max_attribute_entries = max_attribute_entries
        self._max_attribute_bytes = max_attribute_bytes
        self._max_link_body_bytes = max_link_body_bytes
        self._body = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed its side."""
        self._h11.receive_data(data)

    def next_event(self) -> ServerEvent:
        """The next request, ``NEED_DATA``, or ``CLOSED`` once the HTTP phase is over.

        While a request waits for its answer this is ``NEED_DATA``: later bytes stay buffered
        (after a CONNECT they become ``trailing_data``). ``CLOSED`` comes when the peer closed
        cleanly between requests, or after a refusal was sent. Raises ``RemoteProtocolError`` for a
        request that must be refused.
        """
        if self._phase is _Phase.CLOSED:
            return CLOSED
        if self._phase in (
            _Phase.ANSWERING_HEALTH,
            _Phase.ANSWERING_CONNECT,
            _Phase.ANSWERING_LINK,
        ):
            return NEED_DATA  # like h11's PAUSED: bytes wait in the buffer until we answer
        if self._phase not in (_Phase.READING, _Phase.READING_LINK_BODY):
            raise LocalProtocolError(
                f"next_event() while {self._phase.name}: nothing to read as HTTP"
            )
        try:
            if self._phase is _Phase.READING_LINK_BODY:
                return self._read_link_body()
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return NEED_DATA
            if type(event) is h11.ConnectionClosed:
                self._phase = _Phase.CLOSED
                return CLOSED
            assert type(event) is h11.Request  # the only other event h11 yields from IDLE
            request = self._accept(event)
            if isinstance(request, _LinkBodyFollows):
                self._phase = _Phase.READING_LINK_BODY
                return self._read_link_body()
            # Other bodies were refused in _accept, so the end of the message is here.
            self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            self._phase = _Phase.FAILED
            hint = exc.error_status_hint
            raise RemoteProtocolError(
                f"malformed HTTP request: {exc}",
                status=hint if 400 <= hint < 500 else 400,
                reason="too-large" if hint == 431 else "malformed",
            ) from None
        except RemoteProtocolError:
            self._phase = _Phase.FAILED
            raise
        if type(request) is ConnectRequest:
            self._phase = _Phase.ANSWERING_CONNECT
        else:
            self._phase = _Phase.ANSWERING_HEALTH
        return request

    def _read_link_body(self) -> LinkRequest | Literal[Signal.NEED_DATA]:
        """The rest of a ``POST /link``: its body, whole, as a ``LinkRequest``."""
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return NEED_DATA
            if type(event) is h11.Data:
                self._body += event.data
                if len(self._body) > self._max_link_body_bytes:
                    raise _too_large_body(self._max_link_body_bytes)
                continue
            assert type(event) is h11.EndOfMessage  # h11 raises for a body cut short
            request = parse_link_request(bytes(self._body))
            self._body.clear()
            self._phase = _Phase.ANSWERING_LINK
            return request

    def send_health(self, health: Health) -> bytes:
        """The answer to a ``HealthRequest``; the connection then awaits the next request."""
        if self._phase is not _Phase.ANSWERING_HEALTH:
            raise LocalProtocolError(
                f"send_health() while {self._phase.name}: no heartbeat to answer"
            )
        body = encode_health(health)
        data = render(
            self._h11,
            (
                h11.Response(
                    status_code=200,
                    headers=[JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body))],
                    reason=b"OK",
                ),
                h11.Data(data=body),
                h11.EndOfMessage(),
            ),
        )
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._phase = _Phase.READING
        else:  # the peer asked for connection: close
            self._phase = _Phase.CLOSED
        return data

    def send_link_answer(self, answer: LinkAnswer) -> bytes:
        """The answer to an accepted ``LinkRequest``; the connection ends after it."""
        if self._phase is not _Phase.ANSWERING_LINK:
            raise LocalProtocolError(
                f"send_link_answer() while {self._phase.name}: no link request to answer"
            )
        self._phase = _Phase.CLOSED
        body = encode_link_answer(answer)
        head = h11.Response(
            status_code=200,
            headers=[JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), _CLOSE],
            reason=b"OK",
        )
        return render(self._h11, (head, h11.Data(data=body), h11.EndOfMessage()))

    def send_verdict(self, verdict: Verdict) -> bytes:
        """The answer to a ``ConnectRequest``, or a refusal at any time in the HTTP phase.

        A ``200`` (only for a pending CONNECT) switches to tunnel mode; a refusal ends the
        connection, and the caller closes it once the bytes are written.
        """
        if verdict.is_allowed:
            if self._phase is not _Phase.ANSWERING_CONNECT:
                raise LocalProtocolError(
                    f"cannot allow while {self._phase.name}: no CONNECT pending"
                )
            self._phase = _Phase.TUNNEL
            # Always these exact bytes: h11 would add "connection: close" if the request
            # asked for it, which means nothing for a tunnel. h11 is not used after this.
            return _ALLOW_BYTES
        if self._phase in (_Phase.TUNNEL, _Phase.CLOSED):
            raise LocalProtocolError(
                f"cannot refuse while {self._phase.name}: the HTTP phase is over"
            )
        self._phase = _Phase.CLOSED
        body = dump_json({"reason": verdict.reason, "message": verdict.message})
        head = h11.Response(
            status_code=verdict.status,
            headers=[JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), _CLOSE],
            reason=_PHRASES.get(verdict.status, b""),
        )
        if self._is_head_request:  # HTTP forbids a body in the answer to HEAD
            return render(self._h11, (head, h11.EndOfMessage()))
        return render(self._h11, (head, h11.Data(data=body), h11.EndOfMessage()))

    def send_error(self, error: RemoteProtocolError) -> bytes:
        """The refusal for a ``RemoteProtocolError`` raised by ``next_event``."""
        return self.send_verdict(Verdict.from_error(error))

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the CONNECT head: the first bytes of the tunnel.

        Bytes fed after the ``200`` are added too, until the relay takes over. If the caller
        fed EOF before that, the EOF stands behind these bytes: pass it on after them.
        """
        if self._phase is not _Phase.TUNNEL:
            raise LocalProtocolError(f"trailing_data while {self._phase.name}: no tunnel yet")
        return self._h11.trailing_data[0]

    def _accept(self, request: h11.Request) -> ConnectRequest | HealthRequest | _LinkBodyFollows:
        """Our request for ``request`` (``_LINK_BODY_FOLLOWS`` for a ``POST /link``, whose
        body is still to come), or the ``RemoteProtocolError`` that refuses it."""
        self._is_head_request = request.method == b"HEAD"
        size = _REQUEST_LINE_OVERHEAD + len(request.method) + len(request.target)
        attributes: bytes | None = None
        has_body = False
        body_bytes = 0
        for name, value in request.headers:
            size += len(name) + len(value) + 4  # ": " and "\r\n"
            if name == ATTRIBUTES_HEADER:
                if attributes is not None:
                    raise _malformed(f"more than one {ATTRIBUTES_HEADER.decode()} header")
                attributes = value
            elif name == b"content-length":
                body_bytes = int(value)  # h11 has checked it is at most 20 digits
                has_body = body_bytes > 0
            elif name == b"transfer-encoding":
                has_body = True
        if size > self._max_head_bytes:
            raise RemoteProtocolError(
                f"request head is about {size} bytes, over the limit of {self._max_head_bytes}",
                status=431,
                reason="too-large",
            )
        if request.http_version != b"1.1":
            raise _malformed(f"HTTP/{request.http_version.decode()} request; use HTTP/1.1")
        if request.method not in _SERVED_METHODS or (
            request.method == b"POST" and request.target != LINK_PATH
        ):
            raise RemoteProtocolError(
                f"method {request.method.decode()!r} is not served for "
                f"{request.target.decode(errors='replace')!r}; use GET /healthz, "
                "CONNECT <namespace>/<name> or POST /link",
                status=405,
                reason="unknown-method",
            )
        if request.method == b"POST":
            if not has_body:
                raise _malformed("POST /link without a body; send the invitation as JSON")
            if body_bytes > self._max_link_body_bytes:
                raise _too_large_body(self._max_link_body_bytes)
            return _LINK_BODY_FOLLOWS
        if has_body:
            raise _malformed(f"{request.method.decode()} request with a body; send none")
        if request.method == b"GET":
            if request.target != HEALTH_PATH:
                raise RemoteProtocolError(
                    f"path {request.target.decode()!r} is not served; use /healthz",
                    status=404,
                    reason="unknown-path",
                )
            return _HEALTH_REQUEST
        try:
            export = ExportRef.parse(request.target.decode("ascii"))
        except ValidationError as exc:
            raise _malformed(str(exc)) from None
        if attributes is None:
            return ConnectRequest(export, {})
        return ConnectRequest(
            export,
            decode_attributes(
                attributes,
                max_entries=self._max_attribute_entries,
                max_bytes=self._max_attribute_bytes,
            ),
        )


def _malformed(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, status=400, reason="malformed")


def _too_large_body(limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"POST /link body is over the limit of {limit} bytes", status=413, reason="too-large"
    )

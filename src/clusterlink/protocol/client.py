"""The dialing gateway's side of the protocol: requests as bytes, answers as events.

Used by heartbeats and by tunnel set-up over the same kind of connection: any number of
health requests, then at most one CONNECT or one ``POST /link`` (presenting an invitation;
the connection ends with its answer). Like the server side it only translates; the
caller writes the bytes, feeds back what it reads (``b""`` for EOF) and acts on the events.

A refusal is an event (``Verdict``), not an exception: it is the peer following the
protocol. ``RemoteProtocolError`` (status 502, reason ``malformed``) means the peer's answer was
not one this protocol allows; the connection is then useless. Asking for a second request
before the first is answered, or after the tunnel opened, raises ``LocalProtocolError``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, Literal, TypeAlias

import h11

from clusterlink.errors import LocalProtocolError, RemoteProtocolError
from clusterlink.protocol.attributes import encode_attributes
from clusterlink.protocol.events import (
    NEED_DATA,
    ExportRef,
    Health,
    LinkAnswer,
    LinkRequest,
    Signal,
    Verdict,
)
from clusterlink.protocol.health_body import decode_health
from clusterlink.protocol.link import encode_link_request, parse_link_answer
from clusterlink.protocol.wire import (
    ATTRIBUTES_HEADER,
    HEALTH_PATH,
    JSON_CONTENT_TYPE,
    LINK_PATH,
    MAX_BODY_BYTES,
    load_json_object,
    render,
)

__all__ = ["ClientEvent", "PeerClientConnection"]

ClientEvent: TypeAlias = Health | LinkAnswer | Verdict | Literal[Signal.NEED_DATA]


class _Phase(enum.Enum):
    IDLE = enum.auto()  # may send a request
    AWAITING_HEALTH = enum.auto()
    AWAITING_VERDICT = enum.auto()
    AWAITING_LINK = enum.auto()
    TUNNEL = enum.auto()
    CLOSED = enum.auto()  # refused, closed by the peer, or broken


_END: Final = h11.EndOfMessage()


class PeerClientConnection:
    """One connection to the peer gateway ``peer_name`` (sent as ``host``)."""

    __slots__ = (
        "_body",
        "_h11",
        "_health_request",
        "_host",
        "_max_body_bytes",
        "_phase",
        "_status",
    )

    def __init__(self, peer_name: str, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._host = (b"host", peer_name.encode("ascii"))
        self._health_request = h11.Request(method=b"GET", target=HEALTH_PATH, headers=[self._host])
        self._max_body_bytes = max_body_bytes
        self._phase = _Phase.IDLE
        self._status = 0
        self._body = bytearray()

    @property
    def is_reusable(self) -> bool:
        """Whether another request may be sent (the last answer kept the connection open)."""
        return self._phase is _Phase.IDLE

    def health_request(self) -> bytes:
        """The bytes of ``GET /healthz``; the answer is a ``Health`` (or a refusal)."""
        self._begin(_Phase.AWAITING_HEALTH)
        return render(self._h11, (self._health_request, _END))

    def connect_request(self, export: ExportRef, attributes: Mapping[str, str]) -> bytes:
        """The bytes of ``CONNECT <export>``; the answer is a ``Verdict``."""
        self._begin(_Phase.AWAITING_VERDICT)
        headers = [self._host]
        if attributes:
            headers.append((ATTRIBUTES_HEADER, encode_attributes(attributes).encode("ascii")))
        request = h11.Request(
            method=b"CONNECT", target=str(export).encode("ascii"), headers=headers
        )
        return render(self._h11, (request, _END))

    def link_request(self, request: LinkRequest) -> bytes:
        """The bytes of ``POST /link``; the answer is a ``LinkAnswer`` (or a refusal)."""
        self._begin(_Phase.AWAITING_LINK)
        body = encode_link_request(request)
        head = h11.Request(
            method=b"POST",
            target=LINK_PATH,
            headers=[self._host, JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body))],
        )
        return render(self._h11, (head, h11.Data(data=body), _END))

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed its side."""
        self._h11.receive_data(data)

    def next_event(self) -> ClientEvent:
        """The answer to the pending request, or ``NEED_DATA``."""
        if self._phase not in (
            _Phase.AWAITING_HEALTH,
            _Phase.AWAITING_VERDICT,
            _Phase.AWAITING_LINK,
        ):
            raise LocalProtocolError(f"next_event() while {self._phase.name}: no request pending")
        try:
            return self._read()
        except RemoteProtocolError:
            self._phase = _Phase.CLOSED
            raise
        except h11.RemoteProtocolError as exc:
            self._phase = _Phase.CLOSED
            if self._h11.trailing_data[1]:
                raise _bad_answer("the peer closed the connection before answering") from None
            raise _bad_answer(f"malformed HTTP answer: {exc}") from None

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the ``200`` (so far): the first bytes of the tunnel."""
        if self._phase is not _Phase.TUNNEL:
            raise LocalProtocolError(f"trailing_data while {self._phase.name}: no tunnel yet")
        return self._h11.trailing_data[0]

    def _begin(self, phase: _Phase) -> None:
        if self._phase is not _Phase.IDLE:
            raise LocalProtocolError(f"cannot send a request while {self._phase.name}")
        self._phase = phase

    def _read(self) -> ClientEvent:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return NEED_DATA
            if type(event) is h11.Response:
                self._status = event.status_code
                if self._status == 200 and self._phase is _Phase.AWAITING_VERDICT:
                    self._phase = _Phase.TUNNEL  # h11 has switched: no body follows
                    return Verdict.allow()
                if self._status != 200 and not 400 <= self._status <= 599:
                    raise _bad_answer(f"unexpected status {self._status}")
            elif type(event) is h11.Data:
                self._body += event.data
                if len(self._body) > self._max_body_bytes:
                    raise _bad_answer(f"answer body over the limit of {self._max_body_bytes} bytes")
            elif type(event) is h11.EndOfMessage:
                return self._finish()
            else:  # a 1xx informational answer: our peers never send one
                raise _bad_answer(f"unexpected {type(event).__name__}")

    def _finish(self) -> Health | LinkAnswer | Verdict:
        body = bytes(self._body)
        self._body.clear()
        if self._status == 200 and self._phase is _Phase.AWAITING_LINK:
            self._phase = _Phase.CLOSED  # the server closes after a link answer
            try:
                return parse_link_answer(body)
            except ValueError as exc:
                raise _bad_answer(f"link answer {exc}") from None
        if self._status == 200:  # a health answer (a CONNECT's 200 never gets here)
            answer: Health | Verdict = _parse_health(body)
            if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                self._h11.start_next_cycle()
                self._phase = _Phase.IDLE
            else:
                self._phase = _Phase.CLOSED
            return answer
        self._phase = _Phase.CLOSED
        return _parse_refusal(self._status, body)


def _parse_health(body: bytes) -> Health:
    try:
        return decode_health(body)
    except ValueError as exc:
        raise _bad_answer(f"health answer {exc}") from None


def _parse_refusal(status: int, body: bytes) -> Verdict:
    try:
        fields = load_json_object(body)
        reason, message = fields.get("reason"), fields.get("message")
        if not isinstance(reason, str) or not isinstance(message, str):
            raise ValueError("lacks a string reason or message")
    except ValueError as exc:
        raise _bad_answer(f"{status} answer {exc}") from None
    return Verdict(status, reason, message)


def _bad_answer(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, status=502, reason="malformed")

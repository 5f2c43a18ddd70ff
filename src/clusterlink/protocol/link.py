"""The bodies of ``POST /link`` and of its answer: JSON both ways, checked strictly.

A peer that holds an invitation presents it with one request on a basic-mode connection::

    POST /link HTTP/1.1
    host: <inviting peer>
    content-type: application/json
    content-length: N

    {"token": "<the whole token>", "name": "<caller>", "labels": {"k": "v"},
     "gateways": [{"host": "203.0.113.7", "port": 8443}]}

and the answer is ``200`` with ``{"name": "<answering peer>", "labels": {...}, "outcome":
"created" | "configured" | "unchanged"}``, or a refusal (``{reason, message}``), and the
connection closes either way. The request carries the whole token, so the answering side
checks it with its own code (its digest, its secret, its id) rather than trusting the caller's
account of it.

Here only the shape is checked (types, sizes, that text is text); what the values mean (a
valid token, a peer name, hosts a Peer may have) is the control plane's to judge. A body that
breaks the shape is a ``RemoteProtocolError`` (``400 malformed``) on the serving side and a
``ValueError`` on the dialing side, which ``client`` turns into a protocol error.
"""

from __future__ import annotations

from typing import Final

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol.events import LinkAnswer, LinkRequest
from clusterlink.protocol.wire import (
    MAX_ATTRIBUTE_ENTRIES,
    as_string_map,
    dump_json,
    is_text,
    load_json_object,
)

__all__ = [
    "LINK_OUTCOMES",
    "MAX_LINK_GATEWAYS",
    "MAX_LINK_TOKEN_CHARS",
    "encode_link_answer",
    "encode_link_request",
    "parse_link_answer",
    "parse_link_request",
]

LINK_OUTCOMES: Final = ("created", "configured", "unchanged")
MAX_LINK_GATEWAYS: Final = 16
MAX_LINK_TOKEN_CHARS: Final = 4096
_REQUEST_FIELDS: Final = ("gateways", "labels", "name", "token")
_ANSWER_FIELDS: Final = ("labels", "name", "outcome")


def encode_link_request(request: LinkRequest) -> bytes:
    return dump_json(
        {
            "token": request.token,
            "name": request.name,
            "labels": dict(request.labels),
            "gateways": [{"host": host, "port": port} for host, port in request.gateways],
        }
    )


def parse_link_request(body: bytes) -> LinkRequest:
    """The request in ``body``; ``RemoteProtocolError`` (400) naming what is wrong."""
    try:
        fields = load_json_object(body)
        _exactly(fields, _REQUEST_FIELDS)
        token = _text(fields["token"], "token")
        if len(token) > MAX_LINK_TOKEN_CHARS:
            raise ValueError(f"has a token over {MAX_LINK_TOKEN_CHARS} characters")
        gateways = fields["gateways"]
        if not isinstance(gateways, list) or not 1 <= len(gateways) <= MAX_LINK_GATEWAYS:
            raise ValueError(f"must list 1 to {MAX_LINK_GATEWAYS} gateways")
        return LinkRequest(
            token=token,
            name=_text(fields["name"], "name"),
            labels=_labels(fields["labels"]),
            gateways=tuple(_gateway(gateway) for gateway in gateways),
        )
    except ValueError as exc:
        raise RemoteProtocolError(
            f"POST /link body {exc}", status=400, reason="malformed"
        ) from None


def encode_link_answer(answer: LinkAnswer) -> bytes:
    return dump_json(
        {"name": answer.name, "labels": dict(answer.labels), "outcome": answer.outcome}
    )


def parse_link_answer(body: bytes) -> LinkAnswer:
    """The answer in ``body``; ``ValueError`` naming what is wrong."""
    fields = load_json_object(body)
    _exactly(fields, _ANSWER_FIELDS)
    outcome = _text(fields["outcome"], "outcome")
    if outcome not in LINK_OUTCOMES:
        raise ValueError(f"has an outcome {outcome!r} that is none of {', '.join(LINK_OUTCOMES)}")
    return LinkAnswer(_text(fields["name"], "name"), _labels(fields["labels"]), outcome)


def _exactly(fields: dict[str, object], names: tuple[str, ...]) -> None:
    if sorted(fields) != sorted(names):
        raise ValueError(f"must have exactly the fields {', '.join(names)}")


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or not is_text(value):
        raise ValueError(f"has a {name} that is not a non-empty string")
    return value


def _labels(value: object) -> dict[str, str]:
    try:
        labels = as_string_map(value)
    except ValueError as exc:
        raise ValueError(f"has labels that are not text to text: the labels {exc}") from None
    if len(labels) > MAX_ATTRIBUTE_ENTRIES:
        raise ValueError(f"has {len(labels)} labels, over the limit of {MAX_ATTRIBUTE_ENTRIES}")
    return labels


def _gateway(value: object) -> tuple[str, int]:
    if not isinstance(value, dict) or sorted(value) != ["host", "port"]:
        raise ValueError('has a gateway that is not {"host": ..., "port": ...}')
    host, port = value["host"], value["port"]
    if type(port) is not int or not 1 <= port <= 65535:
        raise ValueError(f"has a gateway port {port!r} that is not 1..65535")
    return _text(host, "gateway host"), port

"""The body of a heartbeat's answer, the same in both modes: JSON ``{name, labels, version}``
and, when the answering gateway says, ``peered`` and ``dialsIn``.

Apart from the modes' state machines so that a basic-mode answer (``GET /healthz``) and a
multiplexed one (a PONG frame) cannot drift apart: both encode and decode here.
"""

from __future__ import annotations

from clusterlink.protocol.events import Health
from clusterlink.protocol.wire import as_string_map, dump_json, load_json_object

__all__ = ["decode_health", "encode_health"]


def encode_health(health: Health) -> bytes:
    fields: dict[str, object] = {
        "name": health.name,
        "labels": dict(health.labels),
        "version": health.version,
    }
    if health.peered is not None:
        fields["peered"] = health.peered
    if health.dials_in is not None:
        fields["dialsIn"] = health.dials_in
    return dump_json(fields)


def decode_health(body: bytes) -> Health:
    """The answer in ``body``; ``ValueError`` saying what is wrong with it otherwise."""
    fields = load_json_object(body)
    name, labels, version = fields.get("name"), fields.get("labels"), fields.get("version")
    if not (isinstance(name, str) and isinstance(labels, dict) and isinstance(version, str)):
        raise ValueError("lacks a string name, a labels object or a string version")
    flags: dict[str, bool | None] = {}
    for field in ("peered", "dialsIn"):
        value = fields.get(field)
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"has a {field} field that is not true or false")
        flags[field] = value
    return Health(name, as_string_map(labels), version, flags["peered"], flags["dialsIn"])

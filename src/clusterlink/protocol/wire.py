"""What both ends of the peer protocol share: names, limits and JSON bodies.

Every constant here is part of the wire contract (DESIGN.md §5): changing one changes what
other gateways must send or accept. The helpers keep both ends strict in the same way, so a
body the server writes is exactly what the client reads back. Nothing here keeps state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

import h11

ALPN_PROTOCOL: Final = "clusterlink/1"
"""Basic mode: one tunnel per TLS connection, HTTP/1.1 framing until the ``200``."""

HEALTH_PATH: Final = b"/healthz"
LINK_PATH: Final = b"/link"
"""``POST``: a peer presents an invitation (see ``link``)."""
ATTRIBUTES_HEADER: Final = b"clusterlink-client-attributes"

MAX_HEAD_BYTES: Final = 16 * 1024
"""Request line plus headers; larger heads are answered with ``431``."""
MAX_ATTRIBUTE_ENTRIES: Final = 64
MAX_ATTRIBUTE_BYTES: Final = 8 * 1024
"""Length of the encoded attributes header value."""
MAX_BODY_BYTES: Final = 64 * 1024
"""Largest answer body (health, link or refusal) a client buffers."""
MAX_LINK_BODY_BYTES: Final = 16 * 1024
"""Largest ``POST /link`` body; larger ones are answered with ``413``."""

JSON_CONTENT_TYPE: Final = (b"content-type", b"application/json")


def dump_json(value: object) -> bytes:
    """Compact, ASCII-only JSON: it can never fail to encode, whatever the strings hold."""
    return json.dumps(value, separators=(",", ":")).encode("ascii")


def load_json_object(raw: bytes) -> dict[str, object]:
    """Parse ``raw`` as a JSON object; raise ``ValueError`` naming what is wrong."""
    try:
        value = json.loads(raw)
    except RecursionError:
        # The C decoder recurses per nesting level; a few KiB of "[[[[" exhaust the stack.
        raise ValueError("is nested too deeply") from None
    except ValueError:
        # Also covers invalid UTF-8 and integers too long to convert.
        raise ValueError("is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError("is not a JSON object")
    return value


def as_string_map(value: object) -> dict[str, str]:
    """Check that ``value`` maps text to text; raise ``ValueError`` naming the first offender."""
    if not isinstance(value, dict):
        raise ValueError("is not a JSON object")
    for key, item in value.items():
        if not isinstance(item, str):
            raise ValueError(f"has a non-string value for {key!r}")
        if not (is_text(key) and is_text(item)):
            raise ValueError(f"has an entry {key!r} that is not valid Unicode text")
    return value


def is_text(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (no lone surrogates)."""
    # JSON escapes can smuggle in lone surrogates, which break every later encode (logs, store).
    # ``isascii`` is a flag check, so the common case costs nothing.
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def render(connection: h11.Connection, events: Iterable[h11.Event]) -> bytes:
    """The bytes h11 writes for ``events``, in order."""
    return b"".join(connection.send(event) or b"" for event in events)

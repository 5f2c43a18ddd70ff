"""The ``clusterlink-client-attributes`` header: source attributes carried by a CONNECT.

The source gateway describes its client (``client.clusterlink.net/...``, its own peer labels)
so that the target's ingress policy can decide. The value is base64url, unpadded, of a compact
JSON object of string to string: header-safe, and still readable with ``base64 -d``.

The decoder is the first thing an untrusted peer's bytes reach, so it checks the size before
any work, accepts exactly one alphabet, and bounds the number of entries. The caller's peer
name is never read from here: it comes from the verified certificate.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from clusterlink.errors import RemoteProtocolError
from clusterlink.protocol.wire import (
    ATTRIBUTES_HEADER,
    MAX_ATTRIBUTE_BYTES,
    MAX_ATTRIBUTE_ENTRIES,
    as_string_map,
    dump_json,
    load_json_object,
)

__all__ = ["decode_attributes", "encode_attributes"]

_BASE64URL = re.compile(rb"[A-Za-z0-9_-]*")


def encode_attributes(attributes: Mapping[str, str]) -> str:
    """The header value for ``attributes``."""
    return base64.urlsafe_b64encode(dump_json(dict(attributes))).rstrip(b"=").decode("ascii")


def decode_attributes(
    encoded: str | bytes,
    *,
    max_entries: int = MAX_ATTRIBUTE_ENTRIES,
    max_bytes: int = MAX_ATTRIBUTE_BYTES,
) -> dict[str, str]:
    """The attributes in a header value; ``RemoteProtocolError`` (400, ``malformed``) if invalid."""
    try:
        return _decode(encoded, max_entries=max_entries, max_bytes=max_bytes)
    except ValueError as exc:
        raise RemoteProtocolError(
            f"invalid {ATTRIBUTES_HEADER.decode()} header: it {exc}", status=400, reason="malformed"
        ) from None


def _decode(encoded: str | bytes, *, max_entries: int, max_bytes: int) -> dict[str, str]:
    if len(encoded) > max_bytes:
        raise ValueError(f"is {len(encoded)} bytes, over the limit of {max_bytes}")
    # A non-ASCII character becomes "?", which the alphabet check below refuses.
    raw = encoded if isinstance(encoded, bytes) else encoded.encode("ascii", "replace")
    if not _BASE64URL.fullmatch(raw):
        raise ValueError("is not unpadded base64url")
    try:
        decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except binascii.Error:
        raise ValueError("is not unpadded base64url (wrong length)") from None
    try:
        attributes = as_string_map(load_json_object(decoded))
    except ValueError as exc:
        raise ValueError(f"decodes to a payload that {exc}") from None
    if len(attributes) > max_entries:
        raise ValueError(f"has {len(attributes)} entries, over the limit of {max_entries}")
    return attributes

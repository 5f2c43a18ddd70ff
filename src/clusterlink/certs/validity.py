"""Validity periods said the same way everywhere: at load, on reload and in a handshake.

A certificate outside its validity period is refused in three places: our own files when a
gateway starts or reloads them, a peer's certificate during a handshake, and a CA of the trust
bundle (which then simply stops being trusted). Each refusal tells the operator the same three
facts, in the same words, so that a log line can be acted on without ``openssl x509``:
which certificate (its owner and serial), its validity period, and the time now::

    certificate of peer b (serial 4F1A...) expired at 2026-05-01 12:00:00 UTC
    (valid from 2024-05-01 11:55:00 UTC; now 2026-05-09 08:00:01 UTC)

Serials are written as ``getpeercert()`` writes them (upper-case hex, whole bytes), so the
serial in a log line can be compared with ``openssl x509 -serial`` and with our own listings.

Pure functions only: the caller passes ``now``, so tests need no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from clusterlink.certs.identity import admin_peer_of, peer_name_of

__all__ = [
    "describe_cert",
    "describe_peercert",
    "format_utc",
    "serial_hex",
    "validity_problem",
]


def format_utc(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def serial_hex(serial: int) -> str:
    """``4F1A...``: upper-case hex padded to whole bytes, as ``getpeercert()`` writes it."""
    digits = f"{serial:X}"
    return "0" * (len(digits) % 2) + digits


def validity_problem(
    what: str, not_before: datetime, not_after: datetime, now: datetime
) -> str | None:
    """None while ``now`` is inside the period; else a sentence about ``what``."""
    if now < not_before:
        return (
            f"{what} is not valid before {format_utc(not_before)} (valid from "
            f"{format_utc(not_before)} until {format_utc(not_after)}; now {format_utc(now)}): "
            "check the clocks"
        )
    if now > not_after:
        return (
            f"{what} expired at {format_utc(not_after)} "
            f"(valid from {format_utc(not_before)}; now {format_utc(now)})"
        )
    return None


def describe_cert(cert: x509.Certificate, owner: str) -> str:
    """``certificate of <owner> (serial ...)``."""
    return f"certificate of {owner} (serial {serial_hex(cert.serial_number)})"


def describe_peercert(peercert: Mapping[str, Any]) -> str:
    """The same for a verified certificate in ``getpeercert()`` form, its owner read from it."""
    peer, admin = peer_name_of(peercert), admin_peer_of(peercert)
    if peer is not None:
        owner = f"peer {peer}"
    elif admin is not None:
        owner = f"the administrator of peer {admin}"
    else:
        names = [v for rdn in peercert.get("subject", ()) for k, v in rdn if k == "commonName"]
        owner = repr(names[0]) if names else "an unnamed holder"
    return f"certificate of {owner} (serial {peercert.get('serialNumber', '?')})"

"""Invitation tokens and the rules that accept them: pure functions of the token, the stored
record and the clock (no gateway, no socket, no store)."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusterlink.controlplane.invitations import (
    TOKEN_PREFIX,
    Invitation,
    advertised,
    check_fabric,
    check_presented,
    decode_token,
    encode_token,
    new_invitation,
    record_of,
)
from clusterlink.errors import BadRequest, LinkRefused
from clusterlink.ids import PeerName
from clusterlink.store.invitations import InvitationRecord

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CA = "SHA256:" + "a1" * 32
OTHER_CA = "SHA256:" + "b2" * 32


def issue(*, ttl_s: int = 900, uses: int = 1) -> tuple[Invitation, str, InvitationRecord]:
    invitation = new_invitation(
        peer=PeerName("site-a"),
        gateways=(("127.0.0.1", 9443), ("site-a.example", 443)),
        fabric_ca=CA,
        invited=PeerName("site-b"),
        ttl_s=ttl_s,
        uses=uses,
        now=NOW,
    )
    token = encode_token(invitation)
    return invitation, token, record_of(invitation, token, now=NOW)


def fields_of(token: str) -> dict[str, Any]:
    payload = token.removeprefix(TOKEN_PREFIX)
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def token_of(fields: dict[str, Any]) -> str:
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def refusal(
    token: str, record: InvitationRecord, *, caller: str = "site-b", at: datetime = NOW
) -> LinkRefused:
    with pytest.raises(LinkRefused) as caught:
        check_presented(token, decode_token(token), record, caller=PeerName(caller), now=at)
    assert "\n" not in str(caught.value)
    return caught.value


def test_a_token_decodes_to_what_was_issued() -> None:
    invitation, token, _ = issue()

    assert token.startswith(TOKEN_PREFIX)
    assert decode_token(token) == invitation
    assert decode_token(f"  {token}\n") == invitation  # as read from a file


def test_a_token_holds_its_fields_and_no_key() -> None:
    invitation, token, _ = issue(uses=3)

    assert fields_of(token) == {
        "v": 1,
        "id": invitation.id,
        "peer": "site-a",
        "gateways": ["127.0.0.1:9443", "site-a.example:443"],
        "fabricCA": CA,
        "invites": "site-b",
        "secret": invitation.secret,
        "expires": "2026-11-25T12:15:00Z",
        "uses": 3,
    }
    assert (
        "PRIVATE KEY"
        not in base64.urlsafe_b64decode(token.removeprefix(TOKEN_PREFIX) + "==").decode()
    )


def test_two_invitations_have_different_ids_and_secrets() -> None:
    first, _, _ = issue()
    second, _, _ = issue()

    assert first.id != second.id
    assert first.secret != second.secret
    assert len(base64.urlsafe_b64decode(first.secret + "=")) == 32


def test_the_record_keeps_digests_never_the_secret_or_the_token() -> None:
    invitation, token, record = issue()

    kept = " ".join(str(value) for value in dataclasses.asdict(record).values())
    assert invitation.secret not in kept
    assert token.removeprefix(TOKEN_PREFIX) not in kept
    assert (record.used, record.uses, record.invited) == (0, 1, "site-b")
    assert record.expires_at == NOW + timedelta(minutes=15)


def test_the_token_as_issued_is_accepted_by_the_invited_peer_until_it_expires() -> None:
    _, token, record = issue()

    check_presented(token, decode_token(token), record, caller=PeerName("site-b"), now=NOW)
    at_the_end = NOW + timedelta(seconds=899)
    check_presented(token, decode_token(token), record, caller=PeerName("site-b"), now=at_the_end)


def test_an_expired_invitation_is_refused_by_the_record_not_by_the_token() -> None:
    _, token, record = issue(ttl_s=60)

    error = refusal(token, record, at=NOW + timedelta(seconds=60))

    assert (error.reason, error.status) == ("expired", 410)
    assert str(error) == (
        f"invitation {record.id} expired at 2026-11-25 12:01:00 UTC (now 2026-11-25 12:01:00 "
        "UTC); ask for a new one: `clusterlink invite --name site-b` at site-a"
    )


def test_a_used_up_invitation_is_refused() -> None:
    _, token, record = issue(uses=2)
    used = dataclasses.replace(record, used=2)

    error = refusal(token, used)

    assert (error.reason, error.status) == ("used", 410)
    assert "has been used already (2 of 2 link(s))" in str(error)


def test_an_invitation_for_another_peer_is_refused() -> None:
    _, token, record = issue()

    error = refusal(token, record, caller="site-c")

    assert (error.reason, error.status) == ("wrong-peer", 403)
    assert str(error) == (
        f"invitation {record.id} invites peer site-b, but the caller's certificate names peer "
        "site-c; link from site-b's gateway, or ask for an invitation for site-c"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"uses": 1000},
        {"expires": "2030-01-01T00:00:00Z"},
        {"invites": "site-c"},
        {"gateways": ["10.0.0.1:443"]},
        {"fabricCA": OTHER_CA},
        {"secret": "x" * 43},
    ],
    ids=lambda change: next(iter(change)),
)
def test_any_change_to_the_token_is_tampering(change: dict[str, object]) -> None:
    _, token, record = issue()
    changed = token_of({**fields_of(token), **change})

    error = refusal(changed, record, caller=str(change.get("invites", "site-b")))

    assert (error.reason, error.status) == ("tampered", 403)
    assert str(error).startswith(f"the token is not the one issued for invitation {record.id} ")


def test_tampering_is_seen_before_expiry_and_uses() -> None:
    """A token made to look fresh says "tampered", not "expired": the record decides."""
    _, token, record = issue(ttl_s=1)
    longer = token_of({**fields_of(token), "expires": "2030-01-01T00:00:00Z"})

    assert refusal(longer, record, at=NOW + timedelta(hours=1)).reason == "tampered"


def test_a_token_of_another_fabric_is_refused_before_anything_is_dialled() -> None:
    invitation, _, _ = issue()

    check_fabric(invitation, trusted=frozenset({CA, OTHER_CA}), own=OTHER_CA)
    with pytest.raises(LinkRefused) as caught:
        check_fabric(invitation, trusted=frozenset({OTHER_CA}), own=OTHER_CA)

    assert caught.value.reason == "other-fabric"
    assert str(caught.value) == (
        "this token is for another fabric (CA SHA256:a1a1a1a1a1a1a1a1), this peer belongs to "
        "fabric CA SHA256:b2b2b2b2b2b2b2b2"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it does not start with 'cl-invite-v1.'"),
        ("hello", "it does not start with"),
        (TOKEN_PREFIX + "%%%", "its body is not base64url"),
        (TOKEN_PREFIX + "W10", "its body is not an object of exactly"),  # []
        (TOKEN_PREFIX + "x" * 5000, "over 4096"),
        (TOKEN_PREFIX + base64.urlsafe_b64encode(b"[" * 2000).decode(), "nested"),
    ],
    ids=["empty", "no prefix", "not base64", "not an object", "too long", "nested"],
)
def test_what_is_no_token_is_refused_as_malformed(text: str, problem: str) -> None:
    with pytest.raises(LinkRefused) as caught:
        decode_token(text)

    assert (caught.value.reason, caught.value.status) == ("malformed", 400)
    assert str(caught.value).startswith("this is not a ClusterLink invitation token (")
    if problem != "nested":
        assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"v": 2}, "it is version 2"),
        ({"peer": "Site-A"}, "peer name 'Site-A'"),
        ({"gateways": []}, "gateways must list 1 to 16"),
        ({"gateways": ["h:0"]}, "the port must be 1..65535"),
        ({"gateways": [443]}, "gateways must be HOST:PORT strings"),
        ({"uses": 0}, "uses must be 1 to 1000"),
        ({"uses": True}, "uses must be 1 to 1000"),
        ({"expires": "2026-11-25T12:00:00"}, "expires has no time zone"),
        ({"fabricCA": "SHA256:abc"}, "fabricCA is not SHA256: and 64 hex digits"),
        ({"secret": ""}, "secret is not a non-empty ASCII string"),
    ],
    ids=lambda value: str(value)[:30],
)
def test_a_token_with_a_bad_field_says_which(change: dict[str, object], problem: str) -> None:
    _, token, _ = issue()

    with pytest.raises(LinkRefused, match="this is not a ClusterLink invitation token") as caught:
        decode_token(token_of({**fields_of(token), **change}))
    assert problem in str(caught.value)


def test_the_advertised_address_is_the_bound_one_unless_given() -> None:
    assert advertised("127.0.0.1:9443", ()) == (("127.0.0.1", 9443),)
    assert advertised("[::1]:9443", ()) == (("::1", 9443),)
    assert advertised("0.0.0.0:8443", (("a.example", 443),)) == (("a.example", 443),)
    with pytest.raises(BadRequest, match=r"listens on 0\.0\.0\.0:8443, every address .* --address"):
        advertised("0.0.0.0:8443", ())


@pytest.mark.parametrize("secret", ["sécret-not-to-log", 12345678901234567890])
def test_a_refusal_never_shows_the_secret_it_was_given(secret: object) -> None:
    _, token, _ = issue()

    with pytest.raises(LinkRefused) as caught:
        decode_token(token_of({**fields_of(token), "secret": secret}))
    assert "secret is not a non-empty ASCII string" in str(caught.value)
    assert str(secret)[2:] not in str(caught.value)

"""Peer and fabric names: what a certificate accepts, and that a rejection explains the rule."""

import pytest

from clusterlink.certs import validate_fabric_name, validate_peer_cert_name
from clusterlink.errors import ValidationError

LABEL_63 = "a" * 63


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "peer-1",
        "1peer",
        "site.eu-west.example",
        LABEL_63,
        ".".join([LABEL_63] * 3 + ["a" * 61]),  # exactly 253 characters
        "1.2.3.example",
    ],
)
def test_valid_peer_names_are_accepted(name: str) -> None:
    assert validate_peer_cert_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("Peer", "upper case"),
        ("-peer", "leading '-'"),
        ("peer-", "trailing '-'"),
        ("a..b", "empty label"),
        (".a", "empty first label"),
        ("a.", "trailing dot"),
        ("peer_1", "underscore"),
        ("a/b", "slash"),
        ("..", "path traversal"),
        ("a b", "space"),
        ("peer\n", "trailing newline"),
        ("é", "non-ASCII"),
        ("a" * 64, "label of 64"),
        (".".join([LABEL_63] * 3 + ["a" * 62]), "254 characters"),
    ],
)
def test_invalid_peer_names_are_rejected_with_the_rule(name: str, why: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_peer_cert_name(name)
    assert repr(name) in str(info.value), why
    assert "DNS name made of dot-separated labels" in str(info.value)
    assert "63 characters each, 253 in all" in str(info.value)


def test_peer_name_that_looks_like_an_ipv4_address_is_rejected() -> None:
    with pytest.raises(ValidationError, match="IPv4 address"):
        validate_peer_cert_name("10.0.0.1")


@pytest.mark.parametrize("name", ["default_fabric", "F", "prod-eu.2", "_x", "-x", "a" * 64])
def test_valid_fabric_names_are_accepted(name: str) -> None:
    assert validate_fabric_name(name) == name


@pytest.mark.parametrize(
    "name", ["", ".hidden", ".", "..", "a/b", "a b", "a" * 65, "ça", "x\n", "a\\b"]
)
def test_invalid_fabric_names_are_rejected_with_the_rule(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_fabric_name(name)
    assert repr(name) in str(info.value)
    assert "not starting with '.'" in str(info.value)

"""The protocol's values: attribute encoding, export references and verdicts."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterlink.errors import RemoteProtocolError, ValidationError
from clusterlink.protocol import ExportRef, Verdict, decode_attributes, encode_attributes


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"client.clusterlink.net/ip": "10.0.0.7", "peer.clusterlink.net/name": "a"},
        {"peer.clusterlink.net/labels.zone": "zürich ☃", "empty": ""},
        {'quotes"and\\slashes': "line\nbreak"},
    ],
)
def test_attributes_survive_a_round_trip(attributes: dict[str, str]) -> None:
    encoded = encode_attributes(attributes)

    assert decode_attributes(encoded) == attributes
    assert decode_attributes(encoded.encode()) == attributes


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=20))
def test_any_text_map_survives_a_round_trip(attributes: dict[str, str]) -> None:
    assert decode_attributes(encode_attributes(attributes)) == attributes


def test_encoding_is_unpadded_base64url_of_compact_json() -> None:
    encoded = encode_attributes({"a": "b?>"})

    assert encoded == _b64(b'{"a":"b?>"}')
    assert "=" not in encoded
    assert encode_attributes({}) == "e30"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("e30=", "not unpadded base64url"),
        ("e3+9", "not unpadded base64url"),
        ("e3/9", "not unpadded base64url"),
        ("e30 ", "not unpadded base64url"),
        ("é30", "not unpadded base64url"),
        ("e30e3", "wrong length"),
        ("", "not valid JSON"),
        (_b64(b"not json"), "not valid JSON"),
        (_b64(b"\xff\xfe\x00"), "not valid JSON"),
        (_b64(b"9" * 5000), "not valid JSON"),
        (_b64(b"[" * 5000), "nested too deeply"),
        (_b64(b'["a"]'), "not a JSON object"),
        (_b64(b'"a"'), "not a JSON object"),
        (_b64(b'{"a":1}'), "non-string value for 'a'"),
        (_b64(b'{"a":null}'), "non-string value for 'a'"),
        (_b64(b'{"a":{"b":"c"}}'), "non-string value for 'a'"),
        (_b64(b'{"a":"\\ud800"}'), "not valid Unicode text"),
        (_b64(b'{"\\udfff":"a"}'), "not valid Unicode text"),
        (encode_attributes({str(i): "" for i in range(65)}), "65 entries, over the limit of 64"),
        ("A" * 8193, "8193 bytes, over the limit of 8192"),
    ],
)
def test_invalid_attribute_headers_are_refused_with_the_problem_named(
    value: str, problem: str
) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        decode_attributes(value)

    assert (caught.value.status, caught.value.reason) == (400, "malformed")
    assert str(caught.value).startswith("invalid clusterlink-client-attributes header: it ")
    assert problem in str(caught.value)


def test_attribute_limits_are_configurable() -> None:
    encoded = encode_attributes({"a": "1", "b": "2"})

    assert decode_attributes(encoded, max_entries=2) == {"a": "1", "b": "2"}
    with pytest.raises(RemoteProtocolError, match="over the limit of 1"):
        decode_attributes(encoded, max_entries=1)
    with pytest.raises(RemoteProtocolError, match=r"over the limit of 8$"):
        decode_attributes(encoded, max_bytes=8)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("default/db", ExportRef("default", "db")),
        ("a/b", ExportRef("a", "b")),
        ("team-1/db.v2-east", ExportRef("team-1", "db.v2-east")),
        (f"{'n' * 63}/{'.'.join(['x' * 63] * 3)}.{'y' * 61}", None),
    ],
)
def test_export_references_parse_and_print_back(text: str, ref: ExportRef | None) -> None:
    parsed = ExportRef.parse(text)

    assert ref is None or parsed == ref
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "db",
        "/db",
        "default/",
        "Default/db",
        "default/DB",
        "default/db/extra",
        "-ns/db",
        "ns-/db",
        "ns/db-",
        "ns/.db",
        "ns/db..x",
        "n.s/db",
        "ns/d_b",
        "ns/db ",
        "ns/dé",
        f"{'n' * 64}/db",
        f"ns/{'.'.join(['x' * 63] * 4)}",
    ],
)
def test_invalid_export_references_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="export"):
        ExportRef.parse(text)


@pytest.mark.parametrize(
    ("verdict", "status", "reason"),
    [
        (Verdict.allow(), 200, "allowed"),
        (Verdict.malformed("m"), 400, "malformed"),
        (Verdict.denied("m"), 403, "denied"),
        (Verdict.not_found("m"), 404, "not-found"),
        (Verdict.unreachable("m"), 502, "unreachable"),
        (Verdict.overloaded("m"), 503, "overloaded"),
    ],
)
def test_verdict_constructors_carry_status_and_reason(
    verdict: Verdict, status: int, reason: str
) -> None:
    assert (verdict.status, verdict.reason) == (status, reason)
    assert verdict.is_allowed is (status == 200)


def test_a_protocol_error_becomes_the_refusal_it_describes() -> None:
    error = RemoteProtocolError("head too big", status=431, reason="too-large")

    assert Verdict.from_error(error) == Verdict(431, "too-large", "head too big")


@pytest.mark.parametrize("status", [100, 201, 204, 302, 399, 600])
def test_a_verdict_is_either_allow_or_a_refusal(status: int) -> None:
    with pytest.raises(ValueError, match=f"status {status}"):
        Verdict(status, "odd", "")

"""Admin request input: which part of a request is refused, with which status and field path.

Pure values in, typed values or errors out (the same cases over HTTP, with the whole answer,
are in tests/integration/test_admin_api_errors.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusterlink.api import ResourceKey
from clusterlink.controlplane.admin_input import (
    parse_close_tunnels,
    parse_documents_body,
    parse_key,
    parse_kind,
    parse_namespace,
)
from clusterlink.errors import BadRequest, NotFoundError, ProtocolError, ValidationError
from tests.unit._resources import document

EXPORT = document("Export", "db", {"host": "10.0.0.1", "port": 5432}, namespace="prod")


def body(*documents: Any) -> bytes:
    return json.dumps({"documents": list(documents)}).encode()


def test_a_valid_body_gives_its_resources_in_order() -> None:
    peer = document("Peer", "b", {"gateways": [{"host": "b.example", "port": 443}]})

    resources = parse_documents_body(body(EXPORT, peer))

    assert [(r.kind, r.metadata.name) for r in resources] == [("Export", "db"), ("Peer", "b")]


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b"{", None, "request body is not JSON: "),
        (b"\xff\xfe\xfd", None, "request body is not "),
        (b"[" * 50_000, None, "nested too deeply"),
        (b"null", None, "must be a JSON object"),
        (b'{"documents": "x"}', "documents", "got a string"),
        (b'{"items": []}', "items", "unknown field 'items'"),
        (b'{"document": []}', "document", "it takes only 'documents'"),
    ],
)
def test_a_malformed_body_is_a_bad_request_naming_the_part(
    raw: bytes, field: str | None, words: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_documents_body(raw)

    assert not isinstance(caught.value, ProtocolError)  # nothing to do with the peer protocol
    assert caught.value.field == field
    assert words in str(caught.value)


def test_an_invalid_document_names_its_path_in_the_body_once() -> None:
    bad = document("Export", "db", {"host": "h", "port": 70000}, namespace="prod")

    with pytest.raises(ValidationError) as caught:
        parse_documents_body(body(EXPORT | {"metadata": {"name": "ok"}}, bad))

    assert caught.value.field == "documents[1].spec.port"
    assert str(caught.value) == (
        "documents[1].spec.port (Export prod/db): must be at most 65535 (got 70000)"
    )


def test_a_document_that_names_nothing_is_refused_at_its_index() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_documents_body(body(EXPORT, "Export"))

    assert caught.value.field == "documents[1]"
    assert str(caught.value).startswith("documents[1]: expected a mapping")


def test_the_same_resource_twice_is_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_documents_body(body(EXPORT, EXPORT))

    assert caught.value.field == "documents[1].metadata.name"
    assert "export prod/db appears twice in one request (also documents[0])" in str(caught.value)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("documents[0].metadata.annotations.note", {"note": "\udfff"}),
        ("documents[0].metadata.annotations", {"\ud800": "key"}),
    ],
)
def test_a_lone_surrogate_is_refused_where_it_is(where: str, value: dict[str, str]) -> None:
    """It would pass validation and then fail the store's UTF-8 encoding (a 500)."""
    doc = document("Export", "db", {"host": "h", "port": 1})
    doc["metadata"]["annotations"] = value

    with pytest.raises(ValidationError) as caught:
        parse_documents_body(body(doc))

    assert caught.value.field == where


def test_the_surrogate_check_walks_bodies_as_deep_as_json_allows() -> None:
    deep: Any = "x"
    for _ in range(900):
        deep = [deep]

    with pytest.raises(ValidationError) as caught:  # refused by the model, not a RecursionError
        parse_documents_body(body({**EXPORT, "spec": {"host": deep, "port": 1}}))

    assert caught.value.field == "documents[0].spec.host"


@pytest.mark.parametrize(
    ("kind", "name", "namespace", "expected"),
    [
        ("exports", "db", None, ResourceKey("Export", "default", "db")),
        ("exports", "db", "prod", ResourceKey("Export", "prod", "db")),
        ("Export", "db", "prod", ResourceKey("Export", "prod", "db")),
        ("peers", "b.example", "prod", ResourceKey("Peer", "", "b.example")),
        ("policy", "p", None, ResourceKey("AccessPolicy", "default", "p")),
    ],
)
def test_a_path_names_one_resource(
    kind: str, name: str, namespace: str | None, expected: ResourceKey
) -> None:
    assert parse_key(kind, name, namespace) == expected


@pytest.mark.parametrize(
    ("kind", "name", "namespace", "field"),
    [
        ("exports", "DB", None, "name"),
        ("exports", "a/b", None, "name"),
        ("peers", "x" * 64, None, "name"),
        ("exports", "db", "Prod", "namespace"),
        ("exports", "db", "", "namespace"),
        ("peers", "b", "a.b", "namespace"),
    ],
)
def test_a_name_or_namespace_no_resource_can_have_is_a_bad_request(
    kind: str, name: str, namespace: str | None, field: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_key(kind, name, namespace)

    assert caught.value.field == field


def test_an_unknown_kind_is_not_found_listing_the_kinds() -> None:
    with pytest.raises(NotFoundError, match="KIND is one of peers, exports, imports"):
        parse_kind("widgets")


def test_a_namespace_filter_is_optional_but_never_empty() -> None:
    assert parse_namespace(None) is None
    assert parse_namespace("prod") == "prod"
    with pytest.raises(BadRequest, match="must not be empty"):
        parse_namespace("")


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("true", True), ("false", False)])
def test_close_tunnels_is_true_or_false(value: str | None, expected: bool) -> None:
    assert parse_close_tunnels(value) is expected


@pytest.mark.parametrize("value", ["", "yes", "1", "True", "ture"])
def test_close_tunnels_refuses_anything_else(value: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_close_tunnels(value)

    assert caught.value.field == "closeTunnels"


@pytest.mark.parametrize("port", [True, "80"], ids=["boolean", "string"])
def test_a_port_must_be_a_json_integer(port: object) -> None:
    export = document("Export", "db", {"host": "h", "port": port})

    with pytest.raises(ValidationError):
        parse_documents_body(body(export))

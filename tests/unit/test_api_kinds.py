"""The kind registry: spellings users may type, scope, URL plurals, keys and schemas."""

from typing import get_args

import pytest

from clusterlink.api import (
    KINDS,
    AccessPolicy,
    Export,
    Import,
    KindName,
    Peer,
    PrivilegedAccessPolicy,
    ResourceKey,
    is_namespaced,
    json_schema,
    key_of,
    parse_documents,
    plural,
    resolve_kind,
)
from clusterlink.errors import ValidationError


def test_every_kind_name_has_a_registry_entry():
    assert list(KINDS) == list(get_args(KindName))


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("peer", Peer),
        ("Peers", Peer),
        ("PEER", Peer),
        ("export", Export),
        ("exports", Export),
        ("Import", Import),
        ("imports", Import),
        ("accesspolicy", AccessPolicy),
        ("AccessPolicies", AccessPolicy),
        ("policy", AccessPolicy),
        ("policies", AccessPolicy),
        ("PrivilegedAccessPolicy", PrivilegedAccessPolicy),
        ("privilegedaccesspolicies", PrivilegedAccessPolicy),
        ("privilegedpolicy", PrivilegedAccessPolicy),
        ("privilegedpolicies", PrivilegedAccessPolicy),
    ],
)
def test_resolve_kind_accepts_singular_plural_and_any_case(text, model):
    assert resolve_kind(text) is model


def test_unknown_kind_lists_the_accepted_ones():
    with pytest.raises(ValidationError) as caught:
        resolve_kind("service")
    assert caught.value.field == "kind"
    assert "'service'" in str(caught.value)
    for name in KINDS:
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "namespaced", "url"),
    [
        ("peer", False, "peers"),
        ("export", True, "exports"),
        ("import", True, "imports"),
        ("policy", True, "accesspolicies"),
        (PrivilegedAccessPolicy, False, "privilegedaccesspolicies"),
    ],
)
def test_scope_and_plural_per_kind(kind, namespaced, url):
    assert is_namespaced(kind) is namespaced
    assert plural(kind) == url


def test_key_of_uses_an_empty_namespace_for_cluster_scoped_kinds():
    peer, export = parse_documents(
        """
apiVersion: clusterlink.net/v1alpha1
kind: Peer
metadata: {name: b, namespace: ignored}
spec: {gateways: [{host: b.example, port: 8443}]}
---
apiVersion: clusterlink.net/v1alpha1
kind: Export
metadata: {name: db, namespace: prod}
spec: {host: 10.0.0.5, port: 5432}
"""
    )
    assert key_of(peer) == ResourceKey("Peer", "", "b")
    assert key_of(export) == ResourceKey("Export", "prod", "db")
    assert str(key_of(peer)) == "peer b"
    assert str(key_of(export)) == "export prod/db"


def test_key_from_user_input_normalises_kind_and_namespace():
    assert ResourceKey.of("peers", "b", "prod") == ResourceKey("Peer", "", "b")
    assert ResourceKey.of("import", "x") == ResourceKey("Import", "default", "x")
    assert ResourceKey.of("policies", "p", "prod") == ResourceKey("AccessPolicy", "prod", "p")


def test_key_of_a_namespaced_kind_needs_a_namespace():
    with pytest.raises(ValidationError, match="needs a namespace"):
        ResourceKey.of("import", "x", "")


@pytest.mark.parametrize(
    ("kind", "namespace"), [("import", "default"), ("Peer", "default"), ("Import", "")]
)
def test_non_canonical_keys_are_a_programming_error(kind, namespace):
    with pytest.raises(ValueError):
        ResourceKey(kind, namespace, "x")


def test_keys_sort_by_kind_namespace_name():
    keys = [ResourceKey("Import", "b", "a"), ResourceKey("Export", "z", "z")]
    keys += [ResourceKey("Import", "a", "z")]
    assert sorted(keys) == [keys[1], keys[2], keys[0]]


def test_json_schema_is_the_camel_case_wire_form():
    schema = json_schema("import")
    assert schema["properties"]["kind"]["const"] == "Import"
    assert set(schema["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    spec = schema["$defs"]["ImportSpec"]
    assert spec["properties"]["lbScheme"]["enum"] == ["round-robin", "random", "static"]
    assert spec["additionalProperties"] is False
    policy = json_schema(AccessPolicy)["$defs"]["AccessPolicySpec"]
    assert {"action", "from", "to"} <= set(policy["properties"])
    meta = json_schema("peer")["$defs"]["PeerMeta"]
    assert "namespace" not in meta["properties"]
    assert meta["properties"]["name"]["maxLength"] == 253

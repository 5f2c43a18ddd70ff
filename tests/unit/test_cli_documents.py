"""The documents `create peer|export|import|policy` build from flags are valid resources."""

from typing import Any

import pytest

from clusterlink.api import resource_from_dict, to_dict
from clusterlink.cli.documents import (
    export_document,
    import_document,
    parse_gateway,
    parse_labels,
    parse_source,
    peer_document,
    policy_document,
)

MATCH_ALL: list[dict[str, Any]] = [{"workloadSelector": {}}]


def test_peer_document_is_cluster_scoped_with_its_gateways_in_order() -> None:
    gateways = [parse_gateway("10.0.0.2:8443"), parse_gateway("[fd00::2]:9443")]

    doc = peer_document(name="b", gateways=gateways)

    assert doc["metadata"] == {"name": "b"}
    assert doc["spec"] == {
        "gateways": [{"host": "10.0.0.2", "port": 8443}, {"host": "fd00::2", "port": 9443}]
    }
    resource_from_dict(doc)


@pytest.mark.parametrize("text", ["10.0.0.2", "10.0.0.2:0", "10.0.0.2:http", ":8443"])
def test_a_gateway_address_needs_a_host_and_a_port_from_1(text: str) -> None:
    with pytest.raises(ValueError, match=r"--gateway|port"):
        parse_gateway(text)


def test_a_peer_that_dials_in_needs_no_gateway() -> None:
    doc = peer_document(name="nat", gateways=[], dials_in=True)

    assert doc["spec"] == {"gateways": [], "dialsIn": True}
    resource_from_dict(doc)


def test_export_document_is_valid() -> None:
    doc = export_document(name="echo", namespace="team", host="127.0.0.1", port=7000)

    resource = resource_from_dict(doc)
    assert to_dict(resource)["metadata"]["namespace"] == "team"


def test_a_bare_source_means_the_export_named_like_the_import_in_its_namespace() -> None:
    assert parse_source("b", namespace="team", name="echo") == {
        "peer": "b",
        "exportName": "echo",
        "exportNamespace": "team",
    }


def test_an_explicit_source_names_namespace_and_export() -> None:
    assert parse_source("b:prod/db", namespace="team", name="echo") == {
        "peer": "b",
        "exportName": "db",
        "exportNamespace": "prod",
    }


@pytest.mark.parametrize("text", ["", ":ns/e", "b:", "b:db", "b:/db", "b:ns/"])
def test_malformed_sources_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="PEER"):
        parse_source(text, namespace="default", name="echo")


def test_import_document_keeps_source_order_and_scheme() -> None:
    doc = import_document(
        name="echo", namespace="default", port=0, sources=["b", "c:x/y"], lb_scheme="static"
    )

    assert [s["peer"] for s in doc["spec"]["sources"]] == ["b", "c"]
    assert doc["spec"]["lbScheme"] == "static"
    resource_from_dict(doc)


def test_policy_without_sides_matches_everything() -> None:
    doc = policy_document(
        name="all",
        namespace="default",
        action="allow",
        is_privileged=False,
        from_labels=[],
        to_labels=[],
    )

    assert doc["kind"] == "AccessPolicy"
    assert doc["spec"] == {"action": "allow", "from": MATCH_ALL, "to": MATCH_ALL}
    resource_from_dict(doc)


def test_policy_labels_become_match_labels_one_selector_per_flag() -> None:
    doc = policy_document(
        name="p",
        namespace="default",
        action="deny",
        is_privileged=True,
        from_labels=["peer.clusterlink.net/name=b,env=dev", "peer.clusterlink.net/name=c"],
        to_labels=[],
    )

    assert doc["kind"] == "PrivilegedAccessPolicy"
    assert "namespace" not in doc["metadata"]
    assert doc["spec"]["from"] == [
        {"workloadSelector": {"matchLabels": {"peer.clusterlink.net/name": "b", "env": "dev"}}},
        {"workloadSelector": {"matchLabels": {"peer.clusterlink.net/name": "c"}}},
    ]
    resource_from_dict(doc)


def test_label_values_may_be_empty_or_contain_equals() -> None:
    assert parse_labels("a=,b=x=y") == {"a": "", "b": "x=y"}


@pytest.mark.parametrize("text", ["a", "=v", "a=1,,b=2"])
def test_malformed_labels_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_labels(text)

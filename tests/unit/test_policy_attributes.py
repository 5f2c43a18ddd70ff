"""The attribute builders produce exactly the keys of DESIGN.md §4, and nothing for unknowns."""

from __future__ import annotations

from clusterlink.policy import (
    CLIENT_IP,
    CLIENT_NAMESPACE,
    CLIENT_SERVICE_ACCOUNT,
    EXPORT_NAME,
    EXPORT_NAMESPACE,
    PEER_NAME,
    destination_attributes,
    source_attributes,
)


def test_attribute_keys_are_spelled_as_in_the_original() -> None:
    assert PEER_NAME == "peer.clusterlink.net/name"
    assert CLIENT_NAMESPACE == "client.clusterlink.net/namespace"
    assert CLIENT_SERVICE_ACCOUNT == "client.clusterlink.net/service-account"
    assert CLIENT_IP == "client.clusterlink.net/ip"
    assert EXPORT_NAME == "export.clusterlink.net/name"
    assert EXPORT_NAMESPACE == "export.clusterlink.net/namespace"


def test_source_attributes_with_everything_known() -> None:
    attrs = source_attributes(
        peer_name="site-a",
        peer_labels={"region": "eu"},
        client_ip="10.0.0.7",
        client_namespace="shop",
        client_service_account="frontend",
        client_labels={"app": "web"},
    )
    assert attrs == {
        "peer.clusterlink.net/name": "site-a",
        "peer.clusterlink.net/labels.region": "eu",
        "client.clusterlink.net/ip": "10.0.0.7",
        "client.clusterlink.net/namespace": "shop",
        "client.clusterlink.net/service-account": "frontend",
        "client.clusterlink.net/labels.app": "web",
    }


def test_unknown_client_attributes_are_absent_not_empty() -> None:
    attrs = source_attributes(peer_name="site-a", peer_labels={}, client_ip="127.0.0.1")
    assert attrs == {
        "peer.clusterlink.net/name": "site-a",
        "client.clusterlink.net/ip": "127.0.0.1",
    }


def test_destination_attributes() -> None:
    attrs = destination_attributes(
        export_name="db",
        export_namespace="shop",
        export_labels={"tier": "data"},
        peer_name="site-b",
        peer_labels={"region": "us"},
    )
    assert attrs == {
        "export.clusterlink.net/name": "db",
        "export.clusterlink.net/namespace": "shop",
        "export.clusterlink.net/labels.tier": "data",
        "peer.clusterlink.net/name": "site-b",
        "peer.clusterlink.net/labels.region": "us",
    }


def test_a_label_cannot_overwrite_a_fixed_key() -> None:
    attrs = source_attributes(peer_name="site-a", peer_labels={"name": "spoof"})
    assert attrs[PEER_NAME] == "site-a"
    assert attrs["peer.clusterlink.net/labels.name"] == "spoof"

"""The attribute builders produce exactly the keys of DESIGN.md §4, and nothing for unknowns."""

from __future__ import annotations

import pytest

from clusterlink.policy import (
    CLIENT_IP,
    CLIENT_NAMESPACE,
    CLIENT_SERVICE_ACCOUNT,
    EXPORT_NAME,
    EXPORT_NAMESPACE,
    PEER_NAME,
    Side,
    destination_attributes,
    key_problem,
    source_attributes,
)


def test_attribute_keys_are_spelled_as_in_the_original() -> None:
    assert PEER_NAME == "peer.clusterlink.net/name"
    assert CLIENT_NAMESPACE == "client.clusterlink.net/namespace"
    assert CLIENT_SERVICE_ACCOUNT == "client.clusterlink.net/service-account"
    assert CLIENT_IP == "client.clusterlink.net/ip"
    assert EXPORT_NAME == "export.clusterlink.net/name"
    assert EXPORT_NAMESPACE == "export.clusterlink.net/namespace"


def everything_known() -> dict[Side, dict[str, str]]:
    """Both sides with every attribute the builders can produce."""
    return {
        Side.SOURCE: source_attributes(
            peer_name="site-a",
            peer_labels={"region": "eu"},
            client_ip="10.0.0.7",
            client_namespace="shop",
            client_service_account="frontend",
            client_labels={"app": "web"},
        ),
        Side.DESTINATION: destination_attributes(
            export_name="db",
            export_namespace="shop",
            export_labels={"tier": "data"},
            peer_name="site-b",
            peer_labels={"region": "us"},
        ),
    }


def test_source_attributes_with_everything_known() -> None:
    attrs = everything_known()[Side.SOURCE]
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
    attrs = everything_known()[Side.DESTINATION]
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


def test_what_the_builders_produce_is_what_selectors_of_that_side_may_use() -> None:
    built = everything_known()
    for side, attrs in built.items():
        other = Side.DESTINATION if side is Side.SOURCE else Side.SOURCE
        for key in attrs:
            assert key_problem(key, side) is None, (side, key)
            assert (key_problem(key, other) is None) == (key in built[other]), (other, key)


@pytest.mark.parametrize(
    ("key", "side", "problem"),
    [
        ("app", Side.SOURCE, None),
        ("example.com/team", Side.DESTINATION, None),
        ("notclusterlink.net/x", Side.SOURCE, None),
        ("peer.clusterlink.net/labels.x", Side.DESTINATION, None),
        ("peer.clusterlink.net/nmae", Side.SOURCE, "is not a ClusterLink attribute"),
        ("clusterlink.net/name", Side.SOURCE, "is not a ClusterLink attribute"),
        ("app.clusterlink.net/name", Side.DESTINATION, "is not a ClusterLink attribute"),
        ("export.clusterlink.net/labels.", Side.DESTINATION, "is not a ClusterLink attribute"),
        ("export.clusterlink.net/name", Side.SOURCE, "is a destination attribute, not a source"),
        ("client.clusterlink.net/ip", Side.DESTINATION, "is a source attribute, not a destination"),
    ],
)
def test_key_problem_refuses_clusterlink_keys_a_side_does_not_carry(
    key: str, side: Side, problem: str | None
) -> None:
    found = key_problem(key, side)

    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(f"{key!r} {problem}")
        assert f"(known {side} attributes: peer.clusterlink.net/name, " in found

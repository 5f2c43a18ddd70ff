"""Egress and ingress decisions over snapshots of real resources in a real SQLite store.

The scenario: gateway ``west`` imports ``shop/db`` from peer ``east``, which exports
``prod/orders`` (labels ``app=orders``). On egress (at west) the destination is the remote
export *as the Import names it*, with the Import's labels and east's heartbeat labels, and
the Import's namespace picks the policies. On ingress (at east) the destination is the local
Export, the Export's namespace picks the policies, and the caller's peer name is the one from
its certificate, whatever the request claimed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clusterlink.api import Export, Import
from clusterlink.controlplane.authz import (
    ClientIdentity,
    LocalPeer,
    egress_decision,
    egress_source_attributes,
    ingress_decision,
)
from clusterlink.controlplane.catalog import Snapshot
from clusterlink.ids import NamespacedName
from clusterlink.policy import (
    CLIENT_IP,
    EXPORT_LABELS_PREFIX,
    EXPORT_NAME,
    EXPORT_NAMESPACE,
    PEER_LABELS_PREFIX,
    PEER_NAME,
    Decision,
)
from clusterlink.store import SQLiteStore
from tests.unit._resources import Document, document, policy, selector, snapshot_of

WEST = LocalPeer("west", {"site": "eu"})
EAST = LocalPeer("east", {"env": "prod"})
EAST_HEARTBEAT_LABELS = {"env": "prod"}  # what west learned of east by heartbeat
CLIENT = "10.1.2.3"

IMPORT = document(
    "Import",
    "db",
    {
        "port": 0,
        "sources": [{"peer": "east", "exportName": "orders", "exportNamespace": "prod"}],
    },
    namespace="shop",
    labels={"tier": "backend"},
)
EXPORT = document(
    "Export",
    "orders",
    {"host": "10.0.0.5", "port": 5432},
    namespace="prod",
    labels={"app": "orders"},
)

Snap = Callable[..., Snapshot]


@pytest.fixture
def snap(tmp_path: Path) -> Iterator[Snap]:
    """``snap(*documents)``: the snapshot of a fresh store holding the Import, the Export and
    ``documents``."""
    stores: list[SQLiteStore] = []

    def make(*documents: Document) -> Snapshot:
        stores.append(SQLiteStore(tmp_path / f"state-{len(stores)}.db"))
        return snapshot_of(stores[-1], IMPORT, EXPORT, *documents)

    yield make
    for store in stores:
        store.close()


def egress(
    snapshot: Snapshot, *, peer_labels: dict[str, str] | None = None, client_ip: str = CLIENT
) -> Decision:
    imp = snapshot.imports[NamespacedName("shop", "db")]
    assert isinstance(imp, Import)
    src = egress_source_attributes(WEST, client_ip)
    labels = EAST_HEARTBEAT_LABELS if peer_labels is None else peer_labels
    return egress_decision(snapshot, imp, imp.spec.sources[0], src, labels)


def ingress(snapshot: Snapshot, *, caller: str, claimed: dict[str, str]) -> Decision:
    export = snapshot.exports[NamespacedName("prod", "orders")]
    assert isinstance(export, Export)
    return ingress_decision(snapshot, EAST, export, caller, claimed)


def sent_by(peer: str, *, client_ip: str = CLIENT, **peer_labels: str) -> dict[str, str]:
    """What a calling gateway sends with its CONNECT (``egress_source_attributes``)."""
    return egress_source_attributes(LocalPeer(peer, peer_labels), client_ip)


def by(decision: Decision) -> tuple[bool, str]:
    return decision.is_allowed, decision.decided_by


def ingress_from_west(snapshot: Snapshot) -> Decision:
    return ingress(snapshot, caller="west", claimed=sent_by("west"))


def check_attribute(
    snap: Snap,
    decide: Callable[[Snapshot], Decision],
    *,
    namespace: str,
    side: str,
    key: str,
    value: str,
) -> None:
    """A policy selecting ``key: value`` on ``side`` decides; one wanting another value does
    not match at all."""
    for wanted, expected in ((value, (True, f"{namespace}/p")), ("other", (False, "default deny"))):
        selectors = [selector({key: wanted})]
        if side == "from":
            resource = policy("p", "allow", from_=selectors, namespace=namespace)
        else:
            resource = policy("p", "allow", to=selectors, namespace=namespace)
        assert by(decide(snap(resource))) == expected, wanted


# -- egress -----------------------------------------------------------------------------------

# Each attribute of the egress destination and the value it must have: the Import's source
# names the export, the Import lends its labels, the target peer its heartbeat labels.
EGRESS_DESTINATION = {
    EXPORT_NAME: "orders",
    EXPORT_NAMESPACE: "prod",
    EXPORT_LABELS_PREFIX + "tier": "backend",
    PEER_NAME: "east",
    PEER_LABELS_PREFIX + "env": "prod",
}


@pytest.mark.parametrize("key", EGRESS_DESTINATION)
def test_egress_destination_is_the_export_as_the_import_names_it(snap: Snap, key: str) -> None:
    value = EGRESS_DESTINATION[key]
    check_attribute(snap, egress, namespace="shop", side="to", key=key, value=value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (PEER_NAME, "west"),
        (PEER_LABELS_PREFIX + "site", "eu"),
        (CLIENT_IP, CLIENT),
    ],
)
def test_egress_source_is_this_gateway_and_its_client(snap: Snap, key: str, value: str) -> None:
    check_attribute(snap, egress, namespace="shop", side="from", key=key, value=value)


def test_egress_uses_the_target_peers_labels_as_learned_by_heartbeat(snap: Snap) -> None:
    snapshot = snap(
        policy(
            "prod-only",
            "allow",
            to=[selector({"peer.clusterlink.net/labels.env": "prod"})],
            namespace="shop",
        )
    )
    assert egress(snapshot, peer_labels={"env": "prod"}).is_allowed
    assert egress(snapshot, peer_labels={"env": "dev"}).is_default
    assert egress(snapshot, peer_labels={}).is_default  # not heard from yet: no labels


# -- ingress ----------------------------------------------------------------------------------


def test_ingress_caller_name_comes_from_the_certificate_not_the_request(snap: Snap) -> None:
    snapshot = snap(
        policy("from-west", "allow", from_=[selector({PEER_NAME: "west"})], namespace="prod")
    )
    # mallory claims to be west: the certificate says mallory.
    assert ingress(snapshot, caller="mallory", claimed=sent_by("west")).is_default
    # west's request may say anything about its name: the certificate says west.
    assert by(ingress(snapshot, caller="west", claimed=sent_by("mallory"))) == (
        True,
        "prod/from-west",
    )
    assert by(ingress(snapshot, caller="west", claimed={})) == (True, "prod/from-west")


def test_ingress_deny_of_a_peer_cannot_be_dodged_by_claiming_another_name(snap: Snap) -> None:
    snapshot = snap(
        policy("everyone", "allow", namespace="prod"),
        policy("not-mallory", "deny", from_=[selector({PEER_NAME: "mallory"})], namespace="prod"),
    )
    assert by(ingress(snapshot, caller="mallory", claimed=sent_by("west"))) == (
        False,
        "prod/not-mallory",
    )
    assert by(ingress(snapshot, caller="west", claimed=sent_by("west"))) == (True, "prod/everyone")


def test_ingress_keeps_what_the_caller_says_about_its_client_and_labels(snap: Snap) -> None:
    snapshot = snap(
        policy(
            "eu-clients",
            "allow",
            from_=[selector({PEER_LABELS_PREFIX + "site": "eu", CLIENT_IP: CLIENT})],
            namespace="prod",
        )
    )
    assert ingress(snapshot, caller="west", claimed=sent_by("west", site="eu")).is_allowed
    assert ingress(snapshot, caller="west", claimed=sent_by("west", site="us")).is_default
    other_client = sent_by("west", client_ip="10.9.9.9", site="eu")
    assert ingress(snapshot, caller="west", claimed=other_client).is_default


INGRESS_DESTINATION = {
    EXPORT_NAME: "orders",
    EXPORT_NAMESPACE: "prod",
    EXPORT_LABELS_PREFIX + "app": "orders",
    PEER_NAME: "east",
    PEER_LABELS_PREFIX + "env": "prod",
}


@pytest.mark.parametrize("key", INGRESS_DESTINATION)
def test_ingress_destination_is_the_local_export_on_this_gateway(snap: Snap, key: str) -> None:
    value = INGRESS_DESTINATION[key]
    check_attribute(snap, ingress_from_west, namespace="prod", side="to", key=key, value=value)


@pytest.mark.parametrize(
    ("end", "namespace", "applies"),
    [
        ("egress", "shop", True),
        ("egress", "prod", False),
        ("egress", "default", False),
        ("ingress", "prod", True),
        ("ingress", "shop", False),
        ("ingress", "default", False),
    ],
    ids=[
        "egress: the import's namespace",
        "egress: the export's namespace",
        "egress: another namespace",
        "ingress: the export's namespace",
        "ingress: the import's namespace",
        "ingress: another namespace",
    ],
)
def test_only_the_policies_of_the_namespace_of_the_local_resource_apply(
    snap: Snap, end: str, namespace: str, applies: bool
) -> None:
    decide = egress if end == "egress" else ingress_from_west
    decision = decide(snap(policy("allow-all", "allow", namespace=namespace)))
    assert by(decision) == (
        (True, f"{namespace}/allow-all") if applies else (False, "default deny")
    )


# -- privileged policies ----------------------------------------------------------------------


def test_a_privileged_deny_beats_every_namespaced_allow_on_both_ends(snap: Snap) -> None:
    snapshot = snap(
        policy("shop-allows", "allow", namespace="shop"),
        policy("prod-allows", "allow", namespace="prod"),
        policy("no-west", "deny", from_=[selector({PEER_NAME: "west"})], privileged=True),
    )
    for decision in (
        egress(snapshot),
        ingress_from_west(snapshot),
    ):
        assert (decision.is_allowed, decision.decided_by, decision.privileged) == (
            False,
            "no-west",
            True,
        )
    # Not west: the namespaced allow decides.
    assert by(ingress(snapshot, caller="north", claimed=sent_by("north"))) == (
        True,
        "prod/prod-allows",
    )


def test_a_privileged_allow_applies_in_every_namespace_and_beats_a_namespaced_deny(
    snap: Snap,
) -> None:
    snapshot = snap(
        policy("prod-denies", "deny", namespace="prod"),
        policy("fabric-wide", "allow", privileged=True),
    )
    assert by(egress(snapshot)) == (True, "fabric-wide")
    assert by(ingress_from_west(snapshot)) == (True, "fabric-wide")


def test_nothing_configured_is_a_default_deny_on_both_ends(snap: Snap) -> None:
    snapshot = snap()
    assert egress(snapshot).is_default
    assert ingress_from_west(snapshot).is_default


def test_a_client_the_cluster_knows_carries_its_pods_namespace_account_and_labels() -> None:
    """Kubernetes mode: the Pod at the client's address says who it is; those attributes go
    with the CONNECT so that both ends' policies can select on them."""
    pod = ClientIdentity(namespace="shop", service_account="cart", labels={"tier": "web"})
    attrs = egress_source_attributes(WEST, CLIENT, pod)
    assert attrs["client.clusterlink.net/namespace"] == "shop"
    assert attrs["client.clusterlink.net/service-account"] == "cart"
    assert attrs["client.clusterlink.net/labels.tier"] == "web"
    assert attrs["client.clusterlink.net/ip"] == CLIENT
    assert attrs["peer.clusterlink.net/name"] == "west"
    # A client the cluster does not know (or standalone mode): only what the socket tells.
    plain = egress_source_attributes(WEST, CLIENT)
    assert not any(key.startswith("client.clusterlink.net/labels.") for key in plain)
    assert "client.clusterlink.net/namespace" not in plain

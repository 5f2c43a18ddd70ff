"""The catalog: the snapshot of a real SQLite store, swapped whole, and ``policy_of``.

``policy_of`` is the one place where a policy resource becomes what the engine evaluates, so
it is checked field by field against a ``Policy`` written out by hand. The catalog is checked
for what the data plane relies on: lookups by the keys it uses, a change applying only after
``reload`` (and then to the next decision), an old snapshot never changing under a reader,
and subscribers told of every swap.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.api import (
    AccessPolicy,
    PrivilegedAccessPolicy,
    ResourceKey,
    resource_from_dict,
)
from clusterlink.controlplane.catalog import Catalog, Snapshot, policy_of
from clusterlink.ids import NamespacedName
from clusterlink.policy import Action, Operator, Policy, Requirement, Selector
from clusterlink.store import SQLiteStore
from tests.unit._resources import document, policy, selector


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "state.db") as store:
        yield store


def apply(store: SQLiteStore, *documents: dict[str, object]) -> None:
    store.apply([resource_from_dict(d) for d in documents])


# -- policy_of --------------------------------------------------------------------------------


def test_policy_of_maps_an_access_policy_selector_by_selector() -> None:
    resource = resource_from_dict(
        policy(
            "mixed",
            "deny",
            namespace="shop",
            from_=[
                selector(
                    {"peer.clusterlink.net/name": "west"},
                    {"key": "client.clusterlink.net/ip", "operator": "In", "values": ["a", "b"]},
                    {
                        "key": "peer.clusterlink.net/labels.env",
                        "operator": "NotIn",
                        "values": ["dev"],
                    },
                ),
                selector({"peer.clusterlink.net/labels.site": "eu"}),
            ],
            to=[
                selector(
                    None,
                    {"key": "export.clusterlink.net/labels.app", "operator": "Exists"},
                    {"key": "export.clusterlink.net/labels.legacy", "operator": "DoesNotExist"},
                ),
            ],
        )
    )
    assert isinstance(resource, AccessPolicy)
    assert policy_of(resource) == Policy(
        name="mixed",
        namespace="shop",
        privileged=False,
        action=Action.DENY,
        from_=(
            Selector(
                {"peer.clusterlink.net/name": "west"},
                (
                    Requirement("client.clusterlink.net/ip", Operator.IN, frozenset({"a", "b"})),
                    Requirement(
                        "peer.clusterlink.net/labels.env", Operator.NOT_IN, frozenset({"dev"})
                    ),
                ),
            ),
            Selector({"peer.clusterlink.net/labels.site": "eu"}),
        ),
        to=(
            Selector(
                {},
                (
                    Requirement("export.clusterlink.net/labels.app", Operator.EXISTS),
                    Requirement("export.clusterlink.net/labels.legacy", Operator.DOES_NOT_EXIST),
                ),
            ),
        ),
    )


def test_policy_of_a_privileged_policy_is_cluster_wide() -> None:
    resource = resource_from_dict(policy("fabric-wide", "allow", privileged=True))
    assert isinstance(resource, PrivilegedAccessPolicy)
    mapped = policy_of(resource)
    assert (mapped.name, mapped.namespace, mapped.privileged, mapped.action) == (
        "fabric-wide",
        "",
        True,
        Action.ALLOW,
    )
    assert mapped.ref == "fabric-wide"


def test_policy_of_an_empty_selector_matches_everything() -> None:
    resource = resource_from_dict(policy("all", "allow"))
    assert isinstance(resource, AccessPolicy)
    mapped = policy_of(resource)
    assert mapped.from_ == mapped.to == (Selector(),)
    assert mapped.matches({}, {"anything": "at all"})


# -- the catalog ------------------------------------------------------------------------------

PEER = document("Peer", "east", {"gateways": [{"host": "10.0.0.1", "port": 8443}]})
EXPORT = document("Export", "orders", {"host": "10.0.0.5", "port": 5432}, namespace="prod")
IMPORT = document(
    "Import",
    "db",
    {"port": 0, "sources": [{"peer": "east", "exportName": "orders", "exportNamespace": "prod"}]},
    namespace="shop",
)


def test_snapshot_holds_every_kind_under_the_keys_the_data_plane_looks_up(
    store: SQLiteStore,
) -> None:
    apply(
        store,
        PEER,
        EXPORT,
        IMPORT,
        policy("allow-shop", "allow", namespace="shop"),
        policy(
            "deny-west",
            "deny",
            privileged=True,
            from_=[selector({"peer.clusterlink.net/name": "west"})],
        ),
    )
    snapshot = Catalog(store).reload()
    assert list(snapshot.peers) == ["east"]
    assert list(snapshot.exports) == [NamespacedName("prod", "orders")]
    assert list(snapshot.imports) == [NamespacedName("shop", "db")]
    assert snapshot.exports[NamespacedName("prod", "orders")].spec.port == 5432
    assert snapshot.revision == store.revision
    west = {"peer.clusterlink.net/name": "west"}
    assert snapshot.policies.decide(west, {}, "shop").decided_by == "deny-west"
    assert snapshot.policies.decide({}, {}, "shop").decided_by == "shop/allow-shop"


def test_policies_may_share_a_name_across_namespaces_and_kinds(store: SQLiteStore) -> None:
    apply(
        store,
        policy("same", "allow", namespace="shop"),
        policy("same", "deny", namespace="prod"),
        policy("same", "allow", privileged=True, from_=[selector({"vip": "yes"})]),
    )
    snapshot = Catalog(store).reload()
    assert snapshot.policies.decide({}, {}, "shop").decided_by == "shop/same"
    assert snapshot.policies.decide({}, {}, "prod").decided_by == "prod/same"
    assert snapshot.policies.decide({"vip": "yes"}, {}, "prod").decided_by == "same"


def test_a_change_applies_after_reload_and_old_snapshots_never_change(store: SQLiteStore) -> None:
    catalog = Catalog(store)
    apply(store, EXPORT)
    before = catalog.reload()
    assert before.policies.decide({}, {}, "prod").is_default

    apply(store, policy("allow-prod", "allow", namespace="prod"))
    store.delete([ResourceKey("Export", "prod", "orders")])
    # Stored, but the data plane still sees the snapshot it has until the swap.
    assert catalog.snapshot is before
    after = catalog.reload()

    assert after.policies.decide({}, {}, "prod").is_allowed
    assert NamespacedName("prod", "orders") not in after.exports
    # A reader holding the old snapshot sees it whole and unchanged.
    assert before.policies.decide({}, {}, "prod").is_default
    assert NamespacedName("prod", "orders") in before.exports
    assert after.revision > before.revision


def test_snapshot_maps_are_read_only(store: SQLiteStore) -> None:
    apply(store, PEER, EXPORT, IMPORT)
    snapshot = Catalog(store).reload()
    for mapping in (snapshot.peers, snapshot.exports, snapshot.imports):
        with pytest.raises(TypeError):
            mapping["x"] = None  # type: ignore[index]  # the point: no writes allowed


def test_subscribers_are_told_of_every_swap_with_old_and_new(store: SQLiteStore) -> None:
    catalog = Catalog(store)
    seen: list[tuple[Snapshot, Snapshot]] = []
    catalog.subscribe(lambda old, new: seen.append((old, new)))
    first = catalog.reload()
    apply(store, EXPORT)
    second = catalog.reload()
    assert [(old.revision, new.revision) for old, new in seen] == [
        (0, first.revision),
        (first.revision, second.revision),
    ]
    assert seen[1][0] is first
    assert seen[1][1] is second is catalog.snapshot

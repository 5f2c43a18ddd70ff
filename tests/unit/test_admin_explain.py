"""``POST /v1/explain`` over snapshots of real resources: the same attributes and answer as
the data path's decision, a Pod's identity where the cluster knows it, and a ``NotFoundError``
naming whatever is unknown.

Gateway ``west`` imports ``shop/db`` from peers ``east`` and ``ghost`` (no Peer of that name);
``east`` exports ``shop/db``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlink.controlplane.admin_explain import ExplainBody, ExplainRoutes
from clusterlink.controlplane.authz import (
    ClientIdentity,
    LocalPeer,
    egress_decision,
    egress_source_attributes,
)
from clusterlink.controlplane.catalog import Snapshot
from clusterlink.errors import NotFoundError
from clusterlink.ids import NamespacedName
from clusterlink.store import SQLiteStore
from tests.unit._resources import Document, document, policy, selector, snapshot_of

WEST = LocalPeer("west", {"site": "eu"})
LABELS = {"east": {"env": "prod"}}  # as heartbeats reported them
SA = "client.clusterlink.net/service-account"
POD = ClientIdentity(namespace="shop", service_account="backend", labels={"app": "web"})

IMPORT = document(
    "Import",
    "db",
    {"port": 0, "sources": [{"peer": "east"}, {"peer": "ghost"}]},
    namespace="shop",
)
EXPORT = document("Export", "db", {"host": "10.0.0.5", "port": 5432}, namespace="shop")
EAST = document("Peer", "east", {"gateways": [{"host": "10.0.0.2", "port": 8443}]})

Snap = Callable[..., Snapshot]


@pytest.fixture
def snap(tmp_path: Path) -> Iterator[Snap]:
    stores: list[SQLiteStore] = []

    def make(*documents: Document) -> Snapshot:
        stores.append(SQLiteStore(tmp_path / f"state-{len(stores)}.db"))
        return snapshot_of(stores[-1], IMPORT, EXPORT, EAST, *documents)

    yield make
    for store in stores:
        store.close()


def ask(snapshot: Snapshot, identify: Any = lambda _ip: None, **body: Any) -> dict[str, Any]:
    routes = ExplainRoutes(lambda: snapshot, WEST, lambda peer: LABELS.get(peer, {}), identify)
    return routes.answer(ExplainBody.model_validate(body))


def test_egress_gives_one_trace_per_source_with_the_data_paths_answer(snap: Snap) -> None:
    snapshot = snap(
        policy(
            "to-east",
            "allow",
            namespace="shop",
            to=[selector({"peer.clusterlink.net/labels.env": "prod"})],
        )
    )
    answer = ask(snapshot, **{"import": "shop/db", "clientIp": "10.1.2.3"})
    east, ghost = answer["traces"]
    assert (answer["direction"], answer["namespace"]) == ("egress", "shop")
    imp = snapshot.imports[NamespacedName("shop", "db")]
    src = egress_source_attributes(WEST, "10.1.2.3")
    expected = egress_decision(snapshot, imp, imp.spec.sources[0], src, LABELS["east"])
    assert (east["peer"], east["decision"], east["decidedBy"]) == (
        "east",
        expected.action,
        expected.decided_by,
    )
    assert east["source"] == src and east["problem"] is None
    assert ghost["peer"] == "ghost" and "no Peer named 'ghost'" in ghost["problem"]
    assert ghost["summary"] == "deny (default deny: no policy matched)"


def test_the_pod_at_the_client_address_is_who_the_policies_see(snap: Snap) -> None:
    snapshot = snap(
        policy("backend-only", "allow", namespace="shop", from_=[selector({SA: "backend"})])
    )
    pods = {"10.1.2.3": POD}
    body = {"import": "shop/db", "clientIp": "10.1.2.3", "peer": "east"}
    (trace,) = ask(snapshot, pods.get, **body)["traces"]
    assert trace["source"][SA] == "backend"
    assert trace["summary"] == "allow by policy shop/backend-only"
    # What the request says of the client wins over the cluster's view.
    (told,) = ask(snapshot, pods.get, **body, clientServiceAccount="frontend")["traces"]
    assert told["summary"] == "deny (default deny: no policy matched)"


def test_ingress_sees_the_caller_with_its_heartbeat_labels(snap: Snap) -> None:
    prod = selector({"peer.clusterlink.net/labels.env": "prod"})
    snapshot = snap(policy("from-prod", "deny", namespace="shop", from_=[prod]))
    (trace,) = ask(snapshot, export="shop/db", peer="east")["traces"]
    assert trace["source"]["peer.clusterlink.net/labels.env"] == "prod"
    assert trace["destination"]["peer.clusterlink.net/name"] == "west"
    assert [t["tier"] for t in trace["tiers"] if t["deciding"]] == ["deny"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"import": "shop/nope", "clientIp": "10.1.2.3"}, "no import shop/nope at peer west"),
        (
            {"import": "shop/db", "clientIp": "10.1.2.3", "peer": "west"},
            "import shop/db has no source at peer west; it has east, ghost",
        ),
        ({"export": "nope", "peer": "east"}, "no export default/nope at peer west"),
        ({"export": "shop/db", "peer": "ghost"}, "no Peer named 'ghost' at peer west"),
    ],
)
def test_an_unknown_resource_or_peer_is_named(
    snap: Snap, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(NotFoundError, match=message):
        ask(snap(), **body)

"""KubernetesStore against the emulated API: the Store contract as SQLiteStore keeps it (where
it makes sense over an API), the mapping to Kubernetes objects, objects that do not validate,
undo of a batch that fails midway, and the queries the controllers read from the caches.

Writes run in a worker thread (``asyncio.to_thread``), as the control plane makes them: they
wait for the store's caches, which the test's event loop fills.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from clusterlink.api import Resource, ResourceKey, key_of, parse_documents, to_dict
from clusterlink.api.crds import crds
from clusterlink.errors import NotFoundError, StoreError, ValidationError
from clusterlink.kube import Backoff, load_access
from clusterlink.store import KubernetesStore, Store
from tests.k8s.apiserver import KubeAPI
from tests.k8s.waiting import eventually

pytestmark = pytest.mark.k8s

T = TypeVar("T")
OWN = "clusterlink-system"
CL = "/apis/clusterlink.net/v1alpha1"
HEAD = "apiVersion: clusterlink.net/v1alpha1\n"
ALL_KINDS = "---\n".join(
    HEAD + doc
    for doc in [
        "kind: Peer\nmetadata: {name: site-b}\nspec: {gateways: [{host: b.example, port: 8443}]}\n",
        "kind: Export\nmetadata: {name: db, namespace: prod}\nspec: {host: 10.0.0.5, port: 5432}\n",
        "kind: Import\nmetadata: {name: db}\nspec: {port: 0, sources: [{peer: site-b}]}\n",
        "kind: AccessPolicy\nmetadata: {name: allow-all}\n"
        "spec: {action: allow, from: [{workloadSelector: {}}], to: [{workloadSelector: {}}]}\n",
        "kind: PrivilegedAccessPolicy\nmetadata: {name: deny-x}\nspec: {action: deny, "
        "from: [{workloadSelector: {matchLabels: {x: y}}}], to: [{workloadSelector: {}}]}\n",
    ]
)
KINDS = ["Peer", "Export", "Import", "AccessPolicy", "PrivilegedAccessPolicy"]


def export(name: str, port: int = 80, namespace: str = "default") -> Resource:
    (resource,) = parse_documents(
        HEAD + f"kind: Export\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{host: svc, port: {port}}}\n"
    )
    return resource


def export_key(name: str, namespace: str = "default") -> ResourceKey:
    return ResourceKey("Export", namespace, name)


def writes(api: KubeAPI) -> int:
    """How many write requests the API has served (reads come and go with the informers)."""
    return sum(method != "GET" for method, _, _ in api.request_log())


def everything_of(store: Store) -> list[Resource]:
    return [r for kind in KINDS for r in store.list(kind)]


def everything(store: Store) -> list[dict[str, Any]]:
    return [to_dict(r) for r in everything_of(store)]


async def off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A store write as the control plane makes it: in a worker thread."""
    return await asyncio.to_thread(function, *args, **kwargs)


@pytest.fixture
async def store(api: KubeAPI) -> AsyncIterator[KubernetesStore]:
    for namespace in (OWN, "prod"):
        api.create("namespaces", {"metadata": {"name": namespace}})
    opened = KubernetesStore(
        load_access(api_url=api.url), backoff=Backoff(initial_s=0.05, max_s=0.2)
    )
    await opened.start()
    yield opened
    await opened.aclose()


# --- basics ------------------------------------------------------------------------------------


async def test_it_is_a_store(store):
    typed: Store = store
    assert typed.revision == 0
    assert everything(typed) == []


async def test_every_kind_round_trips_and_lands_where_docs_say(api, store):
    resources = parse_documents(ALL_KINDS)
    outcomes = await off_loop(store.apply, resources)
    assert [o.result for o in outcomes] == ["created"] * 5
    assert [o.key for o in outcomes] == [key_of(r) for r in resources]
    for resource in resources:
        assert store.get(key_of(resource)) == resource  # readable at once: read-your-writes
        assert store.list(type(resource)) == [resource]
    (peer,) = api.objects("peers")
    assert peer["metadata"]["namespace"] == OWN
    assert peer["spec"] == {"gateways": [{"host": "b.example", "port": 8443}]}
    (policy,) = api.objects("privilegedaccesspolicies")
    assert "namespace" not in policy["metadata"]
    (exported,) = api.objects("exports")
    assert exported["metadata"]["namespace"] == "prod"


async def test_outcomes_are_created_unchanged_configured_and_revision_follows(store):
    outcomes = await off_loop(store.apply, [export("a"), export("b")])
    assert [str(o) for o in outcomes] == ["export default/a created", "export default/b created"]
    revision = store.revision
    assert revision > 0
    again = await off_loop(store.apply, [export("a"), export("b")])
    assert [o.result for o in again] == ["unchanged"] * 2
    assert store.revision == revision
    mixed = await off_loop(store.apply, [export("a"), export("b", port=81), export("c")])
    assert [o.result for o in mixed] == ["unchanged", "configured", "created"]
    assert store.revision > revision
    assert store.get(export_key("b")).spec.port == 81


async def test_apply_of_nothing_changes_nothing(api, store):
    before = writes(api)
    assert await off_loop(store.apply, []) == []
    assert store.revision == 0
    assert writes(api) == before


async def test_list_is_sorted_and_filtered_by_namespace(api, store):
    for namespace in ("y", "z"):
        api.create("namespaces", {"metadata": {"name": namespace}})
    await off_loop(store.apply, [export("b", namespace="y"), export("a", namespace="z")])
    await off_loop(store.apply, [export("c"), export("a", namespace="y")])
    everywhere = [(r.metadata.namespace, r.metadata.name) for r in store.list("exports")]
    assert everywhere == [("default", "c"), ("y", "a"), ("y", "b"), ("z", "a")]
    assert [r.metadata.name for r in store.list("export", "y")] == ["a", "b"]
    assert store.list("export", "nowhere") == []


async def test_namespace_is_ignored_when_listing_cluster_scoped_kinds(store):
    await off_loop(store.apply, parse_documents(ALL_KINDS))
    assert [r.metadata.name for r in store.list("peers", "prod")] == ["site-b"]
    assert [r.metadata.name for r in store.list("privilegedpolicies", "x")] == ["deny-x"]


async def test_get_of_a_missing_resource_says_what_is_missing(store):
    with pytest.raises(NotFoundError, match=r"^import default/x not found$"):
        store.get(ResourceKey("Import", "default", "x"))
    with pytest.raises(NotFoundError, match=r"^peer b not found$"):
        store.get(ResourceKey.of("peer", "b"))


# --- status ------------------------------------------------------------------------------------


async def test_status_is_kept_across_re_apply_and_incoming_status_is_ignored(store):
    (peer,) = parse_documents(ALL_KINDS)[:1]
    key = key_of(peer)
    await off_loop(store.apply, [peer])
    await off_loop(
        store.set_status, key, {"reachable": True, "labels": {"env": "prod"}, "rttMs": 1.5}
    )
    (changed,) = parse_documents(
        HEAD + "kind: Peer\nmetadata: {name: site-b}\nspec: {gateways: [{host: c, port: 1}]}\n"
        "status: {reachable: false, reason: forged}\n"
    )
    assert [o.result for o in await off_loop(store.apply, [changed])] == ["configured"]
    got = store.get(key)
    assert got.spec == changed.spec
    assert to_dict(got)["status"] == {
        "conditions": [],
        "reachable": True,
        "labels": {"env": "prod"},
        "rttMs": 1.5,
    }


async def test_status_given_at_creation_is_not_stored(api, store):
    (imp,) = parse_documents(
        HEAD + "kind: Import\nmetadata: {name: db}\nspec: {port: 0, sources: [{peer: b}]}\n"
        "status: {listen: '1.2.3.4:5'}\n"
    )
    await off_loop(store.apply, [imp])
    assert store.get(key_of(imp)).status is None
    assert "status" not in api.get("imports", "db")
    assert [o.result for o in await off_loop(store.apply, [imp])] == ["unchanged"]


async def test_set_status_replaces_it_whole_through_the_subresource(api, store):
    (peer,) = parse_documents(ALL_KINDS)[:1]
    key = key_of(peer)
    await off_loop(store.apply, [peer])
    before = store.revision
    await off_loop(store.set_status, key, {"reachable": True, "labels": {"a": "1", "b": "2"}})
    assert store.revision > before
    written = store.revision
    await off_loop(store.set_status, key, {"reachable": True, "labels": {"a": "1", "b": "2"}})
    assert store.revision == written  # the same status: not written, nothing moves
    await off_loop(store.set_status, key, {"labels": {"a": "1"}})
    status = store.get(key).status
    assert status is not None
    assert status.reachable is None  # replaced whole: a key left out is gone
    assert status.labels == {"a": "1"}  # maps too, although the patch is a merge patch
    assert api.get("peers", "site-b", namespace=OWN)["status"] == {
        "conditions": [],
        "labels": {"a": "1"},
    }
    patches = [(m, p, t) for m, p, t in api.request_log() if p.endswith("/status")]
    assert patches
    assert all(
        (method, content_type) == ("PATCH", "application/merge-patch+json")
        for method, _, content_type in patches
    )


async def test_invalid_status_is_refused_and_changes_nothing(api, store):
    await off_loop(store.apply, [export("a")])
    revision, written = store.revision, writes(api)
    with pytest.raises(ValidationError) as caught:
        await off_loop(store.set_status, export_key("a"), {"listen": "x"})
    assert caught.value.field == "status.listen"
    assert store.get(export_key("a")).status is None
    assert store.revision == revision
    assert writes(api) == written  # refused before any request


async def test_apply_stores_the_gateways_statuses_with_the_documents(store):
    imp = parse_documents(ALL_KINDS)[2]
    key = key_of(imp)
    await off_loop(store.apply, [imp, export("a")], statuses={key: {"listen": "127.0.0.1:4000"}})
    status = store.get(key).status
    assert status is not None and status.listen == "127.0.0.1:4000"
    revision = store.revision
    outcomes = await off_loop(store.apply, [imp], statuses={key: {"listen": "127.0.0.1:4000"}})
    assert [o.result for o in outcomes] == ["unchanged"]
    assert store.revision == revision
    await off_loop(store.apply, [imp], statuses={key: {"listen": "127.0.0.1:4001"}})
    assert store.revision > revision
    status = store.get(key).status
    assert status is not None and status.listen == "127.0.0.1:4001"


async def test_apply_with_an_invalid_status_stores_nothing(api, store):
    imp = parse_documents(ALL_KINDS)[2]
    with pytest.raises(ValidationError):
        await off_loop(store.apply, [export("a"), imp], statuses={key_of(imp): {"listen": 5}})
    assert everything(store) == []
    assert api.objects("exports") == [] and api.objects("imports") == []


async def test_apply_refuses_statuses_of_resources_it_does_not_apply(store):
    with pytest.raises(ValueError, match="statuses of resources not applied"):
        await off_loop(store.apply, [export("a")], statuses={export_key("b"): {}})
    assert store.list("export") == []


async def test_status_of_a_missing_resource_is_not_found(store):
    with pytest.raises(NotFoundError, match="export default/a not found"):
        await off_loop(store.set_status, export_key("a"), {})


# --- delete ------------------------------------------------------------------------------------


async def test_delete_returns_what_it_deleted(api, store):
    await off_loop(store.apply, [export("a"), export("b")])
    await off_loop(store.set_status, export_key("a"), {})
    revision = store.revision
    deleted = await off_loop(store.delete, [export_key("a")])
    assert [key_of(r) for r in deleted] == [export_key("a")]
    assert deleted[0].status is not None
    assert [r.metadata.name for r in store.list("export")] == ["b"]  # gone at once
    assert [o["metadata"]["name"] for o in api.objects("exports")] == ["b"]
    assert store.revision > revision


async def test_delete_is_all_or_nothing_when_one_is_missing(api, store):
    await off_loop(store.apply, [export("a"), export("b")])
    revision = store.revision
    keys = [export_key("a"), export_key("x"), export_key("b"), export_key("y")]
    with pytest.raises(NotFoundError) as caught:
        await off_loop(store.delete, keys)
    assert str(caught.value) == "export default/x, export default/y not found; nothing was deleted"
    assert [r.metadata.name for r in store.list("export")] == ["a", "b"]
    assert len(api.objects("exports")) == 2
    assert store.revision == revision


# --- all-or-nothing, as far as an API allows ---------------------------------------------------


async def test_a_batch_with_a_bad_document_stores_nothing(store):
    text = ALL_KINDS + "---\n" + HEAD + "kind: Export\nmetadata: {name: x}\nspec: {port: -1}\n"
    with pytest.raises(ValidationError, match="document 6"):
        await off_loop(store.apply, parse_documents(text))
    assert everything(store) == []


async def test_a_write_failing_midway_undoes_the_writes_before_it(api, store):
    await off_loop(store.apply, [export("a")])
    await off_loop(store.set_status, export_key("a"), {"conditions": []})
    before, objects = everything(store), api.objects("exports")
    batch = [export("a", port=9), export("new"), export("lost", namespace="nowhere")]
    with pytest.raises(StoreError) as caught:
        await off_loop(store.apply, batch)
    message = str(caught.value)
    assert message.startswith(f"cannot create export nowhere/lost: the Kubernetes API at {api.url}")
    assert 'answered 404 NotFound: namespaces "nowhere" not found' in message
    assert message.endswith("; the 2 writes before it were undone")
    assert everything(store) == before
    after = api.objects("exports")
    assert [(o["metadata"]["name"], o["spec"], o.get("status")) for o in after] == [
        (o["metadata"]["name"], o["spec"], o.get("status")) for o in objects
    ]


async def test_a_status_write_failing_after_the_documents_undoes_them(api, store):
    api.fail(f"patch {CL}/namespaces/default/imports/db/status")
    imp = parse_documents(ALL_KINDS)[2]
    with pytest.raises(StoreError, match=r"cannot write the status of import default/db: .*500"):
        await off_loop(store.apply, [export("a"), imp], statuses={key_of(imp): {"listen": "x:1"}})
    assert everything(store) == []
    assert api.objects("exports") == [] and api.objects("imports") == []


async def test_a_delete_failing_midway_brings_back_what_it_deleted(api, store):
    await off_loop(store.apply, [export("a"), export("b")])
    await off_loop(store.set_status, export_key("a"), {"conditions": []})
    before = everything(store)
    api.fail(f"delete {CL}/namespaces/default/exports/b")
    with pytest.raises(
        StoreError, match=r"cannot delete export default/b: .* answered 500 InternalError"
    ):
        await off_loop(store.delete, [export_key("a"), export_key("b")])
    assert everything(store) == before  # a was created again, with its status
    assert [o["metadata"]["name"] for o in api.objects("exports")] == ["a", "b"]


async def test_an_undo_that_fails_is_said_and_logged(api, store, caplog):
    api.fail(f"delete {CL}/namespaces/default/exports/a")  # the undo of creating a
    with pytest.raises(StoreError) as caught:
        await off_loop(store.apply, [export("a"), export("lost", namespace="nowhere")])
    assert str(caught.value).endswith("; undoing the writes before it failed for export default/a")
    assert "could not undo the created export default/a" in caplog.text
    await eventually(lambda: store.list("export"), what="export a, left as written")


async def test_a_change_by_another_client_meanwhile_is_a_conflict_not_overwritten(api, store):
    await off_loop(store.apply, [export("a")])
    with api.holding_watches():
        api.expire_watches()  # the store's cache falls behind ...
        api.patch("exports", "a", {"spec": {"port": 7}})  # ... while kubectl changes a
        with pytest.raises(StoreError, match="answered 409 Conflict"):
            await off_loop(store.apply, [export("a", port=8)])
    assert api.get("exports", "a")["spec"]["port"] == 7
    await eventually(lambda: store.get(export_key("a")).spec.port == 7, what="the change seen")


# --- what Kubernetes adds ----------------------------------------------------------------------


async def test_against_the_generated_crds_everything_the_store_writes_is_accepted(caplog):
    with KubeAPI(crds=crds()) as api:
        for namespace in (OWN, "prod"):
            api.create("namespaces", {"metadata": {"name": namespace}})
        store = KubernetesStore(load_access(api_url=api.url), watch_pods=False)
        await store.start()
        try:
            resources = parse_documents(ALL_KINDS)
            await off_loop(store.apply, resources)
            peer = ResourceKey.of("peer", "site-b")
            condition = {
                "type": "PeerReachable",
                "status": "True",
                "reason": "Heartbeat",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
            await off_loop(store.set_status, peer, {"conditions": [condition], "rttMs": 1.5})
            imp = ResourceKey.of("import", "db")
            await off_loop(store.set_status, imp, {"listen": "0.0.0.0:4000", "sources": []})
            assert [to_dict(r, include_status=False) for r in everything_of(store)] == [
                to_dict(r) for r in resources
            ]
            # What the schema cannot say, the models still refuse: a destination attribute
            # on the source side passes the CRD, and is left out by the store.
            wrong_side = {"matchLabels": {"export.clusterlink.net/name": "x"}}
            spec = {
                "action": "allow",
                "from": [{"workloadSelector": wrong_side}],
                "to": [{"workloadSelector": {}}],
            }
            api.create("accesspolicies", {"metadata": {"name": "wrong-side"}, "spec": spec})
            await eventually(
                lambda: "accesspolicy default/wrong-side is left out" in caplog.text,
                what="the policy refused",
            )
            assert [r.metadata.name for r in store.list("accesspolicies")] == ["allow-all"]
        finally:
            await store.aclose()


async def test_peers_are_read_from_the_own_namespace_only(api, store):
    gateways = {"gateways": [{"host": "h", "port": 1}]}
    api.create("peers", {"metadata": {"name": "mine", "namespace": OWN}, "spec": gateways})
    api.create("peers", {"metadata": {"name": "stray", "namespace": "default"}, "spec": gateways})
    await eventually(lambda: store.list("peers"), what="the peer of the own namespace")
    await asyncio.to_thread(api.create, "exports", {"metadata": {"name": "z"}, "spec": {}})
    await eventually(lambda: store.list("exports"), what="a later change")
    assert [key_of(p) for p in store.list("peers")] == [ResourceKey("Peer", "", "mine")]


async def test_an_update_keeps_what_other_clients_put_on_the_object(api, store):
    await off_loop(store.apply, [export("a")])
    marked = {"finalizers": ["example.com/keep"], "labels": {"seen": "yes"}}
    api.patch("exports", "a", {"metadata": marked})
    await eventually(
        lambda: store.get(export_key("a")).metadata.labels, what="the store seeing the change"
    )
    await off_loop(store.apply, [export("a", port=9)])
    stored = api.get("exports", "a")
    assert stored["spec"]["port"] == 9
    assert stored["metadata"]["finalizers"] == ["example.com/keep"]  # theirs: kept
    assert stored["metadata"]["labels"] == {}  # ours: as applied


async def test_changes_by_other_clients_are_seen(api, store):
    changed: list[frozenset[str]] = []
    threads: set[int] = set()

    def on_change(kinds: frozenset[str]) -> None:
        changed.append(kinds)
        threads.add(threading.get_ident())

    store.on_change = on_change
    revision = store.revision
    api.create("exports", {"metadata": {"name": "a"}, "spec": {"port": 1}})
    got = await eventually(lambda: store.list("exports"), what="the export")
    assert got[0].spec.port == 1
    assert store.revision > revision
    assert frozenset({"Export"}) in changed
    assert threads == {threading.get_ident()}  # called on the event loop


async def test_an_object_that_does_not_validate_is_left_out_and_logged_once(api, store, caplog):
    bad = {"metadata": {"name": "bad"}, "spec": {"host": "svc", "port": 70000}}
    api.create("exports", bad)
    api.create("exports", {"metadata": {"name": "good"}, "spec": {"port": 1}})
    await eventually(lambda: store.list("exports"), what="the valid export")
    api.patch("exports", "bad", {"metadata": {"labels": {"still": "bad"}}})
    api.create("exports", {"metadata": {"name": "later"}, "spec": {"port": 1}})
    await eventually(lambda: len(store.list("exports")) == 2, what="a later change")
    assert [r.metadata.name for r in store.list("exports")] == ["good", "later"]
    lines = [r.getMessage() for r in caplog.records if "export default/bad" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("export default/bad is left out: its object in the Kubernetes API")
    assert "spec.port: must be at most 65535" in lines[0]
    with pytest.raises(NotFoundError, match=r"does not validate .*; fix it or delete it"):
        store.get(export_key("bad"))
    api.patch("exports", "bad", {"spec": {"port": 80}})
    await eventually(lambda: len(store.list("exports")) == 3, what="the fixed export")


async def test_a_status_that_does_not_validate_costs_only_the_status(api, store, caplog):
    api.create("exports", {"metadata": {"name": "a"}, "spec": {"port": 1}})
    api.patch("exports", "a", {"status": {"made": "up"}}, subresource="status")
    found = await eventually(lambda: store.list("exports"), what="the export")
    assert found[0].status is None
    assert "export default/a: its status does not validate and is ignored" in caplog.text


async def test_writes_on_the_event_loop_are_refused(store):
    with pytest.raises(StoreError, match=r"on the event loop: .* asyncio\.to_thread"):
        store.apply([export("a")])


async def test_reads_go_on_while_the_api_is_away_and_writes_fail_clearly(api, store):
    await off_loop(store.apply, [export("a")])
    api.stop()
    assert [r.metadata.name for r in store.list("exports")] == ["a"]
    with pytest.raises(StoreError, match=f"cannot create export default/b: .*{api.url} is unreach"):
        await off_loop(store.apply, [export("b")])
    api.create("exports", {"metadata": {"name": "c"}, "spec": {"port": 1}})
    api.start()
    await eventually(lambda: len(store.list("exports")) == 2, what="the cache catching up")
    await off_loop(store.apply, [export("b")])
    assert [r.metadata.name for r in store.list("exports")] == ["a", "b", "c"]


async def test_a_store_starts_once(store):
    with pytest.raises(StoreError, match="started already"):
        await store.start()


async def test_start_says_when_the_api_does_not_answer():
    unreachable = load_access(api_url="http://127.0.0.1:9")
    store = KubernetesStore(
        unreachable, backoff=Backoff(initial_s=0.05, max_s=0.1), sync_timeout_s=0.5
    )
    with pytest.raises(StoreError, match=r"did not answer every list within 0\.5s; check that it"):
        await store.start()


# --- the controllers' queries ------------------------------------------------------------------


async def test_pods_are_found_by_address(api, store):
    def pod(name: str, ip: str, *, phase: str = "Running", host_network: bool = False) -> None:
        spec = {"containers": [], "hostNetwork": host_network, "serviceAccountName": "sa"}
        api.create("pods", {"metadata": {"name": name, "labels": {"app": name}}, "spec": spec})
        api.patch("pods", name, {"status": {"podIP": ip, "phase": phase}}, subresource="status")

    pod("web", "10.0.0.1")
    pod("node-agent", "10.0.0.2", host_network=True)
    pod("done", "10.0.0.3", phase="Succeeded")
    found = await eventually(lambda: store.pod_by_ip("10.0.0.1"), what="the pod")
    assert found.metadata is not None and found.metadata.name == "web"
    assert found.spec is not None and found.spec.serviceAccountName == "sa"
    assert store.pod_by_ip("10.0.0.2") is None  # host network: the node's address
    assert store.pod_by_ip("10.0.0.3") is None
    api.patch("pods", "web", {"status": {"podIP": "10.0.0.9"}}, subresource="status")
    await eventually(lambda: store.pod_by_ip("10.0.0.9"), what="the new address")
    assert store.pod_by_ip("10.0.0.1") is None
    api.delete("pods", "web")
    await eventually(lambda: store.pod_by_ip("10.0.0.9") is None, what="the pod gone")


async def test_services_and_the_lease_are_read_from_the_caches(api, store):
    api.create(
        "services",
        {"metadata": {"name": "db", "namespace": "prod"}, "spec": {"ports": [{"port": 5432}]}},
    )
    api.create(
        "leases",
        {
            "metadata": {"name": "clusterlink-gateway", "namespace": OWN},
            "spec": {"holderIdentity": "pod-1"},
        },
    )
    api.create(
        "leases", {"metadata": {"name": "clusterlink-gateway"}, "spec": {"holderIdentity": "other"}}
    )
    service = await eventually(lambda: store.service("prod", "db"), what="the service")
    assert service.spec is not None and service.spec.clusterIP
    assert [s.metadata.name for s in store.services("prod") if s.metadata] == ["db"]
    lease = await eventually(lambda: store.lease("clusterlink-gateway"), what="the lease")
    assert lease.spec is not None and lease.spec.holderIdentity == "pod-1"
    assert store.service("prod", "missing") is None


async def test_what_is_not_followed_is_an_error_to_ask_for(api):
    api.create("namespaces", {"metadata": {"name": OWN}})
    store = KubernetesStore(load_access(api_url=api.url), watch_pods=False)
    await store.start()
    try:
        with pytest.raises(StoreError, match="does not follow Pod objects"):
            store.pod_by_ip("10.0.0.1")
    finally:
        await store.aclose()

"""The emulated Kubernetes API, checked with plain HTTP: the rules the informers and the store
rely on must hold here first, or their tests would prove nothing.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from clusterlink.api.crds import crds
from tests.k8s.apiserver import KubeAPI, StatusError

pytestmark = pytest.mark.k8s

CL = "/apis/clusterlink.net/v1alpha1"
EXPORTS = f"{CL}/namespaces/default/exports"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def http(api: KubeAPI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        yield client


def export(name: str, port: int = 80, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"host": "svc", "port": port}, **extra}


def expect_status(response: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    """A refusal as the API server words it: a Status object, typed exactly application/json."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert (body["kind"], body["code"], body["reason"]) == ("Status", code, reason)
    return body


@contextmanager
def watching(http: httpx.Client, path: str, **params: str) -> Iterator[Iterator[dict[str, Any]]]:
    """A watch stream as decoded events; ``timeoutSeconds`` bounds it unless given."""
    query = {"watch": "true", "timeoutSeconds": "5", **params}
    with http.stream("GET", path, params=query) as response:
        assert response.status_code == 200
        yield (json.loads(line) for line in response.iter_lines() if line)


def summary(events: Iterator[dict[str, Any]], count: int) -> list[tuple[str, str]]:
    return [
        (event["type"], event["object"]["metadata"].get("name", event["object"].get("reason")))
        for _, event in zip(range(count), events, strict=False)
    ]


# --- objects ----------------------------------------------------------------------------------


def test_create_sets_the_server_fields_and_one_resource_version_counts_all_kinds(api, http):
    first = http.post(EXPORTS, json=export("a")).json()
    second = http.post("/api/v1/namespaces/default/services", json={"metadata": {"name": "s"}})
    assert second.status_code == 201
    metadata = first["metadata"]
    assert metadata["uid"] and metadata["creationTimestamp"].endswith("Z")
    assert metadata["generation"] == 1
    assert int(second.json()["metadata"]["resourceVersion"]) == int(metadata["resourceVersion"]) + 1
    assert api.resource_version == int(second.json()["metadata"]["resourceVersion"])
    assert first["apiVersion"] == "clusterlink.net/v1alpha1" and first["kind"] == "Export"


def test_create_of_an_existing_name_is_409_already_exists(http):
    http.post(EXPORTS, json=export("a"))
    body = expect_status(http.post(EXPORTS, json=export("a")), 409, "AlreadyExists")
    assert body["message"] == 'exports.clusterlink.net "a" already exists'


def test_a_missing_object_is_a_404_status(http):
    body = expect_status(http.get(f"{EXPORTS}/nothing"), 404, "NotFound")
    assert body["details"] == {"name": "nothing", "group": "clusterlink.net", "kind": "exports"}
    expect_status(http.delete(f"{EXPORTS}/nothing"), 404, "NotFound")
    expect_status(http.patch(f"{EXPORTS}/nothing", json={}, headers=MERGE), 404, "NotFound")


def test_a_namespaced_object_needs_its_namespace(api, http):
    path = f"{CL}/namespaces/prod/exports"
    body = expect_status(http.post(path, json=export("a")), 404, "NotFound")
    assert body["message"] == 'namespaces "prod" not found'
    api.create("namespaces", {"metadata": {"name": "prod"}})
    assert http.post(path, json=export("a")).status_code == 201


def test_names_and_scopes_are_checked(http):
    expect_status(http.post(EXPORTS, json=export("Not_A_Name")), 422, "Invalid")
    expect_status(
        http.post(EXPORTS, json={**export("a"), "metadata": {"name": "a", "namespace": "x"}}),
        400,
        "BadRequest",
    )
    policy = {"metadata": {"name": "p"}, "spec": {}}
    privileged = f"{CL}/privilegedaccesspolicies"
    expect_status(
        http.post(f"{CL}/namespaces/default/privilegedaccesspolicies", json=policy), 404, "NotFound"
    )
    created = http.post(privileged, json=policy).json()
    assert "namespace" not in created["metadata"]
    expect_status(http.get(f"{CL}/nothings"), 404, "NotFound")


def test_delete_answers_the_object_as_it_was(http):
    created = http.post(EXPORTS, json=export("a")).json()
    deleted = http.delete(f"{EXPORTS}/a")
    assert deleted.status_code == 200
    assert deleted.json() == created
    expect_status(http.get(f"{EXPORTS}/a"), 404, "NotFound")
    assert (
        http.post(EXPORTS, json=export("a")).json()["metadata"]["uid"] != created["metadata"]["uid"]
    )


def test_a_delete_precondition_that_fails_is_409(http):
    http.post(EXPORTS, json=export("a"))
    stale = {"preconditions": {"resourceVersion": "1"}}
    expect_status(http.request("DELETE", f"{EXPORTS}/a", json=stale), 409, "Conflict")


def test_finalizers_hold_a_deletion_until_they_are_removed(http):
    http.post(EXPORTS, json=export("a", metadata={"name": "a", "finalizers": ["x/y"]}))
    marked = http.delete(f"{EXPORTS}/a").json()
    assert marked["metadata"]["deletionTimestamp"]
    assert http.get(f"{EXPORTS}/a").status_code == 200
    released = http.patch(f"{EXPORTS}/a", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert released.status_code == 200
    expect_status(http.get(f"{EXPORTS}/a"), 404, "NotFound")


# --- updates ----------------------------------------------------------------------------------


def test_put_needs_the_current_resource_version(http):
    current = http.post(EXPORTS, json=export("a")).json()
    changed = {**current, "spec": {"host": "svc", "port": 81}}
    updated = http.put(f"{EXPORTS}/a", json=changed)
    assert updated.status_code == 200
    assert updated.json()["metadata"]["generation"] == 2
    expect_status(http.put(f"{EXPORTS}/a", json=changed), 409, "Conflict")
    no_version = {**changed, "metadata": {"name": "a"}}
    body = expect_status(http.put(f"{EXPORTS}/a", json=no_version), 422, "Invalid")
    assert "resourceVersion" in body["message"]


def test_an_update_that_changes_nothing_keeps_the_resource_version(api, http):
    current = http.post(EXPORTS, json=export("a")).json()
    again = http.put(f"{EXPORTS}/a", json=current).json()
    assert again["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    patched = http.patch(f"{EXPORTS}/a", json={"spec": {"port": 80}}, headers=MERGE).json()
    assert patched == current
    assert api.resource_version == int(current["metadata"]["resourceVersion"])


def test_generation_counts_spec_changes_only(http):
    http.post(EXPORTS, json=export("a"))
    labelled = http.patch(f"{EXPORTS}/a", json={"metadata": {"labels": {"x": "y"}}}, headers=MERGE)
    assert labelled.json()["metadata"]["generation"] == 1
    status = http.patch(f"{EXPORTS}/a/status", json={"status": {"ok": True}}, headers=MERGE)
    assert status.json()["metadata"]["generation"] == 1
    spec = http.patch(f"{EXPORTS}/a", json={"spec": {"port": 9}}, headers=MERGE)
    assert spec.json()["metadata"]["generation"] == 2


def test_status_is_written_only_through_its_subresource(http):
    created = http.post(EXPORTS, json=export("a", status={"forged": True})).json()
    assert "status" not in created
    status = http.patch(
        f"{EXPORTS}/a/status", json={"status": {"ok": 1}, "spec": {"port": 5}}, headers=MERGE
    ).json()
    assert status["status"] == {"ok": 1}
    assert status["spec"]["port"] == 80
    main = http.patch(
        f"{EXPORTS}/a", json={"status": {"ok": 2}, "spec": {"port": 6}}, headers=MERGE
    ).json()
    assert main["status"] == {"ok": 1}
    assert main["spec"]["port"] == 6
    replaced = http.put(f"{EXPORTS}/a/status", json={**main, "status": {"other": 3}}).json()
    assert replaced["status"] == {"other": 3}


def test_a_merge_patch_naming_a_stale_resource_version_is_409(http):
    http.post(EXPORTS, json=export("a"))
    patch = {"metadata": {"resourceVersion": "1"}, "spec": {"port": 1}}
    expect_status(http.patch(f"{EXPORTS}/a", json=patch, headers=MERGE), 409, "Conflict")


def test_patch_types(http):
    http.post(EXPORTS, json=export("a"))
    json_patch = [{"op": "replace", "path": "/spec/port", "value": 7}]
    patched = http.patch(
        f"{EXPORTS}/a", json=json_patch, headers={"Content-Type": "application/json-patch+json"}
    )
    assert patched.json()["spec"]["port"] == 7
    failing = [{"op": "test", "path": "/spec/port", "value": 8}]
    expect_status(
        http.patch(
            f"{EXPORTS}/a", json=failing, headers={"Content-Type": "application/json-patch+json"}
        ),
        422,
        "Invalid",
    )
    strategic = {"Content-Type": "application/strategic-merge-patch+json"}
    expect_status(
        http.patch(f"{EXPORTS}/a", json={}, headers=strategic), 415, "UnsupportedMediaType"
    )
    http.post("/api/v1/namespaces/default/services", json={"metadata": {"name": "s"}})
    labelled = http.patch(
        "/api/v1/namespaces/default/services/s",
        json={"metadata": {"labels": {"a": "b"}}},
        headers=strategic,
    )
    assert labelled.json()["metadata"]["labels"] == {"a": "b"}


def test_services_get_the_defaults_controllers_read(http):
    path = "/api/v1/namespaces/default/services"
    spec = {"ports": [{"port": 80}]}
    created = http.post(path, json={"metadata": {"name": "s"}, "spec": spec}).json()
    assert created["spec"]["type"] == "ClusterIP"
    assert created["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    cluster_ip = created["spec"]["clusterIP"]
    replaced = http.put(
        f"{path}/s", json={"metadata": {"name": "s"}, "spec": {"ports": [{"port": 81}]}}
    )
    assert replaced.json()["spec"]["clusterIP"] == cluster_ip
    external = {"metadata": {"name": "e"}, "spec": {"type": "ExternalName", "externalName": "x.y"}}
    assert "clusterIP" not in http.post(path, json=external).json()["spec"]


def test_custom_objects_are_validated_against_a_registered_schema(api, http):
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"port": {"type": "integer", "maximum": 65535}},
            }
        },
    }
    api.register_crd(
        {
            "spec": {
                "group": "clusterlink.net",
                "names": {"plural": "exports", "kind": "Export"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1alpha1",
                        "served": True,
                        "schema": {"openAPIV3Schema": schema},
                        "subresources": {"status": {}},
                    }
                ],
            }
        }
    )
    body = expect_status(http.post(EXPORTS, json=export("a", port=70000)), 422, "Invalid")
    assert "spec.port" in body["message"]
    assert http.post(EXPORTS, json=export("a")).status_code == 201
    expect_status(
        http.patch(f"{EXPORTS}/a", json={"spec": {"port": "x"}}, headers=MERGE), 422, "Invalid"
    )


def test_the_generated_crds_are_served_with_their_scopes_and_schemas():
    with KubeAPI(crds=crds()) as api, httpx.Client(base_url=api.url) as client:
        body = expect_status(client.post(EXPORTS, json=export("a", port=70000)), 422, "Invalid")
        assert "spec.port" in body["message"]
        peer = {"metadata": {"name": "b"}, "spec": {"gateways": [{"host": "h", "port": 1}]}}
        assert client.post(f"{CL}/namespaces/default/peers", json=peer).status_code == 201
        gateways: dict[str, Any] = {"spec": {"gateways": []}}
        expect_status(
            client.patch(f"{CL}/namespaces/default/peers/b", json=gateways, headers=MERGE),
            422,
            "Invalid",
        )
        policy = {"metadata": {"name": "p"}, "spec": {"action": "deny", "from": [], "to": []}}
        expect_status(client.post(f"{CL}/privilegedaccesspolicies", json=policy), 422, "Invalid")
        scopes = {r["name"]: r["namespaced"] for r in client.get(CL).json()["resources"]}
        assert scopes == {
            "peers": True,
            "peers/status": True,
            "exports": True,
            "exports/status": True,
            "imports": True,
            "imports/status": True,
            "accesspolicies": True,
            "privilegedaccesspolicies": False,
        }


# --- lists and selectors ----------------------------------------------------------------------


def test_a_list_carries_its_resource_version_and_is_sorted(api, http):
    api.create("namespaces", {"metadata": {"name": "a-first"}})
    http.post(EXPORTS, json=export("b"))
    http.post(EXPORTS, json=export("a"))
    http.post(f"{CL}/namespaces/a-first/exports", json=export("z"))
    listed = http.get(f"{CL}/exports").json()
    assert listed["kind"] == "ExportList"
    assert listed["metadata"]["resourceVersion"] == str(api.resource_version)
    names = [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]]
    assert names == [("a-first", "z"), ("default", "a"), ("default", "b")]
    assert [i["metadata"]["name"] for i in http.get(EXPORTS).json()["items"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=db", ["one", "two"]),
        ("app==db,tier=x", ["one"]),
        ("app!=db", ["three", "four"]),
        ("tier in (x, y)", ["one", "three"]),
        ("tier notin (x)", ["two", "three", "four"]),
        ("tier", ["one", "three"]),
        ("!tier", ["two", "four"]),
        ("app=db,!tier", ["two"]),
    ],
)
def test_label_selectors_filter_lists(api, http, selector, expected):
    for name, labels in [
        ("one", {"app": "db", "tier": "x"}),
        ("two", {"app": "db"}),
        ("three", {"app": "web", "tier": "y"}),
        ("four", {}),
    ]:
        api.create("exports", export(name, metadata={"name": name, "labels": labels}))
    listed = http.get(EXPORTS, params={"labelSelector": selector}).json()["items"]
    assert sorted(i["metadata"]["name"] for i in listed) == sorted(expected)


def test_field_selectors_find_a_pod_by_ip(api, http):
    for name, ip in [("p1", "10.0.0.1"), ("p2", "10.0.0.2")]:
        api.create("pods", {"metadata": {"name": name}, "spec": {"containers": []}})
        api.patch("pods", name, {"status": {"podIP": ip}}, subresource="status")
    pods = http.get("/api/v1/pods", params={"fieldSelector": "status.podIP=10.0.0.2"}).json()
    assert [p["metadata"]["name"] for p in pods["items"]] == ["p2"]
    assert pods["items"][0]["spec"]["serviceAccountName"] == "default"
    body = expect_status(
        http.get(EXPORTS, params={"fieldSelector": "spec.host=x"}), 400, "BadRequest"
    )
    assert "field label not supported" in body["message"]
    expect_status(http.get(EXPORTS, params={"labelSelector": "a in b"}), 400, "BadRequest")


def test_discovery_names_our_kinds(http):
    resources = http.get(CL).json()["resources"]
    scopes = {r["name"]: r["namespaced"] for r in resources}
    assert scopes["peers"] is True
    assert scopes["privilegedaccesspolicies"] is False
    assert scopes["exports/status"] is True
    assert "coordination.k8s.io" in {g["name"] for g in http.get("/apis").json()["groups"]}


# --- watches ----------------------------------------------------------------------------------


def test_a_watch_without_a_version_starts_with_the_current_objects(api, http):
    api.create("exports", export("a"))
    with watching(http, EXPORTS) as events:
        api.create("exports", export("b"))
        api.delete("exports", "a")
        assert summary(events, 3) == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_a_watch_from_a_version_gets_only_later_events_each_with_its_version(api, http):
    first = api.create("exports", export("a"))
    api.patch("exports", "a", {"spec": {"port": 1}})
    api.delete("exports", "a")
    version = first["metadata"]["resourceVersion"]
    with watching(http, EXPORTS, resourceVersion=version) as events:
        seen = [next(events), next(events)]
    assert [e["type"] for e in seen] == ["MODIFIED", "DELETED"]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
    assert versions == [int(version) + 1, int(version) + 2]


def test_a_watch_from_a_forgotten_version_gets_one_expired_event(api, http):
    first = api.create("exports", export("a"))
    api.create("exports", export("b"))
    api.compact()
    with watching(http, EXPORTS, resourceVersion=first["metadata"]["resourceVersion"]) as events:
        (event,) = list(events)
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    with watching(
        http, EXPORTS, resourceVersion=str(api.resource_version), timeoutSeconds="1"
    ) as events:
        assert list(events) == []  # up to date: nothing to replay, nothing expired


def test_the_history_is_bounded(http):
    with KubeAPI(history_limit=3) as small, httpx.Client(base_url=small.url) as client:
        created = [small.create("exports", export(f"e{i}")) for i in range(5)]
        too_old = created[0]["metadata"]["resourceVersion"]
        with watching(client, EXPORTS, resourceVersion=too_old) as events:
            assert next(events)["object"]["code"] == 410
        kept = created[1]["metadata"]["resourceVersion"]
        with watching(client, EXPORTS, resourceVersion=kept) as events:
            assert summary(events, 3) == [("ADDED", "e2"), ("ADDED", "e3"), ("ADDED", "e4")]


def test_a_watch_ends_after_its_timeout(api, http):
    started = time.monotonic()
    with watching(http, EXPORTS, resourceVersion="0", timeoutSeconds="1") as events:
        assert list(events) == []
    assert 0.9 <= time.monotonic() - started < 5


def test_expire_watches_ends_every_open_watch(api, http):
    with watching(http, EXPORTS, timeoutSeconds="60") as events:
        api.create("exports", export("a"))
        assert next(events)["type"] == "ADDED"
        api.expire_watches()
        assert list(events) == []


def test_a_selected_watch_sees_objects_enter_and_leave_the_selection(api, http):
    api.create("exports", export("a"))
    with watching(http, EXPORTS, labelSelector="app=db") as events:
        api.patch("exports", "a", {"metadata": {"labels": {"app": "db"}}})
        api.patch("exports", "a", {"spec": {"port": 1}})
        api.patch("exports", "a", {"metadata": {"labels": {"app": "web"}}})
        api.patch("exports", "a", {"spec": {"port": 2}})  # outside the selection: unseen
        api.create("exports", export("b", metadata={"name": "b", "labels": {"app": "db"}}))
        assert summary(events, 4) == [
            ("ADDED", "a"),
            ("MODIFIED", "a"),
            ("DELETED", "a"),
            ("ADDED", "b"),
        ]


def test_a_held_watch_resumes_after_the_hold_from_its_version(api, http):
    api.create("exports", export("a"))
    version = str(api.resource_version)
    with api.holding_watches(), watching(http, EXPORTS, resourceVersion=version) as events:
        api.delete("exports", "a")
        api.compact()
    with watching(http, EXPORTS, resourceVersion=version) as events:
        assert next(events)["object"]["code"] == 410


# --- the server going away --------------------------------------------------------------------


def test_stop_refuses_connections_and_start_serves_the_same_state_on_the_same_port(api, http):
    api.create("exports", export("a"))
    port = api.port
    with watching(http, EXPORTS, timeoutSeconds="60") as events:
        assert next(events)["type"] == "ADDED"
        api.stop()
        assert list(events) == []  # the open watch ended
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    api.create("exports", export("b"))  # the state lives on while no one can reach it
    api.start()
    assert api.port == port
    with httpx.Client(base_url=api.url) as fresh:
        names = [i["metadata"]["name"] for i in fresh.get(EXPORTS).json()["items"]]
    assert names == ["a", "b"]


# --- the synchronous test API -----------------------------------------------------------------


def test_the_test_api_refuses_as_http_would_and_counts_only_http_requests(api, http):
    api.create("exports", export("a"))
    with pytest.raises(StatusError) as caught:
        api.create("exports", export("a"))
    assert (caught.value.status, caught.value.reason) == (409, "AlreadyExists")
    assert str(caught.value) == '409 AlreadyExists: exports.clusterlink.net "a" already exists'
    stale = api.get("exports", "a")
    api.patch("exports", "a", {"spec": {"port": 1}})
    with pytest.raises(StatusError, match="Conflict"):
        api.replace("exports", stale)
    assert [o["metadata"]["name"] for o in api.objects("Export")] == ["a"]
    assert api.requests("exports", "list") == 0
    http.get(EXPORTS)
    assert api.requests("exports", "list") == 1

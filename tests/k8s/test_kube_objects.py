"""The mapping between resources and Kubernetes objects, without an API: where each kind
lives, what an update carries over, what is read back, and the status patches."""

from __future__ import annotations

from typing import Any

import pytest

from clusterlink.api import ResourceKey, parse_documents, to_dict
from clusterlink.errors import ValidationError
from clusterlink.store.kube_objects import decode, encode, key_in_model, merge_diff
from tests.k8s.apiserver import merge_patch

pytestmark = pytest.mark.k8s

HEAD = "apiVersion: clusterlink.net/v1alpha1\n"
PEER, EXPORT, POLICY = parse_documents(
    "---\n".join(
        HEAD + doc
        for doc in [
            "kind: Peer\nmetadata: {name: b}\nspec: {gateways: [{host: h, port: 1}]}\n",
            "kind: Export\nmetadata: {name: db, namespace: prod, labels: {a: b}}\n"
            "spec: {host: h, port: 5}\n",
            "kind: PrivilegedAccessPolicy\nmetadata: {name: p}\nspec: {action: deny, "
            "from: [{workloadSelector: {}}], to: [{workloadSelector: {}}]}\n",
        ]
    )
)


def test_each_kind_lives_where_the_docs_say():
    assert encode(PEER, "cl-ns")["metadata"]["namespace"] == "cl-ns"
    assert encode(EXPORT, "cl-ns")["metadata"]["namespace"] == "prod"
    assert "namespace" not in encode(POLICY, "cl-ns")["metadata"]
    assert key_in_model("Peer", "cl-ns", "b") == ResourceKey("Peer", "", "b")
    assert key_in_model("Export", "prod", "db") == ResourceKey("Export", "prod", "db")


def test_an_update_carries_over_what_others_wrote_and_replaces_what_is_ours():
    theirs = {"uid": "u-1", "resourceVersion": "7", "finalizers": ["example.com/keep"]}
    base = {
        "metadata": {
            "name": "db",
            "namespace": "prod",
            "labels": {"old": "label"},
            "managedFields": [{"manager": "kubectl"}],
            **theirs,
        },
        "spec": {"host": "old"},
        "status": {"conditions": []},
    }
    assert encode(EXPORT, "cl-ns", base=base) == {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": "Export",
        "metadata": {
            "name": "db",
            "namespace": "prod",
            "labels": {"a": "b"},
            "annotations": {},
            **theirs,
        },
        "spec": {"host": "h", "port": 5},
    }


def test_what_is_read_back_is_the_resource_not_the_api_s_bookkeeping():
    obj = {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": "Peer",
        "metadata": {"name": "b", "namespace": "cl-ns", "uid": "u", "generation": 3},
        "spec": {"gateways": [{"host": "h", "port": 1}]},
        "status": {"reachable": True},
    }
    resource, problem = decode("Peer", obj)
    assert problem is None
    assert resource.metadata.namespace == ""
    assert to_dict(resource)["status"] == {"conditions": [], "reachable": True, "labels": {}}


def test_a_bad_status_costs_the_status_and_a_bad_spec_the_resource():
    obj: dict[str, Any] = {"metadata": {"name": "db", "namespace": "prod"}, "spec": {"port": 5}}
    resource, problem = decode("Export", {**obj, "status": {"made": "up"}})
    assert resource.status is None
    assert problem is not None and "status.made: unknown field" in problem
    with pytest.raises(ValidationError, match=r"spec\.port"):
        decode("Export", {**obj, "spec": {"port": "5"}})
    with pytest.raises(ValidationError, match="spec: required"):
        decode("Export", {"metadata": obj["metadata"]})


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        (None, {"a": 1}, {"a": 1}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"labels": {"x": "1", "y": "2"}}, {"labels": {"x": "1"}}, {"labels": {"y": None}}),
        ({"list": [1, 2]}, {"list": [2]}, {"list": [2]}),  # lists are replaced whole
        ({"a": {"b": 1}}, {"a": 5}, {"a": 5}),
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, None, None),  # no status at all
    ],
)
def test_merge_diff_is_the_patch_from_old_to_new(old, new, patch):
    assert merge_diff(old, new) == patch
    assert merge_patch(old, patch) == new  # what the API makes of it (RFC 7386)

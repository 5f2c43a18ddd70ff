"""Documents against the CRDs' schemas: the original ClusterLink's resource YAML is accepted
where the original accepts it, invalid documents are refused by the CRD as by the model (the
CEL rule of Import names read as what it says: CEL cannot run here), and the README's
Kubernetes examples fit both."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterlink.api import resource_from_dict, to_dict
from clusterlink.api.crds import PEER_GATEWAYS_RULE
from clusterlink.errors import ValidationError
from tests.unit._kube_schemas import crd_schema, import_name_limit, schema_errors

README = Path(__file__).resolve().parents[2] / "README.md"

ORIGINAL_FORMS = """
apiVersion: clusterlink.net/v1alpha1
kind: Peer
metadata: {name: server1, namespace: clusterlink-system}
spec:
  gateways:
    - host: 10.0.0.7
      port: 30443
---
apiVersion: clusterlink.net/v1alpha1
kind: Export
metadata: {name: reviews, namespace: default}
spec:
  port: 9080
---
apiVersion: clusterlink.net/v1alpha1
kind: Export
metadata: {name: db, namespace: shop}
spec: {host: db.shop.svc.cluster.local, port: 5432}
---
apiVersion: clusterlink.net/v1alpha1
kind: Import
metadata: {name: reviews, namespace: default}
spec:
  port: 9080
  sources:
    - {exportName: reviews, exportNamespace: default, peer: server1}
    - {exportName: reviews, exportNamespace: default, peer: server2}
  lbScheme: static
---
apiVersion: clusterlink.net/v1alpha1
kind: Import
metadata: {name: iperf3-server, namespace: default}
spec:
  port: 5000
  targetPort: 41000
  sources:
    - {exportName: iperf3-server, exportNamespace: default, peer: server}
---
apiVersion: clusterlink.net/v1alpha1
kind: AccessPolicy
metadata: {name: deny-from-gw, namespace: default}
spec:
  action: deny
  from: [{workloadSelector: {matchLabels: {peer.clusterlink.net/name: peer3}}}]
  to: [{workloadSelector: {}}]
---
apiVersion: clusterlink.net/v1alpha1
kind: AccessPolicy
metadata: {name: allow-firefox, namespace: default}
spec:
  action: allow
  from:
    - workloadSelector:
        matchExpressions:
          - {key: client.clusterlink.net/labels.app, operator: In, values: [firefox]}
  to: [{workloadSelector: {matchLabels: {export.clusterlink.net/name: openspeedtest}}}]
---
apiVersion: clusterlink.net/v1alpha1
kind: PrivilegedAccessPolicy
metadata: {name: deny-peer3}
spec:
  action: deny
  from: [{workloadSelector: {matchLabels: {peer.clusterlink.net/name: peer3}}}]
  to: [{workloadSelector: {}}]
"""


def _original(index: int) -> dict[str, Any]:
    doc: dict[str, Any] = list(yaml.safe_load_all(ORIGINAL_FORMS))[index]
    return doc


def _name(index: int) -> str:
    doc = _original(index)
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("index", range(8), ids=_name)
def test_the_originals_documents_fit_the_crds(index: int) -> None:
    doc = _original(index)

    assert schema_errors(crd_schema(doc["kind"]), doc) == []


@pytest.mark.parametrize("index", range(8), ids=_name)
def test_what_the_gateway_writes_fits_the_crds(index: int) -> None:
    """A document after the model's defaults, with a status as the gateway writes one."""
    resource = resource_from_dict(_original(index))
    doc = to_dict(resource)
    condition = {
        "type": "Valid",
        "status": "True",
        "reason": "Verified",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    if doc["kind"] in ("Peer", "Export", "Import"):
        doc["status"] = {"conditions": [condition]}
    if doc["kind"] == "Peer":
        doc["status"] |= {"reachable": True, "labels": {"region": "eu"}, "rttMs": 1.5}

    assert schema_errors(crd_schema(doc["kind"]), doc) == []


def _changed(index: int, path: str, value: Any) -> dict[str, Any]:
    doc = _original(index)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


INVALID = [
    ("import-port", _changed(3, "spec.port", 70000)),
    ("import-target-port", _changed(4, "spec.targetPort", 70000)),
    ("export-port", _changed(1, "spec.port", 70000)),
    ("negative-port", _changed(1, "spec.port", -1)),
    ("gateway-port", _changed(0, "spec.gateways.0.port", 70000)),
    ("lb-scheme", _changed(3, "spec.lbScheme", "foo")),
    ("action", _changed(5, "spec.action", "permit")),
    ("operator", _changed(6, "spec.from.0.workloadSelector.matchExpressions.0.operator", "Is")),
    ("no-sources", _changed(3, "spec.sources", [])),
    ("host-with-space", _changed(2, "spec.host", "db shop")),
    ("source-peer", _changed(3, "spec.sources.0.peer", "Server_1")),
    ("unknown-field", _changed(3, "spec.lbSchema", "random")),
    ("workload-sets", _changed(5, "spec.from.0.workloadSets", ["a"])),
]


@pytest.mark.parametrize(("name", "doc"), INVALID, ids=[name for name, _ in INVALID])
def test_invalid_documents_are_refused_by_the_crd_as_by_the_model(
    name: str, doc: dict[str, Any]
) -> None:
    assert schema_errors(crd_schema(doc["kind"]), doc) != []
    with pytest.raises(ValidationError):
        resource_from_dict(doc)


@pytest.mark.parametrize(("length", "accepted"), [(63, True), (64, False)])
def test_an_import_name_over_63_characters_is_refused_by_the_cel_rule_and_the_model(
    length: int, accepted: bool
) -> None:
    doc = _original(3)
    doc["metadata"]["name"] = "i" * length
    (rule,) = crd_schema("Import")["x-kubernetes-validations"]

    assert (len(doc["metadata"]["name"]) <= import_name_limit(rule["rule"])) is accepted
    assert "63" in rule["message"]
    if accepted:
        resource_from_dict(doc)
    else:
        with pytest.raises(ValidationError, match="cannot exceed 63"):
            resource_from_dict(doc)


@pytest.mark.parametrize(
    ("spec", "accepted"),
    [
        ({"gateways": []}, False),
        ({}, False),
        ({"gateways": [], "dialsIn": False}, False),
        ({"dialsIn": True}, True),
        ({"gateways": [], "dialsIn": True}, True),
        ({"gateways": [{"host": "b.example.com", "port": 443}]}, True),
    ],
)
def test_a_peer_without_gateways_must_dial_in_by_the_cel_rule_and_the_model(
    spec: dict[str, Any], accepted: bool
) -> None:
    doc = _original(0)
    doc["spec"] = spec
    (rule,) = crd_schema("Peer")["x-kubernetes-validations"]

    assert rule == PEER_GATEWAYS_RULE  # the rule the emulated API server evaluates
    assert schema_errors(crd_schema("Peer"), doc) == []  # the schema leaves it to the rule
    if accepted:
        resource_from_dict(doc)
    else:
        with pytest.raises(ValidationError, match="unless it dials in"):
            resource_from_dict(doc)


def test_lb_scheme_defaults_to_round_robin_in_the_crd_as_in_the_model() -> None:
    lb = crd_schema("Import")["properties"]["spec"]["properties"]["lbScheme"]

    assert lb["default"] == "round-robin"
    assert to_dict(resource_from_dict(_original(4)))["spec"]["lbScheme"] == "round-robin"


def _readme_kubernetes_documents() -> list[dict[str, Any]]:
    readme = README.read_text()
    section = readme.split("\n## Kubernetes\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def test_the_readmes_kubernetes_examples_fit_the_crds_and_the_models() -> None:
    docs = _readme_kubernetes_documents()

    assert {doc["kind"] for doc in docs} >= {"Peer", "Export", "Import", "AccessPolicy"}
    for doc in docs:
        assert schema_errors(crd_schema(doc["kind"]), doc) == [], doc["metadata"]["name"]
        resource_from_dict(doc)

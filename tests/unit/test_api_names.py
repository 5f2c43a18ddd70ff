"""Naming rules: the same names Kubernetes accepts, and clear refusals for the rest."""

import pytest

from clusterlink.api import validate_peer_name
from clusterlink.api.documents import resource_from_dict
from clusterlink.errors import ValidationError
from clusterlink.protocol import ExportRef


def export(
    name: str = "db", namespace: str = "default", labels: object = None
) -> dict[str, object]:
    return {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": "Export",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"host": "127.0.0.1", "port": 5432},
    }


@pytest.mark.parametrize("name", ["db", "a", "my-db.v2", "0x", "a" * 253, "a-b.c-d"])
def test_dns_subdomain_names_are_accepted(name):
    assert resource_from_dict(export(name=name)).metadata.name == name


@pytest.mark.parametrize(
    "name", ["", "DB", "my_db", "-db", "db-", "db.", ".db", "a b", "a" * 254, "é"]
)
def test_other_names_are_refused_at_metadata_name(name):
    with pytest.raises(ValidationError) as caught:
        resource_from_dict(export(name=name))
    assert caught.value.field == "metadata.name"


@pytest.mark.parametrize("namespace", ["", "Prod", "a.b", "a" * 64, "-x"])
def test_namespace_must_be_a_dns_label(namespace):
    with pytest.raises(ValidationError) as caught:
        resource_from_dict(export(namespace=namespace))
    assert caught.value.field == "metadata.namespace"


@pytest.mark.parametrize(
    "labels",
    [
        {"app": "db"},
        {"app.kubernetes.io/name": "db"},
        {"peer.clusterlink.net/labels.env": "prod"},
        {"A_b.c-D": ""},
        {"k": "V_1.x-y"},
    ],
)
def test_kubernetes_label_syntax_is_accepted(labels):
    assert resource_from_dict(export(labels=labels)).metadata.labels == labels


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        ({"a b": "x"}, "label key 'a b'"),
        ({"/x": "y"}, "prefix"),
        ({"Bad_Prefix/x": "y"}, "prefix"),
        ({"p/": "y"}, "label key 'p/'"),
        ({"k" * 64: "y"}, "label key"),
        ({"k": "-v"}, "label 'k': the value '-v'"),
        ({"k": "v" * 64}, "label 'k'"),
    ],
)
def test_bad_labels_name_the_offending_key(labels, words):
    with pytest.raises(ValidationError) as caught:
        resource_from_dict(export(labels=labels))
    assert caught.value.field == "metadata.labels"
    assert words in str(caught.value)


def test_label_values_must_be_strings():
    with pytest.raises(ValidationError) as caught:
        resource_from_dict(export(labels={"replicas": 3}))
    assert caught.value.field == "metadata.labels.replicas"


@pytest.mark.parametrize("name", ["b", "peer-b", "b.site1.example", "x" * 63])
def test_peer_names_are_dns_label_sequences(name):
    assert validate_peer_name(name) == name


@pytest.mark.parametrize("name", ["", "B", "b_1", "x" * 64, "a." + "x" * 64, "a..b", "b."])
def test_peer_names_outside_dns_are_refused_with_a_message(name):
    with pytest.raises(ValidationError, match="must be a DNS name"):
        validate_peer_name(name)


def test_a_name_the_api_accepts_is_one_the_peer_protocol_carries() -> None:
    """One DNS rule for both: a resource name with a label of 64 characters is a valid
    Kubernetes name (no per-label limit in a subdomain), so an Export of that name must be
    reachable by a CONNECT, not refused by the wire format."""
    name = "a" * 64 + ".example"
    export = resource_from_dict(
        {
            "apiVersion": "clusterlink.net/v1alpha1",
            "kind": "Export",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"host": "127.0.0.1", "port": 80},
        }
    )
    assert str(ExportRef(export.metadata.namespace, export.metadata.name)) == f"default/{name}"

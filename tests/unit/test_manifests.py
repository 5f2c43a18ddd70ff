"""The objects of `deploy peer` (clusterlink.manifests), built in-process: valid for the
Kubernetes API, least privilege, unprivileged, and in step with what the gateway expects."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pytest

from clusterlink.api.crds import crds
from clusterlink.controlplane.import_services import GATEWAY_POD_LABELS
from clusterlink.errors import ValidationError
from clusterlink.ids import PeerName
from clusterlink.kube.leader import LEASE_NAME
from clusterlink.manifests import (
    DEFAULT_IMAGE,
    PEER_DIR_MOUNT,
    RUN_AS_UID,
    PeerDeployment,
    peer_manifests,
)
from tests.unit._kube_schemas import check_object

FILES = {"cert.pem": b"CERT\n", "key.pem": b"KEY\n", "ca.pem": b"CA\n"}


def build(**settings: Any) -> list[dict[str, Any]]:
    return peer_manifests(PeerDeployment(peer=PeerName("site-a"), **settings), FILES)


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (gateway,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(gateway, dict)
    return gateway


SETTINGS = [
    {},
    {"ingress": "none"},
    {"ingress": "NodePort", "ingress_port": 30443},
    {"ingress": "LoadBalancer", "ingress_port": 8443},
    {"replicas": 3, "labels": {"region": "eu", "tier": "edge"}, "namespace": "cl"},
    {"log_level": "debug", "image": "registry.example/cl:dev"},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=repr)
def test_every_object_is_valid_for_the_kubernetes_api(settings: dict[str, Any]) -> None:
    for obj in build(**settings):
        check_object(obj)


def test_the_checker_refuses_an_unknown_field() -> None:
    """So that the test above can fail: strict mode, as kubectl's field validation."""
    deployment = one(build(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}

    with pytest.raises(kubernetes_validate.ValidationError, match="securityContex"):
        check_object(deployment)


def test_objects_come_in_the_order_kubectl_apply_needs() -> None:
    kinds = [obj["kind"] for obj in build()]

    assert kinds == [
        "Namespace",
        *["CustomResourceDefinition"] * 5,
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Secret",
        "Deployment",
        "Service",
    ]


def test_the_crds_are_the_generated_ones() -> None:
    assert [obj for obj in build() if obj["kind"] == "CustomResourceDefinition"] == crds()


def test_namespaced_objects_live_in_clusterlinks_namespace() -> None:
    objects = build(namespace="cl-east")

    assert one(objects, "Namespace")["metadata"]["name"] == "cl-east"
    for obj in objects:
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment"):
            assert obj["metadata"]["namespace"] == "cl-east", obj["kind"]


def test_the_secret_holds_the_gateways_files_and_no_admin_key() -> None:
    secret = one(build(), "Secret")

    assert secret["type"] == "Opaque"
    assert {name: base64.b64decode(data) for name, data in secret["data"].items()} == FILES


def test_the_cluster_role_grants_exactly_what_the_gateway_needs() -> None:
    """Widening any rule (a verb, a resource, a group) must fail here, on purpose."""
    rules = one(build(), "ClusterRole")["rules"]

    assert rules == [
        {
            "apiGroups": ["clusterlink.net"],
            "resources": [
                "peers",
                "exports",
                "imports",
                "accesspolicies",
                "privilegedaccesspolicies",
            ],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["clusterlink.net"],
            "resources": ["peers/status", "exports/status", "imports/status"],
            "verbs": ["patch", "update"],
        },
        {"apiGroups": ["clusterlink.net"], "resources": ["imports"], "verbs": ["patch", "update"]},
        {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["create", "update", "patch", "delete"],
        },
    ]


def test_the_role_grants_only_the_lease_of_leader_election() -> None:
    objects = build()
    role = one(objects, "Role")

    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [LEASE_NAME],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]


def test_the_bindings_give_the_roles_to_the_gateways_service_account() -> None:
    objects = build(namespace="cl")
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]

    assert pod["serviceAccountName"] == account
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        bound = one(objects, binding)
        assert bound["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "cl"}]
        assert bound["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role,
            "name": one(objects, role)["metadata"]["name"],
        }


def test_cluster_wide_names_carry_the_namespace_so_two_peers_can_share_a_cluster() -> None:
    east = one(build(namespace="east"), "ClusterRole")["metadata"]["name"]
    west = one(build(namespace="west"), "ClusterRole")["metadata"]["name"]

    assert east != west


def test_the_gateway_runs_unprivileged_on_a_read_only_root() -> None:
    objects = build()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]

    assert pod["securityContext"] == {
        "fsGroup": RUN_AS_UID,
        "runAsGroup": RUN_AS_UID,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert RUN_AS_UID >= 1000  # no system user of the image's distribution
    assert container(objects)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


def test_the_secret_is_the_read_only_peer_directory_and_only_tmp_is_writable() -> None:
    objects = build()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container(objects)["volumeMounts"]}

    assert mounts[PEER_DIR_MOUNT]["readOnly"] is True
    assert volumes[mounts[PEER_DIR_MOUNT]["name"]]["secret"] == {
        "secretName": one(objects, "Secret")["metadata"]["name"],
        "defaultMode": 0o440,  # readable by the group the pod's fsGroup makes it
    }
    writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
    assert writable == {"/tmp"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, ["--log-level", "info"]),
        ({"log_level": "debug"}, ["--log-level", "debug"]),
        (
            {"labels": {"region": "eu", "tier": "edge"}},
            ["--log-level", "info", "--label", "region=eu", "--label", "tier=edge"],
        ),
    ],
)
def test_the_gateway_runs_in_kubernetes_mode_on_the_mounted_peer_directory(
    settings: dict[str, Any], expected: list[str]
) -> None:
    args = container(build(namespace="cl", **settings))["args"]

    assert args == [
        "gateway",
        "run",
        "--kubernetes",
        "--namespace",
        "cl",
        "--peer-dir",
        PEER_DIR_MOUNT,
        "--listen",
        "0.0.0.0:8443",
        "--import-host",
        "0.0.0.0",
        "--metrics-listen",
        "0.0.0.0:9090",
        *expected,
    ]


def test_probes_ask_the_metrics_endpoint_that_the_gateway_serves() -> None:
    gateway = container(build())
    ports = {port["name"]: port["containerPort"] for port in gateway["ports"]}

    assert ports == {"peer": 8443, "metrics": 9090}
    for probe in ("readinessProbe", "livenessProbe"):
        assert gateway[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_requests_resources_and_limits_memory_only() -> None:
    resources = container(build())["resources"]

    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"memory"}


def test_image_and_replicas_are_as_asked() -> None:
    assert container(build())["image"] == DEFAULT_IMAGE
    assert container(build(image="r.example/cl:1"))["image"] == "r.example/cl:1"
    assert one(build(replicas=3), "Deployment")["spec"]["replicas"] == 3


def test_the_pods_carry_the_label_that_import_services_select() -> None:
    objects = build()
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert deployment["spec"]["selector"] == {"matchLabels": GATEWAY_POD_LABELS}
    assert GATEWAY_POD_LABELS.items() <= pod_labels.items()
    assert one(objects, "Service")["spec"]["selector"] == GATEWAY_POD_LABELS


@pytest.mark.parametrize(
    ("settings", "kind", "port"),
    [
        ({"ingress": "none"}, "ClusterIP", {"port": 443}),
        ({"ingress": "none", "ingress_port": 9443}, "ClusterIP", {"port": 9443}),
        ({"ingress": "NodePort"}, "NodePort", {"port": 443}),
        ({"ingress": "NodePort", "ingress_port": 30443}, "NodePort", {"nodePort": 30443}),
        ({"ingress": "LoadBalancer"}, "LoadBalancer", {"port": 443}),
        ({"ingress": "LoadBalancer", "ingress_port": 8443}, "LoadBalancer", {"port": 8443}),
    ],
    ids=repr,
)
def test_the_peer_service_is_of_the_ingress_kind_asked(
    settings: dict[str, Any], kind: str, port: Mapping[str, int]
) -> None:
    spec = one(build(**settings), "Service")["spec"]
    (service_port,) = spec["ports"]

    assert spec["type"] == kind
    assert port.items() <= service_port.items()
    assert (service_port["targetPort"], service_port["protocol"]) == ("peer", "TCP")


def test_a_peer_name_too_long_for_a_label_value_is_left_out_of_the_labels() -> None:
    name = ".".join(["a" * 40] * 3)
    objects = peer_manifests(PeerDeployment(peer=PeerName(name)), FILES)

    assert "app.kubernetes.io/instance" not in one(objects, "Deployment")["metadata"]["labels"]
    for obj in objects:
        check_object(obj)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"namespace": "Cluster_Link"}, "namespace"),
        ({"ingress": "Ingress"}, "ingress"),
        ({"ingress_port": 70000}, "ingress_port"),
        ({"replicas": 0}, "replicas"),
        ({"image": "has space:1"}, "image"),
    ],
    ids=repr,
)
def test_settings_the_api_server_would_refuse_are_refused_first(
    settings: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        PeerDeployment(peer=PeerName("site-a"), **settings)

    assert caught.value.field == field


def test_the_files_of_the_gateway_must_all_be_given() -> None:
    with pytest.raises(ValueError, match=r"key\.pem"):
        peer_manifests(PeerDeployment(peer=PeerName("a")), {"cert.pem": b"", "ca.pem": b""})


def test_the_lease_the_role_names_is_the_one_the_gateway_takes() -> None:
    from clusterlink.manifests import LEASE_NAME as GRANTED

    assert GRANTED == LEASE_NAME

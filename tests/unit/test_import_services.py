"""The Services that stand for Imports in Kubernetes mode (pure: manifests as dicts)."""

from __future__ import annotations

from typing import Any

from clusterlink.api import Import, resource_from_dict
from clusterlink.controlplane.import_services import (
    desired_services,
    import_of_service,
    ownership,
    system_service_name,
)
from clusterlink.ids import NamespacedName

NS = "clusterlink-system"


def an_import(
    name: str, namespace: str, *, port: int = 80, target_port: int = 5000, protocol: str = "TCP"
) -> Import:
    spec = {"port": port, "targetPort": target_port, "sources": [{"peer": "b"}]}
    resource = resource_from_dict(
        {
            "apiVersion": "clusterlink.net/v1alpha1",
            "kind": "Import",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**spec, "protocol": protocol},
        }
    )
    assert isinstance(resource, Import)
    return resource


def test_an_import_in_clusterlinks_namespace_is_one_clusterip_service_of_its_name() -> None:
    (service,) = desired_services(an_import("web", NS), NS)
    assert service.key == NamespacedName(NS, "web")
    spec: dict[str, Any] = dict(service.manifest["spec"])
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [{"name": "tcp", "protocol": "TCP", "port": 80, "targetPort": 5000}]
    assert spec["selector"] == {"app.kubernetes.io/name": "clusterlink"}


def test_a_udp_import_is_a_service_with_a_udp_port() -> None:
    (service,) = desired_services(an_import("dns", NS, port=53, protocol="UDP"), NS)
    ports = service.manifest["spec"]["ports"]
    assert ports == [{"name": "udp", "protocol": "UDP", "port": 53, "targetPort": 5000}]


def test_an_import_elsewhere_is_a_system_service_and_an_externalname_of_its_name() -> None:
    system, user = desired_services(an_import("web", "shop"), NS)
    assert system.key == NamespacedName(NS, system_service_name(NamespacedName("shop", "web")))
    assert system.manifest["spec"]["type"] == "ClusterIP"
    assert user.key == NamespacedName("shop", "web")
    assert user.manifest["spec"] == {
        "type": "ExternalName",
        "externalName": f"{system.key.name}.{NS}.svc.cluster.local",
    }


def test_system_names_are_unique_dns_labels_even_for_the_longest_names() -> None:
    long_a = NamespacedName("n" * 63, "i" * 63)
    long_b = NamespacedName("n" * 63, "i" * 62 + "j")
    names = {system_service_name(long_a), system_service_name(long_b)}
    assert len(names) == 2
    assert all(len(name) <= 63 and name == name.lower() for name in names)


def test_managed_services_say_whose_they_are_and_others_are_foreign() -> None:
    system, user = desired_services(an_import("web", "shop"), NS)
    assert import_of_service(system.manifest) == NamespacedName("shop", "web")
    assert import_of_service(user.manifest) == NamespacedName("shop", "web")
    assert ownership(None, user) == "missing"
    assert ownership(user.manifest, user) == "ours"
    users_own = {"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}}}
    assert ownership(users_own, user) == "foreign"
    (other,) = desired_services(an_import("web", NS), NS)
    assert ownership(other.manifest, system) == "foreign"  # another Import's Service

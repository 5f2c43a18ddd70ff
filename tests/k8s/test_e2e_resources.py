"""Kubernetes mode end to end: two emulated clusters, a gateway in each, resources applied as
with kubectl, clients in pods. The original project's e2e cases, one test each:

connectivity (TestConnectivity), an Export without host whose Service comes and goes
(TestExportServiceNotExist, TestExportHost), a target port two Imports want
(TestImportConflictingTargetPort), a Service of the Import's name that is not ours
(TestImportConflictingService), an Import in a namespace of its own (TestImportUnprivileged-
Namespace), deleting an Import frees its port and Services (TestImportDelete), and an Import
name over 63 characters (TestImportInvalidName).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from clusterlink.controlplane.import_services import system_service_name
from clusterlink.ids import NamespacedName
from tests.integration.gateways import Fabric
from tests.integration.waiting import wait_until
from tests.k8s.apirules import StatusError
from tests.k8s.sites import NS, Client, KubeSite, allow_all, export, import_

pytestmark = pytest.mark.k8s


@dataclass
class Clusters:
    a: KubeSite  # imports
    b: KubeSite  # exports


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    root = tmp_path_factory.mktemp("k8s-resources")
    fabric = Fabric(root, "fab")
    a = KubeSite("a", fabric, root)
    try:
        b = KubeSite("b", fabric, root)
    except BaseException:
        a.close()
        raise
    try:
        a.apply(b.as_peer(), allow_all(NS))
        b.apply(a.as_peer(), allow_all(NS))
        yield Clusters(a, b)
    finally:
        a.close()
        b.close()


def test_connectivity(clusters: Clusters) -> None:
    """An Export with a host at b, its Import at a: a client in a pod at a reaches b's server."""
    a, b = clusters.a, clusters.b
    server = b.serve("web", NS, service=False)
    b.apply(export("web", NS, host=server.host, port=server.port))
    a.apply(import_("web", NS, [("b", "web", NS)]))
    client = a.pod("client", NS)

    address = a.import_address("web", NS)
    assert client.ask(address).name == "b"
    a.wait_condition("imports", "web", NS, "ImportServiceValid", True)
    a.wait_condition("imports", "web", NS, "ImportTargetPortValid", True)
    service = a.get("services", "web", NS)
    assert service is not None
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == address[1]


def test_an_export_without_host_is_its_service_and_follows_it(clusters: Clusters) -> None:
    """No host: the Service of the Export's name. ExportValid is False while it does not exist,
    True once it does (and the tunnel reaches it at its cluster IP), False when it is gone."""
    a, b = clusters.a, clusters.b
    b.apply(export("svc", NS))  # no host, no port: the Service's
    b.wait_condition("exports", "svc", NS, "ExportValid", False)
    a.apply(import_("svc", NS, [("b", "svc", NS)]))
    client = a.pod("svc-client", NS)
    address = a.import_address("svc", NS)
    assert client.ask(address).end == "reset"  # the target has no service to dial yet

    b.serve("svc", NS)  # the workload and its Service
    b.wait_condition("exports", "svc", NS, "ExportValid", True)
    wait_until(lambda: client.ask(address).name == "b", what="the export's service is reached")

    b.delete("services", "svc", NS)
    found = b.wait_condition("exports", "svc", NS, "ExportValid", False)
    assert "service clusterlink-system/svc does not exist" in found["message"]
    wait_until(lambda: client.ask(address).end == "reset", what="no service: the client is reset")


def test_two_imports_wanting_one_target_port(clusters: Clusters) -> None:
    a = clusters.a
    a.apply(import_("imp1", NS, [("b", "x", NS)], target_port=1234))
    a.wait_condition("imports", "imp1", NS, "ImportServiceValid", True)
    a.apply(import_("imp2", NS, [("b", "x", NS)], target_port=1234))

    a.wait_condition("imports", "imp2", NS, "ImportServiceValid", False)
    port = a.wait_condition("imports", "imp2", NS, "ImportTargetPortValid", False)
    assert port["message"] == "port 1234 is already in use by import clusterlink-system/imp1"
    assert a.get("services", "imp2", NS) is None

    a.apply(import_("imp2", NS, [("b", "x", NS)], target_port=1235))
    a.wait_condition("imports", "imp2", NS, "ImportServiceValid", True)
    a.wait_condition("imports", "imp2", NS, "ImportTargetPortValid", True)
    assert a.get("services", "imp2", NS) is not None
    # It is served, and resets a client: its source's export does not exist at b.
    assert a.pod("imp2-client", NS).ask(a.import_address("imp2", NS)).end == "reset"


def test_a_service_of_the_imports_name_that_is_not_ours(clusters: Clusters) -> None:
    """A user's Service is never overwritten: the Import says why it has none. Made ours (by
    its labels) it is taken over; deleted, it is created again; marked someone else's again,
    the Import is invalid again."""
    a = clusters.a
    a.api.create(
        "services",
        {"metadata": {"name": "taken", "namespace": NS}, "spec": {"ports": [{"port": 80}]}},
    )
    a.apply(import_("taken", NS, [("b", "x", NS)]))
    found = a.wait_condition("imports", "taken", NS, "ImportServiceValid", False)
    assert "already exists and is not managed by ClusterLink" in found["message"]

    labels = {
        "app.kubernetes.io/managed-by": "clusterlink.net",
        "clusterlink.net/import-name": "taken",
        "clusterlink.net/import-namespace": NS,
    }
    a.api.patch("services", "taken", {"metadata": {"labels": labels}}, namespace=NS)
    a.wait_condition("imports", "taken", NS, "ImportServiceValid", True)
    wait_until(
        lambda: ((a.get("services", "taken", NS) or {}).get("spec") or {}).get("selector"),
        what="the adopted Service selects the gateway pods",
    )

    a.delete("services", "taken", NS)
    wait_until(lambda: a.get("services", "taken", NS) is not None, what="it is created again")
    a.wait_condition("imports", "taken", NS, "ImportServiceValid", True)

    a.api.patch(
        "services",
        "taken",
        {"metadata": {"labels": {**labels, "app.kubernetes.io/managed-by": "other"}}},
        namespace=NS,
    )
    a.wait_condition("imports", "taken", NS, "ImportServiceValid", False)
    a.api.patch("services", "taken", {"metadata": {"labels": labels}}, namespace=NS)
    a.wait_condition("imports", "taken", NS, "ImportServiceValid", True)


def test_an_import_in_a_namespace_of_its_own(clusters: Clusters) -> None:
    """Outside ClusterLink's namespace an Import gets a system Service in ClusterLink's
    namespace and an ExternalName Service of its name in its own; a Service squatting on the
    system name blocks it until removed; deleting the Import removes both."""
    a = clusters.a
    team = "team"
    a.api.create("namespaces", {"metadata": {"name": team}})
    system = system_service_name(NamespacedName(team, "db"))
    a.api.create(
        "services",
        {"metadata": {"name": system, "namespace": NS}, "spec": {"ports": [{"port": 80}]}},
    )
    a.apply(import_("db", team, [("b", "db", NS)]))
    a.wait_condition("imports", "db", team, "ImportServiceValid", False)

    a.delete("services", system, NS)
    a.wait_condition("imports", "db", team, "ImportServiceValid", True)
    external = a.get("services", "db", team)
    assert external is not None
    assert external["spec"] == {
        "type": "ExternalName",
        "externalName": f"{system}.{NS}.svc.cluster.local",
    }
    assert a.get("services", system, NS) is not None

    a.delete("imports", "db", team)
    a.wait_gone("services", "db", team)
    a.wait_gone("services", system, NS)


def test_deleting_an_import_frees_its_port_and_its_service(clusters: Clusters) -> None:
    a = clusters.a
    a.apply(import_("gone", NS, [("b", "x", NS)], target_port=2345))
    a.wait_condition("imports", "gone", NS, "ImportServiceValid", True)
    a.delete("imports", "gone", NS)
    a.wait_gone("services", "gone", NS)

    a.apply(import_("reuse", NS, [("b", "x", NS)], target_port=2345))
    a.wait_condition("imports", "reuse", NS, "ImportTargetPortValid", True)
    a.wait_condition("imports", "reuse", NS, "ImportServiceValid", True)
    assert a.pod("reuse-client", NS).ask(a.import_address("reuse", NS)).end == "reset"


def test_an_import_name_over_63_characters_is_refused_by_the_api(clusters: Clusters) -> None:
    a = clusters.a
    with pytest.raises(StatusError) as refused:
        a.apply(import_("a" * 64, NS, [("b", "x", NS)]))
    assert refused.value.status == 422
    assert "import name cannot exceed 63" in str(refused.value)
    a.apply(import_("a" * 63, NS, [("b", "x", NS)]))
    a.wait_condition("imports", "a" * 63, NS, "ImportServiceValid", True)


def test_a_client_outside_every_pod_still_gets_through_without_pod_attributes(
    clusters: Clusters,
) -> None:
    """An address that is no Pod's (a node, a host-network pod) is a client with no pod
    attributes: policies that need them do not match it, the others do."""
    a, b = clusters.a, clusters.b
    server = b.serve("no-pod", NS, service=False)
    b.apply(export("no-pod", NS, host=server.host, port=server.port))
    a.apply(import_("no-pod", NS, [("b", "no-pod", NS)]))
    assert Client("127.0.0.1").ask(a.import_address("no-pod", NS)).name == "b"


def test_the_api_going_away_costs_no_tunnel_and_changes_are_followed_again(
    clusters: Clusters,
) -> None:
    """The gateway serves from what it last read while the API is away, and catches up
    (re-lists) when it is back: a change made after its return is served."""
    a, b = clusters.a, clusters.b
    server = b.serve("outage", NS, service=False)
    b.apply(export("outage", NS, host=server.host, port=server.port))
    a.apply(import_("outage", NS, [("b", "outage", NS)]))
    client = a.pod("outage-client", NS)
    address = a.import_address("outage", NS)
    assert client.ask(address).name == "b"
    a.api.stop()
    try:
        for _ in range(5):
            assert client.ask(address).name == "b"
        a.gateway().wait_for_log(r"serving what was last read from the Kubernetes API")
    finally:
        a.api.start()
    a.gateway().wait_for_log(r"the Kubernetes API at .* answers again")
    a.apply(import_("after-outage", NS, [("b", "outage", NS)]))
    assert client.ask(a.import_address("after-outage", NS)).name == "b"

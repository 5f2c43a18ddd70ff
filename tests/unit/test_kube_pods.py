"""A client's identity from the Pod at its address (Kubernetes mode; pure)."""

from __future__ import annotations

from lightkube.models.core_v1 import PodSpec, PodStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from clusterlink.kube.pods import identities_by_ip, identity_of
from clusterlink.policy import ClientIdentity


def pod(
    ip: str | None,
    *,
    namespace: str = "shop",
    account: str | None = "cart",
    labels: dict[str, str] | None = None,
    host_network: bool = False,
    phase: str = "Running",
) -> Pod:
    return Pod(
        metadata=ObjectMeta(name="p", namespace=namespace, labels=labels or {"app": "cart"}),
        spec=PodSpec(containers=[], serviceAccountName=account, hostNetwork=host_network),
        status=PodStatus(podIP=ip, phase=phase),
    )


def test_a_running_pod_is_its_namespace_service_account_and_labels() -> None:
    assert identity_of(pod("127.0.0.7")) == (
        "127.0.0.7",
        ClientIdentity(namespace="shop", service_account="cart", labels={"app": "cart"}),
    )


def test_a_pod_without_a_service_account_name_runs_as_default() -> None:
    found = identity_of(pod("127.0.0.7", account=None))
    assert found is not None and found[1].service_account == "default"


def test_pods_an_address_cannot_tell_apart_are_left_out() -> None:
    assert identity_of(pod(None)) is None  # not scheduled yet
    assert identity_of(pod("10.0.0.5", host_network=True)) is None  # the node's address
    assert identity_of(pod("127.0.0.7", phase="Succeeded")) is None  # its address may be reused
    assert identity_of(pod("127.0.0.7", phase="Failed")) is None


def test_the_index_holds_every_pod_told_by_its_address() -> None:
    index = identities_by_ip([pod("127.0.0.7"), pod("127.0.0.8", namespace="ops"), pod(None)])
    assert set(index) == {"127.0.0.7", "127.0.0.8"}
    assert index["127.0.0.8"].namespace == "ops"

"""Kubernetes mode end to end: policies on both sides, with client attributes from pods.
After the original's e2e cases TestPolicyLabels, TestPodAttributes, TestPrivilegedPolicies and
TestPeerLabels.

Cluster ``x`` exports ``echo`` (Import labels ``env: test``), cluster ``y`` imports it; a
client in a pod of ``y`` (service account ``default``, label ``app: echo-client``) connects.
Each test works in a namespace of its own on both clusters, so policies of one test never
decide for another; the privileged ones (cluster-wide) are deleted by the test that made them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.gateways import Fabric
from tests.integration.waiting import wait_until
from tests.k8s.sites import NS, Client, KubeSite, export, import_, policy, selector

pytestmark = pytest.mark.k8s

PEER_NAME = "peer.clusterlink.net/name"
PEER_LABELS = "peer.clusterlink.net/labels."
EXPORT_NAME = "export.clusterlink.net/name"
EXPORT_LABELS = "export.clusterlink.net/labels."
CLIENT_SA = "client.clusterlink.net/service-account"
CLIENT_LABELS = "client.clusterlink.net/labels."

_namespaces = itertools.count(1)


@dataclass
class Pair:
    x: KubeSite  # exports
    y: KubeSite  # imports


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("k8s-policy")
    fabric = Fabric(root, "fab")
    x = KubeSite("x", fabric, root, labels={"cluster": "x-cluster", "zone": "east"})
    try:
        y = KubeSite("y", fabric, root, labels={"cluster": "y-cluster", "zone": "west"})
    except BaseException:
        x.close()
        raise
    try:
        x.apply(y.as_peer())
        y.apply(x.as_peer())
        y.wait_condition("peers", "x", NS, "PeerReachable", True)
        yield Pair(x, y)
    finally:
        x.close()
        y.close()


@dataclass
class Echo:
    """One test's echo: its namespace, the client pod, and where the client connects."""

    pair: Pair
    ns: str
    client: Client
    address: tuple[str, int]

    def allowed(self) -> bool:
        """Whether the client gets through now (after the latest policy change)."""
        answer = self.client.ask(self.address)
        assert answer.end in ("eof", "reset"), answer
        return answer.name == "x"

    def becomes(self, allowed: bool) -> None:
        """A policy change reaches the gateways through their watches: poll, bounded."""
        wait_until(lambda: self.allowed() == allowed, what=f"access is {allowed} in {self.ns}")


@pytest.fixture
def echo(pair: Pair) -> Echo:
    x, y = pair.x, pair.y
    ns = f"t{next(_namespaces)}"
    for site in (x, y):
        site.api.create("namespaces", {"metadata": {"name": ns}})
    x.serve("echo", ns)
    x.apply(export("echo", ns))
    imp = import_("echo", ns, [("x", "echo", ns)])
    imp["metadata"]["labels"] = {"env": "test"}
    y.apply(imp)
    client = y.pod("echo-client", ns, labels={"app": "echo-client"})
    return Echo(pair, ns, client, y.import_address("echo", ns))


def allow(
    name: str, ns: str, *, from_: dict[str, str] | None = None, to: dict[str, str] | None = None
) -> dict[str, object]:
    return policy(name, ns, "allow", from_=[selector(from_)], to=[selector(to)])


def deny(
    name: str, ns: str, *, from_: dict[str, str] | None = None, to: dict[str, str] | None = None
) -> dict[str, object]:
    return policy(name, ns, "deny", from_=[selector(from_)], to=[selector(to)])


def test_policy_labels(echo: Echo) -> None:
    x, y, ns = echo.pair.x, echo.pair.y, echo.ns
    # 1. y allows only to echo at x with env=test; x allows only from y.
    y.apply(
        allow(
            "allow-echo",
            ns,
            from_={PEER_NAME: "y"},
            to={EXPORT_NAME: "echo", PEER_NAME: "x", f"{EXPORT_LABELS}env": "test"},
        )
    )
    x.apply(allow("specific-peer", ns, from_={PEER_NAME: "y"}, to={PEER_NAME: "x"}))
    echo.becomes(True)
    # 2. A deny of the echo service at y wins over the allow.
    y.apply(deny("deny-echo", ns, to={EXPORT_NAME: "echo"}))
    echo.becomes(False)
    # 3. Deleted: allowed again.
    y.delete("accesspolicies", "deny-echo", ns)
    echo.becomes(True)
    # 4. A deny of peer x at y.
    y.apply(deny("deny-x", ns, to={PEER_NAME: "x"}))
    echo.becomes(False)
    y.delete("accesspolicies", "deny-x", ns)
    echo.becomes(True)
    # 6. A deny at x of everything from y (ingress).
    x.apply(deny("deny-y", ns, from_={PEER_NAME: "y"}))
    echo.becomes(False)
    x.delete("accesspolicies", "deny-y", ns)
    echo.becomes(True)
    # 8. y's allow replaced by one that names another service: denied.
    y.delete("accesspolicies", "allow-echo", ns)
    y.apply(allow("bad-svc", ns, to={EXPORT_NAME: "bad-svc", PEER_NAME: "x"}))
    echo.becomes(False)
    # 9. An allow on a label value the Import does not have: still denied.
    y.apply(allow("bad-label", ns, to={f"{EXPORT_LABELS}env": "prod"}))
    assert not echo.allowed()
    # 10. With the right label value: allowed.
    y.apply(allow("good-label", ns, to={f"{EXPORT_LABELS}env": "test"}))
    echo.becomes(True)


def test_pod_attributes(echo: Echo) -> None:
    """The client's service account and labels come from its pod, and both ends' policies can
    select on them: a deny by service account on egress only, then on ingress only, and a
    NotIn on a client label that excludes the client's own value."""
    x, y, ns = echo.pair.x, echo.pair.y, echo.ns
    x.apply(allow("allow-all", ns))
    y.apply(allow("allow-all", ns))
    echo.becomes(True)
    # 2. Denying another service account changes nothing.
    for site in (x, y):
        site.apply(deny("deny-non-default-sa", ns, from_={CLIENT_SA: "non-default"}))
    assert echo.allowed()
    # 3. Egress only: deny the pod's own service account at y.
    y.apply(deny("deny-default-sa", ns, from_={CLIENT_SA: "default"}))
    echo.becomes(False)
    y.delete("accesspolicies", "deny-default-sa", ns)
    echo.becomes(True)
    # 4. Ingress only: the same deny at x, which sees the attributes y sent.
    x.apply(deny("deny-default-sa", ns, from_={CLIENT_SA: "default"}))
    echo.becomes(False)
    x.delete("accesspolicies", "deny-default-sa", ns)
    echo.becomes(True)
    # 5. Deny every client whose app label is not echo-client: the client is not denied...
    others = {"key": f"{CLIENT_LABELS}app", "operator": "NotIn", "values": ["echo-client"]}
    y.apply(policy("deny-others", ns, "deny", from_=[selector(expressions=[others])]))
    assert echo.allowed()
    # ... but a pod with another app label is.
    stranger = y.pod("stranger", ns, labels={"app": "other"})
    wait_until(lambda: stranger.ask(echo.address).end == "reset", what="the other pod is denied")


def test_privileged_policies(echo: Echo) -> None:
    """Privileged deny > privileged allow > deny > allow > default deny, at y."""
    x, y, ns = echo.pair.x, echo.pair.y, echo.ns
    x.apply(allow("allow-all", ns))
    target = {EXPORT_NAME: "echo", PEER_NAME: "x"}
    priv_deny = policy(f"{ns}-priv-deny", None, "deny", to=[selector(target)], privileged=True)
    priv_allow = policy(f"{ns}-priv-allow", None, "allow", to=[selector(target)], privileged=True)
    y.apply(
        priv_deny, priv_allow, deny("reg-deny", ns, to=target), allow("reg-allow", ns, to=target)
    )
    echo.becomes(False)
    y.delete("privilegedaccesspolicies", f"{ns}-priv-deny")
    echo.becomes(True)
    y.delete("privilegedaccesspolicies", f"{ns}-priv-allow")
    echo.becomes(False)
    y.delete("accesspolicies", "reg-deny", ns)
    echo.becomes(True)
    y.delete("accesspolicies", "reg-allow", ns)
    echo.becomes(False)


def test_peer_labels(echo: Echo) -> None:
    """Each gateway's labels (``--label``) reach the other by heartbeat and its requests: the
    target selects on the caller's, the source on the target's."""
    x, y, ns = echo.pair.x, echo.pair.y, echo.ns
    x.apply(allow("allow-all", ns))
    y.apply(allow("allow-all", ns))
    echo.becomes(True)
    # 1. x denies callers of the cluster y-cluster.
    x.apply(deny("deny-y-cluster", ns, from_={f"{PEER_LABELS}cluster": "y-cluster"}))
    echo.becomes(False)
    # 2. A privileged allow at x of the zone west overrides it.
    override = policy(
        f"{ns}-allow-west",
        None,
        "allow",
        from_=[selector({f"{PEER_LABELS}zone": "west"})],
        privileged=True,
    )
    x.apply(override)
    echo.becomes(True)
    # 3. y denies targets of another zone: no effect on x.
    y.apply(deny("deny-other-zone", ns, to={f"{PEER_LABELS}zone": "north"}))
    assert echo.allowed()
    # 4. y denies targets of x's zone: denied.
    y.apply(deny("deny-east", ns, to={f"{PEER_LABELS}zone": "east"}))
    echo.becomes(False)
    x.delete("privilegedaccesspolicies", f"{ns}-allow-west")

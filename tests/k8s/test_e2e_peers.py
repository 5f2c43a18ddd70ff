"""Kubernetes mode end to end: load balancing over three exporting clusters, and Peers that go
away or list a bad gateway. After the original's e2e cases:

TestLoadBalancingRoundRobin, TestLoadBalancingStatic and TestLoadBalancingRandom (each source's
export deleted in turn), TestPeerStatus (a peer's gateway goes away and returns) and
TestPeerMultipleGateways (one of a peer's gateways is bad).

Cluster ``a`` imports the export ``echo`` of ``a`` itself, ``b`` and ``c``; each cluster's
workload answers with its cluster's name, so a client can tell who served it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.gateways import Fabric
from tests.integration.waiting import wait_until
from tests.k8s.sites import NS, Client, KubeSite, allow_all, export, import_

pytestmark = pytest.mark.k8s

BAD_GATEWAY = ("127.0.0.1", 9)  # nothing listens there


@dataclass
class Fabric3:
    a: KubeSite
    b: KubeSite
    c: KubeSite

    @property
    def sites(self) -> tuple[KubeSite, KubeSite, KubeSite]:
        return self.a, self.b, self.c


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fabric3]:
    root = tmp_path_factory.mktemp("k8s-peers")
    fabric = Fabric(root, "fab")
    started: list[KubeSite] = []
    try:
        for name in ("a", "b", "c"):
            started.append(KubeSite(name, fabric, root))
        a, b, c = started
        for site in started:
            a.apply(site.as_peer())  # a peers with itself too, as in the original
            site.apply(a.as_peer(), allow_all(NS))
        yield Fabric3(a, b, c)
    finally:
        for site in started:
            site.close()


def _import(three: Fabric3, name: str, lb: str) -> tuple[Client, tuple[str, int]]:
    a = three.a
    for site in three.sites:
        site.apply(export(name, NS))
        if site.get("services", name, NS) is None:
            site.serve(name, NS)
    sources = [(site.name, name, NS) for site in three.sites]
    a.apply(import_(name, NS, sources, lb=lb))
    for site in three.sites:
        a.wait_condition("peers", site.name, NS, "PeerReachable", True)
    return a.pod(f"{name}-client", NS), a.import_address(name, NS)


def _served(client: Client, address: tuple[str, int], n: int) -> list[str]:
    answers = [client.ask(address) for _ in range(n)]
    assert all(answer.end == "eof" for answer in answers), answers
    return [answer.name for answer in answers]


def _withdraw(site: KubeSite, name: str, client: Client, address: tuple[str, int]) -> None:
    """Delete the site's export, and wait until no connection is served by it any more (the
    target refuses at once; this only waits for the delete to reach its gateway)."""
    site.delete("exports", name, NS)
    wait_until(
        lambda: site.name not in _served(client, address, 3),
        what=f"{site.name}'s export no longer serves",
    )


def test_round_robin_alternates_among_the_sources_left(three: Fabric3) -> None:
    """Every attempt advances the Import's counter: all three in turn, then, once ``a``'s
    export is gone, ``b`` and ``c`` strictly alternating, then ``c`` alone."""
    client, address = _import(three, "rr", "round-robin")
    served = _served(client, address, 30)
    assert all(served[i] != served[i + 1] for i in range(29)), served
    assert Counter(served) == {"a": 10, "b": 10, "c": 10}

    _withdraw(three.a, "rr", client, address)
    served = _served(client, address, 30)
    assert set(served) == {"b", "c"}
    assert all(served[i] != served[i + 1] for i in range(29)), served

    _withdraw(three.b, "rr", client, address)
    assert set(_served(client, address, 30)) == {"c"}


def test_static_serves_from_the_first_source_left(three: Fabric3) -> None:
    client, address = _import(three, "static", "static")
    assert set(_served(client, address, 30)) == {"a"}
    _withdraw(three.a, "static", client, address)
    assert set(_served(client, address, 30)) == {"b"}
    _withdraw(three.b, "static", client, address)
    assert set(_served(client, address, 30)) == {"c"}


def test_random_reaches_every_source_left(three: Fabric3) -> None:
    client, address = _import(three, "random", "random")
    assert set(_served(client, address, 100)) == {"a", "b", "c"}
    _withdraw(three.a, "random", client, address)
    assert set(_served(client, address, 30)) == {"b", "c"}
    _withdraw(three.b, "random", client, address)
    assert set(_served(client, address, 30)) == {"c"}


def test_peer_status_follows_a_gateway_that_goes_away_and_returns(three: Fabric3) -> None:
    a, b = three.a, three.b
    a.wait_condition("peers", "b", NS, "PeerReachable", True)
    b.kill(0)
    gone = a.wait_condition("peers", "b", NS, "PeerReachable", False)
    assert gone["reason"] == "Heartbeat"
    b.restart(0)
    a.wait_condition("peers", "b", NS, "PeerReachable", True)
    peer = a.get("peers", "b", NS)
    assert peer is not None and peer["status"]["reachable"] is True


def test_a_peer_with_a_bad_gateway_is_served_by_the_good_one(three: Fabric3) -> None:
    a, c = three.a, three.c
    client, address = _import(three, "multi", "static")
    _withdraw(a, "multi", client, address)
    _withdraw(three.b, "multi", client, address)  # c is the one source left
    good = c.peer_address()

    a.apply_and_wait(c.as_peer(gateways=[BAD_GATEWAY, good]))
    a.wait_condition("peers", "c", NS, "PeerReachable", True)
    assert set(_served(client, address, 10)) == {"c"}

    a.apply_and_wait(c.as_peer(gateways=[BAD_GATEWAY]))
    a.wait_condition("peers", "c", NS, "PeerReachable", False)
    assert {answer.end for answer in (client.ask(address) for _ in range(3))} == {"reset"}

    a.apply_and_wait(c.as_peer(gateways=[good, BAD_GATEWAY]))
    a.wait_condition("peers", "c", NS, "PeerReachable", True)
    assert set(_served(client, address, 10)) == {"c"}

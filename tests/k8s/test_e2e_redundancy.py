"""Kubernetes mode end to end: three replicas of each peer (the original's TestRedundancy),
with the leaders killed half-way.

Every replica serves tunnels; one of each site's replicas leads (the Lease) and writes.
A client makes 100 sequential accesses through the importing site's replicas in turn (as its
Service would spread them); at the 50th, the leader of each site is killed (SIGKILL: no lease
given up) and its address taken out of the rotation, as a dead pod leaves its Service's
endpoints. Every access succeeds; another replica takes each lease within its duration, and
the new importing leader does a leader's work (a new Import gets its port and Service).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.integration.gateways import Fabric
from tests.integration.waiting import wait_until
from tests.k8s.sites import NS, KubeSite, allow_all, export, import_

pytestmark = pytest.mark.k8s

LEASE_DURATION_S = 2.0  # what sites.FAST sets; a takeover needs it plus a retry or two


@dataclass
class Replicated:
    x: KubeSite  # exports
    y: KubeSite  # imports


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    root = tmp_path_factory.mktemp("k8s-redundancy")
    fabric = Fabric(root, "fab")
    x = KubeSite("x", fabric, root, replicas=3)
    try:
        y = KubeSite("y", fabric, root, replicas=3)
    except BaseException:
        x.close()
        raise
    try:
        yield Replicated(x, y)
    finally:
        x.close()
        y.close()


def _wait_leader(site: KubeSite, *, not_: int | None = None) -> int:
    def leader() -> tuple[int] | None:  # a tuple: replica 0 must not read as "not yet"
        holder = site.leader()
        if not holder:
            return None
        try:
            index = site.replica_of(holder)
        except AssertionError:
            return None  # the lease still names the dead one
        return None if index == not_ else (index,)

    (index,) = wait_until(
        leader,
        what=f"a live replica of {site.name} leads",
        timeout_s=LEASE_DURATION_S + 8,
    )
    return index


def test_three_replicas_serve_every_access_while_the_leaders_die(replicated: Replicated) -> None:
    x, y = replicated.x, replicated.y
    x.apply(y.as_peer(), allow_all(NS), export("echo", NS))
    x.serve("echo", NS)
    y.apply(x.as_peer(), allow_all(NS), import_("echo", NS, [("x", "echo", NS)]))
    y.wait_condition("peers", "x", NS, "PeerReachable", True)
    y.wait_condition("imports", "echo", NS, "ImportServiceValid", True)
    x_leader, y_leader = _wait_leader(x), _wait_leader(y)
    client = y.pod("client", NS)
    endpoints = {replica: y.import_address("echo", NS, replica) for replica in y.live_replicas()}
    for address in endpoints.values():  # every replica serves, not only the leader
        assert client.ask(address).name == "x"

    answers = []
    for access in range(100):
        if access == 50:
            x.kill(x_leader)
            y.kill(y_leader)
            del endpoints[y_leader]  # a dead pod leaves its Service's endpoints
        address = list(endpoints.values())[access % len(endpoints)]
        answers.append(client.ask(address))
    failed = [(i, a) for i, a in enumerate(answers) if (a.name, a.end) != ("x", "eof")]
    assert not failed, failed

    new_y = _wait_leader(y, not_=y_leader)
    _wait_leader(x, not_=x_leader)
    assert new_y in y.live_replicas()
    # The new leader writes: a new Import gets its target port and its Service.
    y.apply(import_("after", NS, [("x", "echo", NS)]))
    y.wait_condition("imports", "after", NS, "ImportServiceValid", True)
    assert client.ask(y.import_address("after", NS)).name == "x"

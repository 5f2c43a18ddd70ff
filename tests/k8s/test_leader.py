"""Leader election over a Lease: the pure rule, then replicas against the emulated API.

One replica leads at a time; a dead leader is replaced within the lease duration; a leader
that stops cleanly hands over at once; a leader that cannot renew steps down before anyone
else may take over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from lightkube import AsyncClient

from clusterlink.kube import load_access
from clusterlink.kube.leader import LEASE_NAME, Decision, LeaderElector, LeaseView, decide
from tests.k8s.apiserver import KubeAPI
from tests.k8s.waiting import eventually

pytestmark = pytest.mark.k8s

NS = "clusterlink-system"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
# Short, so that a takeover shows within a test's patience; the rule is the same at 15 s.
DURATION_S, RENEW_S, RETRY_S = 1.5, 0.3, 0.1


@pytest.mark.parametrize(
    ("lease", "expected"),
    [
        (None, Decision.TAKE),
        (LeaseView(None, NOW, 15), Decision.TAKE),  # given up
        (LeaseView("me", NOW, 15), Decision.RENEW),
        (LeaseView("other", NOW - timedelta(seconds=5), 15), Decision.FOLLOW),
        (LeaseView("other", NOW - timedelta(seconds=16), 15), Decision.TAKE),  # expired
        (LeaseView("other", None, 15), Decision.TAKE),
        (LeaseView("other", NOW - timedelta(seconds=10), None), Decision.FOLLOW),  # ours: 15
    ],
)
def test_the_rule(lease: LeaseView | None, expected: Decision) -> None:
    assert decide(lease, "me", NOW, 15) is expected


@pytest.fixture
async def client(api: KubeAPI) -> AsyncIterator[AsyncClient]:
    api.create("namespaces", {"metadata": {"name": NS}})
    client = load_access(api_url=api.url).async_client()
    yield client
    await client.close()


def replica(client: AsyncClient, name: str, events: list[str]) -> LeaderElector:
    return LeaderElector(
        client,
        namespace=NS,
        identity=name,
        duration_s=DURATION_S,
        renew_s=RENEW_S,
        retry_s=RETRY_S,
        on_start=lambda: events.append(f"{name} leads"),
        on_stop=lambda: events.append(f"{name} stops"),
    )


def holder(api: KubeAPI) -> str | None:
    lease = api.get("leases", LEASE_NAME, namespace=NS)
    value: str | None = lease["spec"].get("holderIdentity")
    return value


async def test_one_of_three_replicas_leads_and_a_clean_stop_hands_over_at_once(
    api: KubeAPI, client: AsyncClient
) -> None:
    events: list[str] = []
    replicas = [replica(client, name, events) for name in ("r1", "r2", "r3")]
    for each in replicas:
        each.start()
    try:
        await eventually(lambda: sum(r.is_leader for r in replicas) == 1, what="one leader")
        for _ in range(5):  # an invariant over time: still exactly one across renewals
            await asyncio.sleep(RENEW_S)  # time passing is the point: one renewal period
            assert sum(r.is_leader for r in replicas) == 1
        (leader,) = [r for r in replicas if r.is_leader]
        assert holder(api) == leader.identity

        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await leader.close()  # a clean stop gives the lease up
        assert holder(api) is None
        others = [r for r in replicas if r is not leader]
        await eventually(lambda: any(r.is_leader for r in others), what="another leads")
        took_s = loop.time() - stopped_at
        assert took_s < DURATION_S  # no waiting out the lease after a clean stop
        assert f"{leader.identity} stops" in events
    finally:
        for each in replicas:
            await each.close()


async def test_a_dead_leader_is_replaced_within_the_lease_duration(
    api: KubeAPI, client: AsyncClient
) -> None:
    """A leader that dies does not give the lease up: the others take it once it has not
    been renewed for the lease's duration, and its transitions count goes up."""
    events: list[str] = []
    first = replica(client, "first", events)
    first.start()
    await eventually(lambda: first.is_leader, what="first leads")
    assert first._task is not None
    first._task.cancel()  # dies: no renewals, no release
    lease_before = api.get("leases", LEASE_NAME, namespace=NS)["spec"]

    second = replica(client, "second", events)
    second.start()
    try:
        await eventually(lambda: second.is_leader, what="second leads", timeout_s=DURATION_S + 3)
        spec = api.get("leases", LEASE_NAME, namespace=NS)["spec"]
        assert spec["holderIdentity"] == "second"
        assert spec["leaseTransitions"] == lease_before["leaseTransitions"] + 1
    finally:
        await second.close()


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_runs_out(
    api: KubeAPI, client: AsyncClient
) -> None:
    events: list[str] = []
    leader = replica(client, "alone", events)
    leader.start()
    try:
        await eventually(lambda: leader.is_leader, what="it leads")
        api.stop()  # the API goes away: no renewal can succeed
        await eventually(
            lambda: not leader.is_leader, what="it steps down", timeout_s=DURATION_S + 2
        )
        assert events == ["alone leads", "alone stops"]
        api.start()
        await eventually(lambda: leader.is_leader, what="it leads again once the API is back")
    finally:
        await leader.close()

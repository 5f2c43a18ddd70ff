"""Informers against the emulated API: the cache follows every change, across expired
watches, 410 Gone and the API going away, and says so in the log once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod

from clusterlink.ids import NamespacedName
from clusterlink.kube import (
    ApiReachability,
    Backoff,
    Change,
    ExportCR,
    Informer,
    PrivilegedAccessPolicyCR,
    load_access,
)
from tests.k8s.apiserver import KubeAPI
from tests.k8s.waiting import eventually

pytestmark = pytest.mark.k8s

FAST = Backoff(initial_s=0.05, max_s=0.2)


@pytest.fixture
async def client(api: KubeAPI) -> AsyncIterator[AsyncClient]:
    client = load_access(api_url=api.url).async_client()
    yield client
    await client.close()


class Recorder:
    """An informer's ``on_change``: every change as (type, namespace/name)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []

    def __call__(self, changes: Sequence[Change[Any]]) -> None:
        self.changes.extend((c.type, str(c.key)) for c in changes)


@pytest.fixture
async def started() -> AsyncIterator[list[Informer[Any]]]:
    """Informers a test starts; stopped when it ends, however it ends."""
    informers: list[Informer[Any]] = []
    yield informers
    for informer in informers:
        await informer.stop()


async def run(started: list[Informer[Any]], informer: Informer[Any]) -> Informer[Any]:
    started.append(informer)
    informer.start()
    await asyncio.wait_for(informer.wait_synced(), 10)
    return informer


def export(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    return {"metadata": metadata, "spec": {"host": "svc", "port": 80}}


def names(informer: Informer[Any]) -> list[str]:
    return sorted(obj["metadata"]["name"] for obj in informer.items())


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "unit_random", "delay_s"),
    [
        (1, 0.0, 0.5),
        (2, 0.0, 1.0),
        (3, 0.0, 2.0),
        (7, 0.0, 30.0),  # capped
        (10_000, 0.0, 30.0),  # no overflow in a very long outage
        (1, 0.5, 0.45),  # jitter takes up to 20 % off
        (7, 0.999, 30.0 * (1 - 0.2 * 0.999)),
    ],
)
def test_backoff_doubles_up_to_its_cap_with_jitter_below(failures, unit_random, delay_s):
    assert Backoff().delay_s(failures, unit_random) == pytest.approx(delay_s)


def test_backoff_refuses_settings_that_cannot_work():
    with pytest.raises(ValueError, match="back-off needs"):
        Backoff(initial_s=2, max_s=1)


def test_reachability_logs_one_line_per_change(caplog):
    now = [100.0]
    reachability = ApiReachability("http://api", clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="clusterlink.kube"):
        reachability.succeeded("exports")  # nothing to report
        for _ in range(3):
            reachability.failed("cannot list exports: unreachable")
        now[0] = 104.0
        reachability.succeeded("exports")
        reachability.succeeded("imports")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "DEBUG", "DEBUG", "INFO"]
    assert lines[0][1].startswith("cannot list exports: unreachable; serving what was last read")
    assert lines[-1][1] == (
        "the Kubernetes API at http://api answers again after 4.0s (exports re-listed)"
    )


# --- against the API --------------------------------------------------------------------------


async def test_the_first_list_fills_the_cache_and_reports_every_object(api, client, started):
    api.create("exports", export("a"))
    api.create("exports", export("b"))
    recorder = Recorder()
    informer = await run(started, Informer(client, ExportCR, on_change=recorder))
    assert names(informer) == ["a", "b"]
    assert recorder.changes == [("ADDED", "default/a"), ("ADDED", "default/b")]
    assert informer.version == api.resource_version
    cached = informer.get(NamespacedName("default", "a"))
    assert cached is not None and cached["spec"]["port"] == 80


async def test_changes_are_seen_in_order(api, client, started):
    recorder = Recorder()
    await run(started, Informer(client, ExportCR, on_change=recorder))
    api.create("exports", export("a"))
    api.patch("exports", "a", {"spec": {"port": 81}})
    api.patch("exports", "a", {"spec": {"port": 81}})  # no change: no event
    api.delete("exports", "a")
    expected = [("ADDED", "default/a"), ("MODIFIED", "default/a"), ("DELETED", "default/a")]
    await eventually(
        lambda: recorder.changes == expected, what=f"{expected}, seen {recorder.changes}"
    )


async def test_a_watch_that_expires_is_resumed_without_losing_an_update(api, client, started):
    recorder = Recorder()
    informer = await run(started, Informer(client, ExportCR, on_change=recorder))
    await eventually(lambda: api.open_watches == 1, what="the watch is open")
    with api.holding_watches():
        api.expire_watches()  # the informer resumes at once, and waits here
        await eventually(lambda: api.requests("exports", "watch") == 2, what="a new watch")
        api.create("exports", export("made-while-no-watch-was-open"))
    await eventually(lambda: names(informer) == ["made-while-no-watch-was-open"], what="resumed")
    assert recorder.changes == [("ADDED", "default/made-while-no-watch-was-open")]
    assert api.requests("exports", "list") == 1  # resumed from its version, not re-listed


async def test_410_gone_relists_and_reports_what_was_deleted_meanwhile(api, client, started):
    for name in ("a", "b", "c"):
        api.create("exports", export(name))
    recorder = Recorder()
    informer = await run(started, Informer(client, ExportCR, on_change=recorder))
    await eventually(lambda: api.open_watches == 1, what="the watch is open")
    with api.holding_watches():
        api.expire_watches()
        await eventually(lambda: api.requests("exports", "watch") == 2, what="a new watch")
        api.delete("exports", "a")
        api.patch("exports", "b", {"spec": {"port": 9}})
        api.compact()  # the history that would have told the watch is gone
    await eventually(lambda: names(informer) == ["b", "c"], what="the re-list")
    assert recorder.changes[3:] == [("MODIFIED", "default/b"), ("DELETED", "default/a")]
    assert api.requests("exports", "list") == 2
    assert informer.version == api.resource_version


async def test_the_api_going_away_and_back_is_one_warning_one_recovery(
    api, client, started, caplog
):
    api.create("exports", export("a"))
    informer = await run(started, Informer(client, ExportCR, backoff=FAST))
    await eventually(lambda: api.open_watches == 1, what="the watch is open")
    with caplog.at_level(logging.DEBUG, logger="clusterlink.kube"):
        api.stop()
        api.delete("exports", "a")  # behind the informer's back
        api.create("exports", export("b"))

        def retries() -> int:
            return sum(r.getMessage().startswith("still failing") for r in caplog.records)

        await eventually(lambda: retries() >= 3, what="the informer retrying")
        assert names(informer) == ["a"]  # the cache is kept while the API is away
        api.start()
        await eventually(lambda: names(informer) == ["b"], what="the cache catching up")
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name == "clusterlink.kube"
    ]
    assert len(lines) == 2, lines
    (warning, warned), (info, recovered) = lines
    assert warning == "WARNING"
    assert f"the Kubernetes API at {api.url} is unreachable" in warned
    assert "exports.clusterlink.net" in warned
    assert info == "INFO"
    assert recovered.startswith(f"the Kubernetes API at {api.url} answers again after ")


async def test_a_namespace_and_a_label_selector_narrow_what_is_cached(api, client, started):
    api.create("namespaces", {"metadata": {"name": "other"}})
    api.create("exports", export("mine", app="db"))
    api.create("exports", export("unlabelled"))
    api.create("exports", export("elsewhere", namespace="other", app="db"))
    informer = await run(
        started, Informer(client, ExportCR, namespace="default", labels={"app": "db"})
    )
    assert names(informer) == ["mine"]
    api.patch("exports", "unlabelled", {"metadata": {"labels": {"app": "db"}}})
    await eventually(lambda: names(informer) == ["mine", "unlabelled"], what="labelled in")
    api.patch("exports", "mine", {"metadata": {"labels": {"app": "web"}}})
    await eventually(lambda: names(informer) == ["unlabelled"], what="labelled out")


async def test_cluster_scoped_and_core_kinds(api, client, started):
    api.create("privilegedaccesspolicies", {"metadata": {"name": "p"}, "spec": {}})
    policies = await run(started, Informer(client, PrivilegedAccessPolicyCR))
    assert policies.get(NamespacedName("", "p")) is not None
    pods: Informer[Pod] = Informer(client, Pod)
    await run(started, pods)
    api.create("pods", {"metadata": {"name": "web"}, "spec": {"containers": []}})
    api.patch("pods", "web", {"status": {"podIP": "10.1.2.3"}}, subresource="status")

    def pod_ip() -> str | None:
        pod = pods.get(NamespacedName("default", "web"))
        return None if pod is None or pod.status is None else pod.status.podIP

    assert await eventually(pod_ip, what="the pod's address") == "10.1.2.3"


async def test_another_thread_can_wait_for_a_version(api, client, started):
    informer = await run(started, Informer(client, ExportCR))
    created = api.create("exports", export("a"))
    version = created["metadata"]["resourceVersion"]
    seen = threading.Event()

    def wait() -> None:
        if informer.wait_for_version(version, timeout_s=10):
            seen.set()

    await asyncio.to_thread(wait)
    assert seen.is_set()
    assert names(informer) == ["a"]
    assert not await asyncio.to_thread(informer.wait_for_version, "999999", 0.05)


async def test_a_failing_callback_is_logged_and_the_cache_still_follows(
    api, client, started, caplog
):
    def broken(changes: Any) -> None:
        raise RuntimeError("callback bug")

    informer = await run(started, Informer(client, ExportCR, on_change=broken))
    api.create("exports", export("a"))
    await eventually(lambda: names(informer) == ["a"], what="the cache following")
    assert "on_change of the exports.clusterlink.net informer failed" in caplog.text


async def test_stop_ends_the_watch(api, client):
    informer = Informer(client, ExportCR)
    informer.start()
    await asyncio.wait_for(informer.wait_synced(), 10)
    await eventually(lambda: api.open_watches == 1, what="the watch is open")
    await informer.stop()
    await eventually(lambda: api.open_watches == 0, what="the watch closed")


async def test_a_server_that_keeps_answering_410_is_not_hammered(api, client, started):
    api.fail("watch exports.v1alpha1.clusterlink.net", 410, "Expired", "too old resource version")
    no_jitter = Informer(client, ExportCR, backoff=FAST, unit_random=lambda: 0.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await run(started, no_jitter)
    await eventually(lambda: api.requests("exports", "list") >= 4, what="re-lists")
    # the first 410 re-lists at once; the next ones wait 0.05 s, then 0.1 s, 0.2 s, ...
    assert loop.time() - began >= 0.05 + 0.1

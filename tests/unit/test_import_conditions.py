"""ImportSourcesValid: judged on each catalog swap, with Kubernetes transition-time rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from clusterlink.api import Import, Peer, resource_from_dict
from clusterlink.controlplane.catalog import Snapshot
from clusterlink.controlplane.import_conditions import ImportConditions, judge_sources
from clusterlink.ids import NamespacedName, PeerName
from tests.unit._resources import document

KEY = NamespacedName("default", "web")
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def import_of(*peers: str) -> Import:
    sources = [{"peer": peer} for peer in peers]
    imp = resource_from_dict(document("Import", "web", {"port": 0, "sources": sources}))
    assert isinstance(imp, Import)
    return imp


def peer(name: str) -> Peer:
    found = resource_from_dict(
        document("Peer", name, {"gateways": [{"host": "127.0.0.1", "port": 9443}]})
    )
    assert isinstance(found, Peer)
    return found


def snapshot(imp: Import | None, *peers: str) -> Snapshot:
    return Snapshot(
        peers={PeerName(name): peer(name) for name in peers}, imports={KEY: imp} if imp else {}
    )


def ticking() -> Iterator[datetime]:
    """A clock that moves one minute per reading."""
    minute = 0
    while True:
        yield START + timedelta(minutes=minute)
        minute += 1


def test_a_source_without_a_peer_is_named_once_each() -> None:
    judged = judge_sources(import_of("b", "x", "x", "y"), {"b"})

    assert (judged.status, judged.reason) == ("False", "PeerNotFound")
    assert judged.message == "source x: no Peer named x; source y: no Peer named y"


def test_sources_that_all_name_peers_are_valid() -> None:
    judged = judge_sources(import_of("b", "c"), {"b", "c", "d"})

    assert (judged.status, judged.reason) == ("True", "PeersFound")


def test_the_condition_clears_when_the_peer_comes_and_the_time_is_the_change() -> None:
    clock = ticking()
    conditions = ImportConditions(clock=lambda: next(clock))
    imp = import_of("x")

    conditions.update(snapshot(imp))  # 03:04:05
    conditions.update(snapshot(imp, "other"))  # 03:05:05: still no x, time kept
    (missing,) = conditions.of(KEY)
    conditions.update(snapshot(imp, "x"))  # 03:06:05: x applied
    (found,) = conditions.of(KEY)

    assert missing == {
        "type": "ImportSourcesValid",
        "status": "False",
        "reason": "PeerNotFound",
        "message": "source x: no Peer named x",
        "lastTransitionTime": "2026-01-02T03:04:05Z",
    }
    assert (found["status"], found["reason"]) == ("True", "PeersFound")
    assert found["lastTransitionTime"] == "2026-01-02T03:06:05Z"


def test_a_new_message_with_the_same_status_keeps_the_transition_time() -> None:
    clock = ticking()
    conditions = ImportConditions(clock=lambda: next(clock))

    conditions.update(snapshot(import_of("x")))
    conditions.update(snapshot(import_of("x", "y")))
    (condition,) = conditions.of(KEY)

    assert condition["message"] == "source x: no Peer named x; source y: no Peer named y"
    assert condition["lastTransitionTime"] == "2026-01-02T03:04:05Z"


def test_a_deleted_import_is_forgotten_and_starts_afresh() -> None:
    clock = ticking()
    conditions = ImportConditions(clock=lambda: next(clock))

    conditions.update(snapshot(import_of("x")))
    conditions.update(snapshot(None))
    assert conditions.of(KEY) == []
    conditions.update(snapshot(import_of("x")))

    assert conditions.of(KEY)[0]["lastTransitionTime"] == "2026-01-02T03:06:05Z"

"""Restarts without loss: a gateway stopped (SIGTERM) or killed (SIGKILL) and started again with
the same state comes back whole, and a kill during applies never leaves half of one."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from tests.integration.documents import (
    Document,
    access_policy,
    export,
    import_,
    privileged_policy,
    selector,
    yaml_stream,
)
from tests.integration.gateways import CLI_TIMEOUT_S
from tests.integration.waiting import wait_until
from tests.multisite.sites import (
    ALLOW_ALL,
    FAST_HEALTH,
    Launcher,
    SiteGateway,
    apply_all,
    in_parallel,
)
from tests.multisite.timings import utc_time
from tests.multisite.traffic import ServeIn, talk_in, web_export

pytestmark = pytest.mark.multisite

KINDS = ("peer", "export", "import", "accesspolicy", "privilegedaccesspolicy")
RECOVERY_BOUND_S = 10.0


def everything(gateway: SiteGateway) -> dict[str, list[dict[str, Any]]]:
    """Every stored resource by kind, as ``get KIND -A -o json`` prints it (Imports with their
    listen address and conditions), without the Peers' status (reachability and round-trip
    time are live values, not stored ones) and without the time of each condition's last
    transition (judged again when the gateway starts)."""

    def get(kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = gateway.cl("get", kind, "-A", "-o", "json").json()["items"]
        if kind == "peer":
            items = [{k: v for k, v in item.items() if k != "status"} for item in items]
        for item in items:
            for condition in (item.get("status") or {}).get("conditions") or []:
                condition.pop("lastTransitionTime")
        return items

    return dict(zip(KINDS, in_parallel(*(partial(get, kind) for kind in KINDS)), strict=True))


def test_a_gateway_stopped_or_killed_comes_back_with_its_resources_ports_and_heartbeats(
    launcher: Launcher, serve: ServeIn
) -> None:
    a, b = launcher.start_all("a", "b", args=FAST_HEALTH)
    apply_all(
        {
            a: [
                b.as_peer(),
                import_("web", "default", peer="b"),  # port 0: a leased port, leased again
                import_("fixed", "default", peer="b", export_name="web", port=9080),
                ALLOW_ALL,
                export("local", "default", 8080),
                privileged_policy("no-eu", "deny", from_=[selector({"region": "eu"})]),
            ],
            b: [a.as_peer(), web_export(serve, "b"), ALLOW_ALL],
        }
    )
    addresses = [a.import_address(name) for name in ("web", "fixed")]
    before = everything(a)
    assert [len(before[kind]) for kind in KINDS] == [1, 1, 2, 1, 1], before

    for stop in ("stop", "crash"):  # SIGTERM (checked: exit 0, gateway.json gone), SIGKILL
        getattr(a, stop)()
        restarted_at = time.time()
        a = launcher.restart(a)

        assert everything(a) == before, f"after {stop}"  # imports on the same ports too
        for address in addresses:
            exchange = talk_in(a.site, address)
            assert (exchange.received, exchange.end) == (b"b", "eof"), f"{address}: {exchange}"
        entry = a.wait_reachable("b", True, timeout_s=RECOVERY_BOUND_S)
        assert utc_time(entry["lastSeen"]) > restarted_at  # a's heartbeats resumed
        b.wait_reachable("a", True, timeout_s=RECOVERY_BOUND_S)  # and are answered


# -- a kill while applies are running ----------------------------------------------------------

BATCH = 40  # indices per apply: 3 x BATCH documents, all or nothing (long enough to be hit)
APPLIERS = 2
KILL_ROUNDS = 2
PIECES = ("export", "import", "accesspolicy")


def batch(first: int) -> list[Document]:
    """The documents of one apply: for each index an Export, an Import and a policy that
    belong together, so a half-applied batch would show."""
    docs: list[Document] = []
    for i in range(first, first + BATCH):
        docs += [
            export(f"e{i}", "default", 8080),
            import_(f"i{i}", "default", peer="b", export_name=f"e{i}"),
            access_policy(f"p{i}", "default", "allow", to=[selector({"export": f"e{i}"})]),
        ]
    return docs


def essentials(document: Document) -> tuple[Any, ...]:
    """What ``batch`` chose for a document, read from it as applied or as stored (the store
    spells out defaults, e.g. empty ``matchExpressions``)."""
    spec = document["spec"]
    if document["kind"] == "Export":
        return spec["host"], spec["port"]
    if document["kind"] == "Import":
        return spec["port"], spec["sources"]
    return spec["action"], [s["workloadSelector"].get("matchLabels") for s in spec["to"]]


@dataclass
class Applier:
    """A user applying batch after batch (from ``first_index`` on, a multiple of ``BATCH``)
    until stopped; remembers which applies returned 0 and which the kill cut off (the others
    found the gateway down already)."""

    gateway: SiteGateway
    first_index: int
    succeeded: list[int] = field(default_factory=list)
    cut: list[int] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        first = self.first_index
        while not self.stopping.is_set() and first < self.first_index + 100 * BATCH:
            done = self.gateway.cl("apply", "-f", "-", stdin=yaml_stream(*batch(first)))
            if done.rc == 0:
                self.succeeded.append(first)
            elif "connection refused" not in done.stderr:
                self.cut.append(first)  # the kill came while this apply was under way
            first += BATCH


@contextlib.contextmanager
def applying(gateway: SiteGateway, round_: int) -> Iterator[list[Applier]]:
    """``APPLIERS`` users applying in parallel for the duration of the block."""
    team = [Applier(gateway, (round_ * APPLIERS + k) * 1000 * BATCH) for k in range(APPLIERS)]
    threads = [threading.Thread(target=applier.run, daemon=True) for applier in team]
    for thread in threads:
        thread.start()
    try:
        yield team
    finally:
        for applier in team:
            applier.stopping.set()
        for thread in threads:
            thread.join(timeout=CLI_TIMEOUT_S + 5)


def stored_batches(gateway: SiteGateway) -> dict[int, dict[str, dict[str, Any]]]:
    """What is stored, by batch (its first index), then by resource name."""
    found: dict[int, dict[str, dict[str, Any]]] = {}
    listed = in_parallel(*(partial(gateway.cl, "get", kind, "-A", "-o", "json") for kind in PIECES))
    for result in listed:
        for item in result.json()["items"]:
            name = item["metadata"]["name"]
            index = int(name[1:])
            found.setdefault(index - index % BATCH, {})[name] = item
    return found


def crash_at_next_write(gateway: SiteGateway, *, timeout_s: float = 10.0) -> None:
    """SIGKILL the gateway the moment its state file is next written.

    A write means an apply has just committed its documents and is recording its Imports'
    listen addresses, one small transaction each, before it answers: the kill lands inside
    that apply, not before or after it (a random moment mostly hits the CLI starting up).
    """
    wal = gateway.state_path.with_name(gateway.state_path.name + "-wal")

    def mark() -> tuple[int, int]:
        try:
            stat = wal.stat()
        except FileNotFoundError:
            return (0, 0)
        return stat.st_size, stat.st_mtime_ns

    before, deadline = mark(), time.monotonic() + timeout_s
    while mark() == before:
        assert time.monotonic() < deadline, f"no write to {wal} within {timeout_s:g}s"
        time.sleep(0.0005)  # the poll's own interval: short, so the kill lands in the write
    gateway.crash()


def test_a_kill_during_applies_loses_no_acknowledged_apply_and_leaves_no_half_of_one(
    launcher: Launcher,
) -> None:
    a = launcher.start("a", *FAST_HEALTH)
    acknowledged: list[int] = []
    cut: list[int] = []
    for round_ in range(KILL_ROUNDS):
        with applying(a, round_) as team:
            wait_until(
                lambda: any(applier.succeeded for applier in team),
                what="an apply returned 0",
                timeout_s=20,
            )
            crash_at_next_write(a)  # inside the next apply
        a = launcher.restart(a)
        for applier in team:
            acknowledged += applier.succeeded
            cut += applier.cut
        stored = stored_batches(a)

        assert set(acknowledged) <= set(stored), "an apply that returned 0 was lost"
        for first, items in stored.items():  # every batch whole and as applied
            expected = {doc["metadata"]["name"]: doc for doc in batch(first)}
            assert set(items) == set(expected), f"batch {first} is stored in part: {items}"
            for name, item in items.items():
                assert essentials(item) == essentials(expected[name]), item
                if item["kind"] == "Import":  # re-opened after the restart, like any other
                    assert item["status"]["listen"], item
    assert acknowledged, "no apply succeeded: the test proved nothing"
    assert cut, "no kill came during an apply: the test proved less than it says"
    print(
        f"{len(acknowledged)} applies acknowledged; {len(cut)} cut off by {KILL_ROUNDS} "
        f"kills, {len(set(cut) & set(stored))} of those stored whole, the others not at all"
    )

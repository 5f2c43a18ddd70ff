"""Static failover (DESIGN §5, §7): the primary's gateway dies, the backup serves, and traffic
returns to the primary once heartbeats find it reachable again.

This is the one multisite test that runs with the default heartbeat timing (1 s, 5 failures,
3 successes), because it measures what a user would see: how long after a gateway's death
its peer shows unreachable, and when connections are served by the other source.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.integration.waiting import wait_until
from tests.multisite.sites import PEER_PORT, Launcher, web_from_b_and_c
from tests.multisite.timings import log_time, report
from tests.multisite.traffic import ClientLoop, ServeIn, talk_in

pytestmark = pytest.mark.multisite

DETECTION_BOUND_S = 15.0  # 5 beats of 1 s, each failing at once (refused), plus slack


def test_static_failover_serves_from_backup_when_primary_dies_and_returns_when_it_is_back(
    launcher: Launcher, serve: ServeIn, record_property: Callable[[str, object], None]
) -> None:
    spread = web_from_b_and_c(launcher, serve, lb_scheme="static")  # default heartbeats
    a, b, address = spread.a, spread.b, spread.address
    a.wait_reachable("b", True, timeout_s=DETECTION_BOUND_S)
    served = [talk_in(a.site, address) for _ in range(5)]
    assert {(e.received, e.end) for e in served} == {(b"b", "eof")}, served  # the primary

    with ClientLoop(a.site, address) as clients:  # a connection every 50 ms throughout
        killed_at = b.crash()
        entry = a.wait_reachable("b", False, timeout_s=DETECTION_BOUND_S)
        shown_at = time.time()
        decided_at = log_time(a.wait_for_log(r"peer b is now unreachable"))
        first_backup = clients.first(started_after=killed_at, served_by="c")
        backup_after_shown = clients.first(started_after=shown_at, served_by="c")

        b = launcher.restart(b)  # the same state, flags and address
        restarted_at = time.time()
        a.wait_reachable("b", True, timeout_s=DETECTION_BOUND_S)
        back_at = time.time()
        first_primary = clients.first(started_after=back_at, served_by="b")
        wait_until(
            lambda: len(clients.between(first_primary.started, float("inf"))) >= 5,
            what="a few more connections after the return",
        )
    assert entry["reason"] == f"peer b gateway at {b.site.address}:{PEER_PORT}: connection refused"

    # No connection was lost to the failover: after the kill every one was served, by the
    # backup until the primary was back, then by the primary. (The kill may reset the one
    # connection under way at that instant.)
    after_kill = clients.between(killed_at + 0.1, float("inf"))
    assert all(x.end == "eof" and x.served_by in ("b", "c") for x in after_kill), after_kill
    assert {x.served_by for x in clients.between(killed_at + 0.1, restarted_at)} == {"c"}
    assert {x.served_by for x in clients.between(back_at, float("inf"))} == {"b"}

    report(
        record_property,
        {
            "kill -> b unreachable in `status -o json`": shown_at - killed_at,
            "kill -> a decides b unreachable (its log)": decided_at - killed_at,
            "kill -> first connection served by the backup": first_backup.ended - killed_at,
            "unreachable in status -> first connection served by the backup "
            "(negative: that many seconds before)": first_backup.ended - shown_at,
            "unreachable in status -> a connection started then served by the backup": (
                backup_after_shown.ended - shown_at
            ),
            "restart -> b reachable in `status -o json`": back_at - restarted_at,
            "reachable in status -> a connection started then served by the primary": (
                first_primary.ended - back_at
            ),
        },
    )

"""Peer health across sites (DESIGN §7): a cut link makes a peer unreachable and back, each
gateway decides alone, and a peer with several gateways stays in service while any answers."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from functools import partial

import pytest

from tests.integration.documents import import_, peer
from tests.integration.waiting import wait_until
from tests.multisite.netns import Network, Site
from tests.multisite.sites import (
    ALLOW_ALL,
    FAST_HEALTH,
    PEER_PORT,
    Launcher,
    SiteGateway,
    apply_all,
    in_parallel,
    web_from_b_and_c,
)
from tests.multisite.timings import report, utc_time
from tests.multisite.traffic import ClientLoop, ServeIn, talk_in, web_export

pytestmark = pytest.mark.multisite

CUT_DETECTION_BOUND_S = 15.0  # 5 beats that each time out after 1 s, plus slack
RECOVERY_BOUND_S = 10.0
EARLY_FAILOVER_BOUND_S = 4.0  # one beat timeout (1 s) and an interval, plus slack
SILENT_S = 1.5  # > 5 beats of 0.2 s: what would turn a peer unreachable if none answered


def stays_reachable(a: SiteGateway, name: str) -> None:
    """An absence: for ``SILENT_S`` Peer ``name`` must not turn unreachable. There is no event
    to wait for, only a stretch of time; the beats answered during it (``lastSeen``) show that
    heartbeats went on all along, so the stretch was a real test."""
    quiet_from = time.time()
    time.sleep(SILENT_S)
    entry = a.peer_status(name)
    assert entry["reachable"] is True, entry
    assert utc_time(entry["lastSeen"]) > quiet_from, entry


def dialing(site: Site, host: str, port: int) -> bool:
    """A connection from ``site`` to ``host:port`` is waiting for the SYN's answer."""
    argv = [*site.prefix, "ss", "-Htn", "state", "syn-sent", "dst", f"{host}:{port}"]
    return bool(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip())


def test_a_site_whose_link_is_cut_turns_unreachable_with_the_reason_and_back_when_mended(
    launcher: Launcher,
    network: Network,
    serve: ServeIn,
    record_property: Callable[[str, object], None],
) -> None:
    spread = web_from_b_and_c(launcher, serve, lb_scheme="static", args=FAST_HEALTH)
    a, b, address = spread.a, spread.b, spread.address
    a.wait_reachable("b", True, timeout_s=RECOVERY_BOUND_S)
    assert talk_in(a.site, address).received == b"b"

    cut_at = time.time()
    network.cut(b.site)
    # A connection made right after the cut, long before b is declared unreachable: its open
    # on b waits until b misses a heartbeat (at most one beat timeout), then c serves it;
    # it never waits out the 15 s verdict timeout.
    early = talk_in(a.site, address, timeout_s=EARLY_FAILOVER_BOUND_S)
    early_served_at = time.time()
    assert (early.received, early.end) == (b"c", "eof"), str(early)
    entry = a.wait_reachable("b", False, timeout_s=CUT_DETECTION_BOUND_S)
    unreachable_at = time.time()
    # The unreachable primary is tried last: the backup serves at once, no wait on b.
    exchange = talk_in(a.site, address, timeout_s=5)
    served_at = time.time()
    assert (exchange.received, exchange.end) == (b"c", "eof"), str(exchange)
    assert entry["reason"].startswith(f"peer b gateway at {b.site.address}:{PEER_PORT}: ")
    assert entry["reason"].endswith(" within 1s"), entry  # silence, not a refusal
    b.wait_reachable("a", False, timeout_s=CUT_DETECTION_BOUND_S)  # each side decides alone
    assert a.peer_status("c")["reachable"] is True  # and only about the cut site

    network.mend(b.site)
    mended_at = time.time()
    entry = a.wait_reachable("b", True, timeout_s=RECOVERY_BOUND_S)
    back_at = time.time()
    assert entry["reason"] == "heartbeat ok"
    b.wait_reachable("a", True, timeout_s=RECOVERY_BOUND_S)
    assert talk_in(a.site, address).received == b"b"  # the primary again

    report(
        record_property,
        {
            "link cut -> a connection made at once served by the backup": (
                early_served_at - cut_at
            ),
            "link cut -> b unreachable in `status -o json`": unreachable_at - cut_at,
            "unreachable in status -> a connection served by the backup": (
                served_at - unreachable_at
            ),
            "link up -> b reachable again in `status -o json`": back_at - mended_at,
        },
    )


def test_a_peer_with_two_gateways_is_served_by_whichever_answers_when_one_dies(
    launcher: Launcher, serve: ServeIn, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two gateway processes of peer b, at sites b and c, each with its own copy of b's peer
    directory and its own state, as on two machines."""
    replica_dir = tmp_path_factory.mktemp("replica") / "b"
    shutil.copytree(
        launcher.fabric.peer_dir("b"), replica_dir, ignore=shutil.ignore_patterns("gateway.json")
    )
    a, first, second = in_parallel(
        partial(launcher.start, "a", *FAST_HEALTH),
        partial(launcher.start, "b", *FAST_HEALTH),
        partial(launcher.start, "c", *FAST_HEALTH, peer="b", peer_dir=replica_dir),
    )
    b_at_both = peer("b", *first.addresses, *second.addresses)
    apply_all(
        {
            a: [b_at_both, import_("web", "default", peer="b"), ALLOW_ALL],
            first: [a.as_peer(), web_export(serve, "b", answer="b@b"), ALLOW_ALL],
            second: [a.as_peer(), web_export(serve, "c", answer="b@c"), ALLOW_ALL],
        }
    )
    address = a.import_address("web")
    a.wait_reachable("b", True, timeout_s=RECOVERY_BOUND_S)
    assert talk_in(a.site, address).received == b"b@b"  # the gateways are tried in order

    with ClientLoop(a.site, address) as clients:
        kills = [first.crash()]
        clients.first(started_after=kills[0], served_by="b@c", timeout_s=5)
        stays_reachable(a, "b")

        first = launcher.restart(first)
        # A heartbeat has found it back: connections go to the first gateway again.
        clients.first(started_after=time.time(), served_by="b@b", timeout_s=RECOVERY_BOUND_S)
        kills.append(second.crash())
        clients.first(started_after=kills[1], served_by="b@b", timeout_s=5)
        stays_reachable(a, "b")
    # Only a connection under way at a kill may have been cut; every other one was served.
    spared = [x for x in clients.attempts if not any(x.started <= k <= x.ended for k in kills)]
    assert {x.end for x in spared} == {"eof"}, clients.attempts
    after_kill = clients.between(kills[1] + 0.1, float("inf"))
    assert {x.served_by for x in after_kill} == {"b@b"}, after_kill


def test_a_gateway_reachable_at_two_addresses_keeps_serving_when_one_link_is_cut(
    launcher: Launcher, network: Network, serve: ServeIn
) -> None:
    """Site d has two links; its gateway listens on both, and a knows both addresses. With
    the first cut, heartbeats still get answers, and connections go by the second address
    without waiting for the first (once a heartbeat found it silent)."""
    a, d = in_parallel(
        partial(launcher.start, "a", *FAST_HEALTH),
        partial(launcher.start, "d", *FAST_HEALTH, listen_host="0.0.0.0"),
    )
    apply_all(
        {
            a: [d.as_peer(), import_("web", "default", peer="d"), ALLOW_ALL],
            d: [a.as_peer(), web_export(serve, "d"), ALLOW_ALL],
        }
    )
    address = a.import_address("web")
    a.wait_reachable("d", True, timeout_s=RECOVERY_BOUND_S)
    assert talk_in(a.site, address).received == b"d"  # by the first address: a tunnel is open

    network.cut(d.site, link=0)
    # A beat to the cut address times out (after 1 s): a then dials that address afresh for
    # its next beats, and those dials wait for the SYN's answer; the address is known silent.
    wait_until(
        lambda: dialing(a.site, d.site.addresses[0], PEER_PORT),
        what=f"a's heartbeats redial d at {d.site.addresses[0]} (a beat there timed out)",
        timeout_s=CUT_DETECTION_BOUND_S,
    )
    assert a.peer_status("d")["reachable"] is True, a.peer_status("d")
    for _ in range(5):
        started = time.monotonic()
        exchange = talk_in(a.site, address, timeout_s=5)
        assert (exchange.received, exchange.end) == (b"d", "eof"), str(exchange)
        assert time.monotonic() - started < 2.5  # no wait for the cut address (5 s or more)
    assert a.peer_status("d")["reachable"] is True, a.peer_status("d")

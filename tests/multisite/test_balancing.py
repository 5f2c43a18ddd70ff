"""Load balancing across exporting sites (DESIGN §5): round-robin spreads new connections."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.multisite.sites import FAST_HEALTH, Launcher, web_from_b_and_c
from tests.multisite.traffic import ServeIn, talk_in

pytestmark = pytest.mark.multisite

CONNECTIONS = 40


def test_round_robin_spreads_connections_across_two_exporting_sites(
    launcher: Launcher, serve: ServeIn
) -> None:
    spread = web_from_b_and_c(launcher, serve, lb_scheme="round-robin", args=FAST_HEALTH)

    served: Counter[str] = Counter()
    for _ in range(CONNECTIONS):
        exchange = talk_in(spread.a.site, spread.address)
        assert exchange.end == "eof", str(exchange)
        served[exchange.received.decode()] += 1

    assert set(served) == {"b", "c"}, served
    for site in "bc":
        assert 0.4 * CONNECTIONS <= served[site] <= 0.6 * CONNECTIONS, served

"""Bounded soak: 200 concurrent tunnels kept busy for 2 minutes through two
real gateways, every byte checked both ways, then the gateways' file descriptors and memory
back at their level before the load.

Run it with ``.venv/bin/pytest -m soak tests/soak -s`` (about 5 minutes for both tunnel
modes; ``-k mux`` or ``-k basic`` for one); it prints its figures. The load and what is
measured are described in ``tests/integration/load.py``; its 10-second variant runs in the
default suite (``tests/integration/test_soak_smoke.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.load import soak_and_check

pytestmark = pytest.mark.soak

TUNNELS = 200
DURATION_S = 120.0
WARMUP_S = 10.0


@pytest.mark.timeout(DURATION_S + WARMUP_S + 240)
@pytest.mark.parametrize("mode", ["mux", "basic"])
def test_200_busy_tunnels_for_2_minutes_lose_no_byte_and_leave_nothing_behind(
    tmp_path: Path, mode: str
) -> None:
    soak_and_check(tmp_path, tunnels=TUNNELS, duration_s=DURATION_S, warmup_s=WARMUP_S, mode=mode)

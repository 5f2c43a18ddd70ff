"""The soak in small: 50 tunnels busy for 10 seconds, every byte checked,
file descriptors and memory back afterwards; so that the soak's code runs in the default
suite and cannot rot. The full soak: ``.venv/bin/pytest -m soak tests/soak``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.load import soak_and_check

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["mux", "basic"])
def test_50_busy_tunnels_for_10_seconds_lose_no_byte_and_leave_nothing_behind(
    tmp_path: Path, mode: str
) -> None:
    soak_and_check(tmp_path, tunnels=50, duration_s=10.0, warmup_s=3.0, mode=mode)

"""The soak tests run only when asked for: ``-m soak`` (e.g. ``.venv/bin/pytest -m soak
tests/soak``, or ``./test.sh -m soak``).

A soak takes minutes, so a plain ``pytest`` (the default suite, CI) deselects every test
marked ``soak`` unless the ``-m`` expression names the marker; its short variant,
``tests/integration/test_soak_smoke.py``, runs in the default suite instead.
"""

from __future__ import annotations

import pytest

SOAK = "soak"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{SOAK}: long load test, deselected unless asked for with -m {SOAK}"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SOAK in (config.getoption("markexpr") or ""):
        return
    deselected = [item for item in items if item.get_closest_marker(SOAK)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(SOAK)]

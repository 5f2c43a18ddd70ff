"""Fixtures for the Kubernetes-mode tests: an emulated API server per test.

Every test gets a fresh ``KubeAPI`` (tests/k8s/apiserver.py) serving on an ephemeral port of
127.0.0.1, so no test sees another's objects or its faults; starting one costs milliseconds.
It is closed however the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.k8s.apiserver import KubeAPI


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8s: runs against the emulated Kubernetes API in-process (select: -m k8s)"
    )


@pytest.fixture
def api() -> Iterator[KubeAPI]:
    with KubeAPI() as started:
        yield started

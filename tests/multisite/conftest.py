"""Fixtures for the multisite tests: sites as network namespaces, real gateways inside them.

One network per test session (a test that cuts a link mends it when it ends): a bridge, the
sites ``a``, ``b`` and ``c`` with one address each, and ``d`` with two links and two
addresses. One fabric per session too, with one peer directory per peer. Gateways are per
test, each with its own state file, so no test sees another's resources, and a test may kill
and restart its gateways as it likes.

Clean-up runs however a test ends: the test's gateways are stopped by PID (SIGTERM, checked
for exit 0; SIGKILL after a failure) and its services closed, links it cut are mended; at
the end of the session the namespaces are deleted.

Without root or ``ip`` the tests are skipped with the reason; as root (CI) they run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.gateways import Fabric
from tests.integration.services import Handler, TCPService
from tests.multisite.netns import NetnsError, Network, unavailable_reason
from tests.multisite.sites import Launcher
from tests.multisite.traffic import ServeIn, serve_in

SITES = ("a", "b", "c")
TWO_LINK_SITE = "d"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "multisite: runs real gateways in network namespaces, as root (select: -m multisite)",
    )


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    if reason := unavailable_reason():
        pytest.skip(reason)
    net = Network()
    try:
        try:
            net.open()
        except NetnsError as exc:  # root without the right to make namespaces (a container)
            pytest.skip(f"cannot create network namespaces here: {exc}")
        for name in SITES:
            net.add_site(name)
        net.add_site(TWO_LINK_SITE, links=2)
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Fabric:
    return Fabric(tmp_path_factory.mktemp("multisite"), "fab")


@pytest.fixture
def launcher(network: Network, fabric: Fabric, tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(network, fabric, tmp_path)
    try:
        yield launcher
    finally:
        try:
            launcher.stop_all()
        finally:
            network.mend_all()


@pytest.fixture
def serve(network: Network) -> Iterator[ServeIn]:
    """``serve(site_name, handler)``: a TCP service inside the site, closed when the test
    ends."""
    started: list[TCPService] = []

    def start(site_name: str, handle: Handler) -> TCPService:
        service = serve_in(network.sites[site_name], handle)
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()

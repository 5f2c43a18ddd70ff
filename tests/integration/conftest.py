"""Fixtures for integration tests: a fabric, real gateways on loopback, local services.

Sharing and independence: starting a fabric and two gateways costs about a second, so each test
module gets one ``pair`` (gateway ``a`` imports, gateway ``b`` exports) for all its tests.
What keeps the tests independent is the ``link`` fixture: every test works in a namespace of
its own, and AccessPolicies only apply in their namespace (DESIGN §4), so one test's policies
cannot decide another's connections. PrivilegedAccessPolicies are cluster-wide; ``link`` scopes
them to the test's namespace with a ``to`` selector and deletes them when the test ends.

Every gateway started here is stopped with SIGTERM at the end of its module, and the module
fails unless each one exits 0 and removes its gateway.json.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.documents import (
    ALL,
    EXPORT_NAMESPACE,
    Document,
    access_policy,
    export,
    import_,
    peer,
    privileged_policy,
    selector,
)
from tests.integration.gateways import Fabric, Gateway, parse_address, stop_all
from tests.integration.services import Handler, TCPService
from tests.integration.waiting import wait_until

LISTEN_TIMEOUT_S = 5.0
ALLOW_ALL = "allow-all"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: runs real gateway processes on loopback (select: -m integration)"
    )


@pytest.fixture(scope="module")
def tunnel_mode() -> str | None:
    """``--tunnel-mode`` of the pair's source gateway (None: the default). A module that must
    hold in every mode overrides this fixture with ``params``."""
    return None


def every_tunnel_mode() -> Any:
    """The ``tunnel_mode`` fixture of a module that must hold in every mode: write
    ``tunnel_mode = every_tunnel_mode()`` in it, and each of its tests runs once per mode."""

    @pytest.fixture(scope="module", params=["basic", "mux"])
    def tunnel_mode(request: pytest.FixtureRequest) -> str:
        mode: str = request.param
        return mode

    return tunnel_mode


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory, tunnel_mode: str | None) -> Fabric:
    """One per module, and one per tunnel mode in a module that runs in several: gateways of
    different modes never share a peer directory or its state."""
    return Fabric(tmp_path_factory.mktemp(f"fabric-{tunnel_mode or 'default'}"), "fab")


StartGateway = Callable[..., Gateway]


@pytest.fixture(scope="module")
def start_gateway(fabric: Fabric) -> Iterator[StartGateway]:
    """``start_gateway(peer, *extra_args)``: a running gateway, stopped (and checked) later."""
    started: list[Gateway] = []

    def start(peer_name: str, *extra_args: str) -> Gateway:
        # One log per run, so a restarted gateway's log holds only its own lines.
        runs = sum(gateway.name == peer_name for gateway in started)
        log_path = fabric.root / f"gateway-{peer_name}-{runs + 1}.log"
        gateway = Gateway(fabric.peer_dir(peer_name), log_path=log_path, extra_args=extra_args)
        started.append(gateway)
        return gateway

    yield start
    stop_all(started)


@dataclass(frozen=True, slots=True)
class Pair:
    """Gateways ``a`` and ``b`` (labels ``site=a``, ``site=b``), each a Peer of the other."""

    source: Gateway  # "a": imports, so it makes the egress decisions
    target: Gateway  # "b": exports, so it makes the ingress decisions


@pytest.fixture(scope="module")
def pair(start_gateway: StartGateway, tunnel_mode: str | None) -> Pair:
    mode = ("--tunnel-mode", tunnel_mode) if tunnel_mode else ()
    a = start_gateway("a", "--label", "site=a", *mode)
    b = start_gateway("b", "--label", "site=b")
    a.apply(peer("b", b.listen))
    b.apply(peer("a", a.listen))
    return Pair(source=a, target=b)


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace named after the test (readable in gateway logs), unique in its module."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower().removeprefix("test_"))
    return name[:63].strip("-")


@dataclass
class Link:
    """One test's slice of the pair: Exports on ``target``, Imports on ``source``, policies on
    either, all in the test's own namespace."""

    source: Gateway
    target: Gateway
    namespace: str
    _privileged: list[tuple[Gateway, str]] = field(default_factory=list)

    def expose(self, name: str, port: int, *also: Document) -> None:
        """An Export ``name`` on the target for the local service at ``port``."""
        self.target.apply(export(name, self.namespace, port), *also)

    def import_(
        self, name: str, *also: Document, export_name: str | None = None
    ) -> tuple[str, int]:
        """An Import ``name`` (port 0) on the source; returns its listening address."""
        imp = import_(name, self.namespace, peer=self.target.name, export_name=export_name)
        self.source.apply(imp, *also)
        return self.listen_address(name)

    def open(self, name: str, port: int, *, allow: bool = False) -> tuple[str, int]:
        """Export the service at ``port`` as ``name`` and import it: the import's address.

        ``allow`` applies an allow-all AccessPolicy on both sides with them (one CLI run per
        side: tests about the data path need not pay for policy steps they do not test).
        """
        also = [access_policy(ALLOW_ALL, self.namespace, "allow")] if allow else []
        self.expose(name, port, *also)
        return self.import_(name, *also)

    def listen_address(self, name: str) -> tuple[str, int]:
        def listen() -> str | None:
            status = self.source.get("import", name, self.namespace).get("status") or {}
            return status.get("listen")

        where = wait_until(
            listen,
            what=f"import {self.namespace}/{name} has status.listen",
            timeout_s=LISTEN_TIMEOUT_S,
        )
        return parse_address(where)

    def policy(
        self,
        gateway: Gateway,
        name: str,
        action: str,
        *,
        from_: Sequence[Document] = ALL,
        to: Sequence[Document] = ALL,
    ) -> None:
        """An AccessPolicy in the test's namespace (a side not given matches everything)."""
        gateway.apply(access_policy(name, self.namespace, action, from_=from_, to=to))

    def allow_both(self) -> None:
        """An AccessPolicy ``allow-all`` on both sides."""
        for gateway in (self.source, self.target):
            self.policy(gateway, ALLOW_ALL, "allow")

    def privileged(self, gateway: Gateway, name: str, action: str) -> str:
        """A PrivilegedAccessPolicy for this test's exports only; returns its (unique) name."""
        unique = f"{self.namespace}-{name}"[:253]
        scope = [selector({EXPORT_NAMESPACE: self.namespace})]
        gateway.apply(privileged_policy(unique, action, to=scope))
        self._privileged.append((gateway, unique))
        return unique

    def egress_log(self, import_name: str, outcome: str, count: int = 1) -> str:
        """The ``count``-th line where the source logs ``egress <outcome>`` for the import."""
        ref = f"{self.namespace}/{import_name}"
        return self.source.wait_for_log(rf"egress {outcome} import={ref} ", count=count)

    def ingress_log(self, export_name: str, outcome: str, count: int = 1) -> str:
        """The ``count``-th line where the target logs ``ingress <outcome>`` for the export."""
        ref = f"{self.namespace}/{export_name}"
        return self.target.wait_for_log(
            rf"ingress {outcome} peer={self.source.name} export={ref} ", count=count
        )

    def clean_up(self) -> None:
        for gateway, name in self._privileged:
            gateway.delete("privilegedaccesspolicy", name)


@pytest.fixture
def link(pair: Pair, namespace: str) -> Iterator[Link]:
    link = Link(pair.source, pair.target, namespace)
    yield link
    link.clean_up()


StartService = Callable[[Handler], TCPService]


@pytest.fixture
def start_service() -> Iterator[StartService]:
    """``start_service(handler)``: a local TCP service, closed when the test ends."""
    started: list[TCPService] = []

    def start(handle: Handler) -> TCPService:
        service = TCPService(handle)
        started.append(service)
        return service

    yield start
    for service in started:
        service.close()

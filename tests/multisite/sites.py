"""Gateways living in sites (network namespaces), for the multisite tests.

A site's gateway is the integration suite's ``Gateway`` run behind ``ip netns exec``: the
same ``clusterlink gateway run`` and the same CLI, only inside the site. Every site uses the
default ports (8443 peers, 8444 admin) on its own address, as separate machines would, so a
gateway started again listens where its peers expect it. Each gateway gets its own state file
(``--state``) under the test's directory: tests share the fabric's peer directories but never
each other's resources.

A CLI run or a gateway start is mostly a Python process starting up, so independent ones run
side by side (``in_parallel``, ``apply_all``, ``Launcher.start_all``): the suite stays fast.

Invariants: every gateway started through ``Launcher`` is stopped by it when the test ends:
SIGTERM and a checked exit 0 for the ones still running, nothing for the ones the test
crashed on purpose (``crash``); any other end fails the test.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tests.integration.documents import Document, access_policy, import_from, peer
from tests.integration.gateways import Fabric, Gateway, parse_address, stop_all
from tests.integration.waiting import wait_until
from tests.multisite.netns import Network, Site, entered
from tests.multisite.traffic import ServeIn, web_export

__all__ = [
    "ADMIN_PORT",
    "ALLOW_ALL",
    "FAST_HEALTH",
    "METRICS_PORT",
    "PEER_PORT",
    "Launcher",
    "SiteGateway",
    "Spread",
    "apply_all",
    "in_parallel",
    "peers_of",
    "web_from_b_and_c",
]

T = TypeVar("T")

PEER_PORT = 8443
ADMIN_PORT = 8444
METRICS_PORT = 9090
FAST_HEALTH = ("--heartbeat-interval", "0.2")
"""For tests about what heartbeats decide rather than how fast: five failures take a second
when each fails at once (refused). A beat's timeout stays 1 s, so a cut link still needs
about five seconds."""
ALLOW_ALL = access_policy("allow-all", "default", "allow")


class SiteGateway(Gateway):
    """A ``clusterlink gateway run`` inside ``site``, and the CLI run there against it."""

    def __init__(
        self,
        site: Site,
        peer_dir: Path,
        *,
        log_path: Path,
        state_path: Path,
        extra_args: tuple[str, ...] = (),
        listen_host: str | None = None,
    ) -> None:
        self.site = site
        self.state_path = state_path
        self.args = extra_args
        self.listen_host = listen_host or site.address
        self.is_crashed = False
        super().__init__(
            peer_dir,
            log_path=log_path,
            extra_args=("--state", str(state_path), *extra_args),
            prefix=site.prefix,
            listen=f"{self.listen_host}:{PEER_PORT}",
            admin_listen=f"127.0.0.1:{ADMIN_PORT}",
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where other sites reach this gateway: each address of its site."""
        return [(address, PEER_PORT) for address in self.site.addresses]

    def as_peer(self) -> Document:
        """The Peer document other sites need for this gateway."""
        return peer(self.name, *self.addresses)

    def crash(self) -> float:
        """SIGKILL, as a crash; returns ``time.time()`` of the signal."""
        killed_at = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.is_crashed = True
        return killed_at

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = self.cl("status", "-o", "json").json()
        return document

    def peer_status(self, name: str) -> dict[str, Any]:
        """The entry of Peer ``name`` in ``status -o json``."""
        peers = {entry["name"]: entry for entry in self.status()["peers"]}
        entry: dict[str, Any] = peers[name]
        return entry

    def wait_reachable(self, name: str, reachable: bool, *, timeout_s: float) -> dict[str, Any]:
        """Poll ``status -o json`` until Peer ``name`` shows ``reachable``; that entry."""

        def shows() -> dict[str, Any] | None:
            entry = self.peer_status(name)
            return entry if entry.get("reachable") is reachable else None

        return wait_until(
            shows,
            what=f"{self.name} shows peer {name} reachable={reachable}",
            timeout_s=timeout_s,
            interval_s=0.1,
        )

    def import_address(self, name: str, namespace: str = "default") -> tuple[str, int]:
        """Where the Import ``name`` listens (inside this site)."""

        def listen() -> str | None:
            status = self.get("import", name, namespace).get("status") or {}
            return status.get("listen")

        where = wait_until(listen, what=f"import {namespace}/{name} has status.listen")
        return parse_address(where)

    def metrics(self) -> str:
        """The text of ``/metrics`` (the gateway must run with ``--metrics-listen``)."""
        with entered(self.site):
            sock = socket.create_connection(("127.0.0.1", METRICS_PORT), timeout=5)
        with sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
            answer = bytearray()
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = bytes(answer).partition(b"\r\n\r\n")
        assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), head[:200]
        return body.decode()


@dataclass
class Launcher:
    """Starts gateways in sites for one test and stops every one of them afterwards."""

    network: Network
    fabric: Fabric
    workdir: Path
    started: list[SiteGateway] = field(default_factory=list)

    def start(
        self,
        site_name: str,
        *extra_args: str,
        peer: str | None = None,
        peer_dir: Path | None = None,
        state_path: Path | None = None,
        listen_host: str | None = None,
    ) -> SiteGateway:
        """The gateway of ``peer`` (default: the site's own name) in site ``site_name``."""
        site = self.network.sites[site_name]
        name = peer or site_name
        runs = sum(g.site.name == site_name and g.name == name for g in self.started)
        gateway = SiteGateway(
            site,
            peer_dir or self.fabric.peer_dir(name),
            log_path=self.workdir / f"gateway-{name}-at-{site_name}-{runs + 1}.log",
            state_path=state_path or self.workdir / f"state-{name}-at-{site_name}.db",
            extra_args=extra_args,
            listen_host=listen_host,
        )
        self.started.append(gateway)
        return gateway

    def start_all(self, *site_names: str, args: tuple[str, ...] = ()) -> list[SiteGateway]:
        """The gateways of these sites (each its own peer), started side by side."""
        return in_parallel(*(partial(self.start, name, *args) for name in site_names))

    def restart(self, gateway: SiteGateway) -> SiteGateway:
        """The same gateway again: same site, peer directory, state, flags and ports."""
        return self.start(
            gateway.site.name,
            *gateway.args,
            peer=gateway.name,
            peer_dir=gateway.peer_dir,
            state_path=gateway.state_path,
            listen_host=gateway.listen_host,
        )

    def stop_all(self) -> None:
        """Stop (and check) every gateway the test did not crash on purpose."""
        stop_all(gateway for gateway in self.started if not gateway.is_crashed)


def in_parallel(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` side by side (each CLI run or gateway start is mostly a Python process
    starting up); their results in order, or the first exception."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def peers_of(gateway: SiteGateway, everyone: Sequence[SiteGateway]) -> list[Document]:
    """The Peer documents ``gateway`` needs for every other gateway of ``everyone``."""
    return [other.as_peer() for other in everyone if other is not gateway]


def apply_all(plan: Mapping[SiteGateway, Sequence[Document]]) -> None:
    """One ``apply`` per gateway of its documents, all gateways at once."""
    in_parallel(*(partial(gateway.apply, *documents) for gateway, documents in plan.items()))


@dataclass(frozen=True, slots=True)
class Spread:
    """Site a imports ``default/web`` from both b and c (each answers with its name)."""

    a: SiteGateway
    b: SiteGateway
    c: SiteGateway
    address: tuple[str, int]  # the import's, inside site a


def web_from_b_and_c(
    launcher: Launcher, serve: ServeIn, *, lb_scheme: str, args: tuple[str, ...] = ()
) -> Spread:
    """Gateways a, b and c, each a Peer of the others, everything allowed; b and c export a
    service answering with its site's name as ``web``, and a imports it from [b, c]."""
    sites = a, b, c = launcher.start_all("a", "b", "c", args=args)
    web = import_from("web", "default", peers=["b", "c"], lb_scheme=lb_scheme)
    apply_all(
        {
            a: [*peers_of(a, sites), web, ALLOW_ALL],
            b: [*peers_of(b, sites), web_export(serve, "b"), ALLOW_ALL],
            c: [*peers_of(c, sites), web_export(serve, "c"), ALLOW_ALL],
        }
    )
    return Spread(a, b, c, a.import_address("web"))

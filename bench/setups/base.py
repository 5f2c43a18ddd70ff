"""What every setup gets and gives: the shared context in, the client-side entry out.

A setup is one way of carrying the workloads from side A to side B (a direct connection, a
pair of stunnels, of HAProxies, of gateways). Its ``start`` function starts whatever
processes it needs in ``context.procs`` (and only there: those PIDs are the ones whose CPU
and memory the run reports), waits until an echo goes through, and returns the ``Entry``:
where the clients connect on side A. The runner stops the processes afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.credentials import Credentials
from bench.errors import BenchError
from bench.loadgen import LoadGen
from bench.ports import PortPicker
from bench.processes import ProcessSet
from bench.topology import Topology

__all__ = [
    "SERVICES",
    "Entry",
    "SetupContext",
    "StartSetup",
    "Targets",
    "TunnelPorts",
    "plan_tunnel_ports",
    "wait_for_echo",
]

READY_TIMEOUT_S = 30.0
SERVICES = ("echo", "iperf")


@dataclass(frozen=True, slots=True)
class Targets:
    """The servers on side B (listening on ``topology.server_host``)."""

    echo_port: int
    iperf_port: int


@dataclass(frozen=True, slots=True)
class Entry:
    """Where the clients on side A connect to reach each server through the setup.

    A TLS setup also names its side-B listener and a request it answers there, so that the
    run can check who that listener lets in (``bench.mtls_check``).
    """

    host: str
    echo_port: int
    iperf_port: int
    tls_port: int | None = None
    tls_probe: bytes = b""
    udp_port: int | None = None  # where iperf3 -u reaches the iperf server; None: no UDP


@dataclass(frozen=True, slots=True)
class SetupContext:
    topology: Topology
    targets: Targets
    credentials: Credentials
    loadgen: LoadGen
    ports: PortPicker
    procs: ProcessSet
    work_dir: Path


@dataclass(frozen=True, slots=True)
class TunnelPorts:
    """The ports of a two-ended C tunnel, by service name (``SERVICES``)."""

    entry: Entry
    client_side: dict[str, int]  # where side A's end accepts plain TCP
    tls: dict[str, int]  # where side B's end accepts TLS
    upstream: dict[str, int]  # where side B's servers listen


ECHO_PROBE = b"x" * 64


def plan_tunnel_ports(context: SetupContext) -> TunnelPorts:
    """Ports for a C tunnel pair; its TLS check goes to side B's echo service."""
    tls = {name: context.ports.pick() for name in SERVICES}
    entry = Entry(
        "127.0.0.1",
        context.ports.pick(),
        context.ports.pick(),
        tls_port=tls["echo"],
        tls_probe=ECHO_PROBE,
    )
    targets = context.targets
    return TunnelPorts(
        entry=entry,
        client_side={"echo": entry.echo_port, "iperf": entry.iperf_port},
        tls=tls,
        upstream={"echo": targets.echo_port, "iperf": targets.iperf_port},
    )


StartSetup = Callable[[SetupContext], Entry]


def wait_for_echo(context: SetupContext, entry: Entry, what: str) -> None:
    """Wait until a 64-byte echo goes through ``entry``; otherwise fail with the logs' tails."""
    if not context.loadgen.probe(context.topology, entry.host, entry.echo_port, READY_TIMEOUT_S):
        logs = context.procs.log_tails()
        raise BenchError(f"no echo through {what} within {READY_TIMEOUT_S:.0f} s; logs: {logs}")

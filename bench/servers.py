"""The servers on side B that every setup carries traffic to: an echo server and iperf3.

They start once per topology and serve all setups in turn, so every setup talks to the very
same server processes. Neither counts as a tunnel process: their CPU and memory are not
reported. The echo server is ``loadgen echo`` (epoll, one thread, holds idle connections);
iperf3 runs in server mode, one test at a time, for the whole topology.
"""

from __future__ import annotations

import shutil

from bench.errors import BenchError
from bench.loadgen import LoadGen
from bench.ports import PortPicker
from bench.processes import ProcessSet
from bench.setups.base import Targets
from bench.topology import Side, Topology

__all__ = ["start_servers"]

_READY_TIMEOUT_S = 10.0


def start_servers(
    procs: ProcessSet, topology: Topology, loadgen: LoadGen, ports: PortPicker
) -> Targets:
    """Start both servers on side B, listening on ``topology.server_host``; wait until ready."""
    if (iperf3 := shutil.which("iperf3")) is None:
        raise BenchError("iperf3 is not installed; run ./setup.sh (Debian package iperf3)")
    host = topology.server_host
    targets = Targets(echo_port=ports.pick(), iperf_port=ports.pick())
    procs.start("echo", topology.argv(Side.SERVER, loadgen.echo_argv(host, targets.echo_port)))
    iperf_argv = [iperf3, "--server", "--bind", host, "--port", str(targets.iperf_port)]
    iperf = procs.start("iperf3-server", topology.argv(Side.SERVER, [*iperf_argv, "--forceflush"]))
    procs.wait_for_line("iperf3-server", iperf, "Server listening", _READY_TIMEOUT_S)
    if not loadgen.probe(topology, host, targets.echo_port, _READY_TIMEOUT_S):
        raise BenchError(f"the echo server did not answer: {procs.log_tails()}")
    return targets

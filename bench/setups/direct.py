"""The baseline: the clients connect straight to the servers, no tunnel in between.

Its numbers are the ceiling of the clients, the servers and the topology together; a tunnel
can only come close to them. It starts no process, so it has no CPU or memory to report.
"""

from __future__ import annotations

from bench.setups.base import Entry, SetupContext

__all__ = ["start_direct"]


def start_direct(context: SetupContext) -> Entry:
    targets = context.targets
    host, iperf = context.topology.server_host, targets.iperf_port
    return Entry(host, targets.echo_port, iperf, udp_port=iperf)

"""The workloads, each run against one setup's entry, with the tunnel's CPU time around it.

- ``throughput-1``, ``throughput-8``: iperf3 with 1 or 8 parallel streams; Gbit/s received.
- ``pingpong``: loadgen, 1-byte round trips on ONE connection; round trips/s and latency.
- ``connrate-1``, ``connrate-16``: loadgen, connect + 64-byte echo + close, 1 or 16 at a time;
  connections/s and set-up latency.
- ``udp``: iperf3 -u, one flow of 1,200-byte datagrams offered at ``UDP_OFFERED_MBIT_S``;
  datagrams/s received and the loss, for setups that carry UDP (direct, clusterlink).
- ``idle-tunnels``: loadgen, N connections that each echo 1 byte and then stay open; the
  tunnel's RSS per connection.

Every result also carries ``tunnel_cpu_s`` (user + system CPU of the setup's processes while
the workload ran) and ``tunnel_peak_rss_kib`` (their VmHWM right after it). ``idle-tunnels``
subtracts the tunnel's RSS just before the connections open from its RSS while they are all
open, and divides by the number opened. For clusterlink in the basic mode each tunnel is also
one TLS connection between the gateways, so this is the memory of a tunnel *and* its TLS
connection (as it is for stunnel and HAProxy).

Efficiency: each run of a throughput or ping-pong workload also carries the tunnel's CPU per
unit of work, ``cpu_s_per_gb`` or ``cpu_s_per_1k_round_trips``: the cores the tunnel kept busy
during that run (its CPU seconds over the run's wall time) divided by the rate measured. A
faster tunnel that burns more CPU per byte shows here; per run, so that it belongs to the run
whose rate is reported.

A set-up latency sample runs from before ``connect()`` until the 64-byte echo is back: through
a tunnel the local ``connect()`` returns at once, the tunnel's own set-up happens behind it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bench.errors import BenchError
from bench.loadgen import LoadGen
from bench.processes import ProcessSet
from bench.procfs import cpu_seconds, peak_rss_kib, rss_kib
from bench.setups.base import Entry
from bench.topology import Side, Topology

__all__ = ["Workload", "WorkloadRun", "run_workload"]

_IDLE_SETTLE_S = 1.0  # after the last idle connection opened, before RSS is read
_IPERF_SLACK_S = 60.0
UDP_OFFERED_MBIT_S = 1000  # about 104,000 datagrams/s of 1,200 bytes: more than a gateway relays
UDP_DATAGRAM_BYTES = 1200


class Workload(StrEnum):
    THROUGHPUT_1 = "throughput-1"
    THROUGHPUT_8 = "throughput-8"
    PINGPONG = "pingpong"
    CONNRATE_1 = "connrate-1"
    CONNRATE_16 = "connrate-16"
    UDP = "udp"
    IDLE_TUNNELS = "idle-tunnels"


@dataclass(frozen=True, slots=True)
class WorkloadRun:
    """Everything one workload needs: the setup's entry and the knobs of the run."""

    topology: Topology
    entry: Entry
    loadgen: LoadGen
    client_procs: ProcessSet
    tunnel_pids: list[int]
    duration_s: float
    throughput_s: int
    warmup_s: float
    idle_tunnels: int
    repeat: int


def run_workload(workload: Workload, run: WorkloadRun) -> dict[str, Any]:
    """Run one workload; its raw numbers plus the tunnel's CPU time and peak RSS.

    With ``repeat`` > 1 a measuring workload runs that many times and the run with the median
    headline number stands for it (all runs are kept under ``runs``). On a small VM the
    scheduler's placement of client, tunnel and server on the vCPUs can change a round trip
    several-fold from one run to the next; the median of a few runs is steadier than any one.
    """
    cpu_before = cpu_seconds(run.tunnel_pids)
    started = time.monotonic()
    times = 1 if workload is Workload.IDLE_TUNNELS else run.repeat
    runs = [_measured_run(workload, run) for _ in range(times)]
    result = _median_run(runs)
    if times > 1:
        result["runs"] = runs
    result["wall_s"] = time.monotonic() - started
    if run.tunnel_pids:
        result["tunnel_cpu_s"] = cpu_seconds(run.tunnel_pids) - cpu_before
        result["tunnel_peak_rss_kib"] = peak_rss_kib(run.tunnel_pids)
    return result


def _measured_run(workload: Workload, run: WorkloadRun) -> dict[str, Any]:
    """One run of ``workload``, with the tunnel's CPU per unit of work when it has a rate."""
    cpu_before = cpu_seconds(run.tunnel_pids) if run.tunnel_pids else 0.0
    started = time.monotonic()
    result = _RUNNERS[workload](run)
    if not run.tunnel_pids:
        return result
    cores = (cpu_seconds(run.tunnel_pids) - cpu_before) / (time.monotonic() - started)
    if result.get("gbit_per_s"):
        result["cpu_s_per_gb"] = cores / (result["gbit_per_s"] / 8)
    elif workload is Workload.PINGPONG and result.get("rate_per_s"):
        result["cpu_s_per_1k_round_trips"] = cores / (result["rate_per_s"] / 1000)
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose headline number (Gbit/s or rate) is the median; the only run if one."""
    keys = ("gbit_per_s", "rate_per_s", "datagrams_per_s")
    key = next((k for k in keys if k in runs[0]), None)
    if key is None:
        return dict(runs[0])
    return dict(sorted(runs, key=lambda r: float(r[key]))[len(runs) // 2])


def _iperf(run: WorkloadRun, streams: int) -> dict[str, Any]:
    argv = [
        *("iperf3", "--client", run.entry.host, "--port", str(run.entry.iperf_port)),
        *("--time", str(run.throughput_s), "--parallel", str(streams), "--json"),
    ]
    if run.throughput_s >= 3:
        argv += ["--omit", "1"]  # leave TCP's ramp-up out of the average
    end = _iperf_report(run, argv)
    return {
        "streams": streams,
        "seconds": end["sum_received"]["seconds"],
        "gbit_per_s": end["sum_received"]["bits_per_second"] / 1e9,
        "sent_gbit_per_s": end["sum_sent"]["bits_per_second"] / 1e9,
        "retransmits": end["sum_sent"].get("retransmits"),
        "iperf_cpu_percent": end.get("cpu_utilization_percent"),
    }


def _udp(run: WorkloadRun) -> dict[str, Any]:
    """Datagrams/s that arrived and the share lost, as the iperf3 server counted them."""
    if run.entry.udp_port is None:
        return {"carried": False}
    argv = [
        *("iperf3", "--client", run.entry.host, "--port", str(run.entry.udp_port), "--udp"),
        *("--bitrate", f"{UDP_OFFERED_MBIT_S}M", "--length", str(UDP_DATAGRAM_BYTES)),
        *("--time", str(run.throughput_s), "--json"),
    ]
    received = _iperf_report(run, argv)["sum"]
    sent, lost = int(received["packets"]), int(received["lost_packets"])
    return {
        "carried": True,
        "offered_mbit_per_s": UDP_OFFERED_MBIT_S,
        "datagram_bytes": UDP_DATAGRAM_BYTES,
        "seconds": received["seconds"],
        "datagrams_per_s": (sent - lost) / received["seconds"],
        "loss_percent": received["lost_percent"],
        "jitter_ms": received.get("jitter_ms"),
    }


def _iperf_report(run: WorkloadRun, argv: list[str]) -> dict[str, Any]:
    """The ``end`` section of an iperf3 run's JSON report; ``BenchError`` if it failed."""
    done = subprocess.run(
        run.topology.argv(Side.CLIENT, argv),
        capture_output=True,
        text=True,
        timeout=run.throughput_s + _IPERF_SLACK_S,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except ValueError as exc:
        raise BenchError(f"iperf3 printed no JSON (exit {done.returncode}): {done.stderr}") from exc
    if done.returncode != 0 or "error" in report:
        raise BenchError(f"iperf3 failed: {report.get('error', done.stderr.strip())}")
    end: dict[str, Any] = report["end"]
    return end


def _pingpong(run: WorkloadRun) -> dict[str, Any]:
    result = run.loadgen.pingpong(
        run.topology,
        run.entry.host,
        run.entry.echo_port,
        seconds=run.duration_s,
        warmup_s=run.warmup_s,
    )
    return dict(result)


def _connrate(concurrency: int) -> Callable[[WorkloadRun], dict[str, Any]]:
    def connrate(run: WorkloadRun) -> dict[str, Any]:
        result = run.loadgen.connrate(
            run.topology,
            run.entry.host,
            run.entry.echo_port,
            seconds=run.duration_s,
            warmup_s=run.warmup_s,
            concurrency=concurrency,
        )
        return dict(result)

    return connrate


def _idle_tunnels(run: WorkloadRun) -> dict[str, Any]:
    rss_before = rss_kib(run.tunnel_pids)
    with run.loadgen.idle_connections(
        run.client_procs, run.topology, run.entry.host, run.entry.echo_port, run.idle_tunnels
    ) as opened:
        time.sleep(_IDLE_SETTLE_S)
        rss_open = rss_kib(run.tunnel_pids)
    if opened < run.idle_tunnels:
        raise BenchError(
            f"only {opened} of {run.idle_tunnels} idle connections opened; "
            f"loadgen said: {run.client_procs.log_tail('loadgen-idle')}"
        )
    result: dict[str, Any] = {"tunnels": opened}
    if run.tunnel_pids:
        result |= {
            "rss_before_kib": rss_before,
            "rss_open_kib": rss_open,
            "rss_per_tunnel_kib": (rss_open - rss_before) / opened,
        }
    return result


_RUNNERS: dict[Workload, Callable[[WorkloadRun], dict[str, Any]]] = {
    Workload.THROUGHPUT_1: lambda run: _iperf(run, 1),
    Workload.THROUGHPUT_8: lambda run: _iperf(run, 8),
    Workload.PINGPONG: _pingpong,
    Workload.CONNRATE_1: _connrate(1),
    Workload.CONNRATE_16: _connrate(16),
    Workload.UDP: _udp,
    Workload.IDLE_TUNNELS: _idle_tunnels,
}

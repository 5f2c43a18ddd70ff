"""One benchmark run: every workload of every setup in every topology, in that nesting.

Order and lifetimes, and why:

- Per run: a work directory (configs, logs, certificates, the compiled load generator) that
  is removed at the end unless ``keep_work`` is set; the file-descriptor limit raised so the
  idle-tunnel workload fits.
- Per topology: created, then the servers start on side B; every setup talks to those same
  server processes; then everything is stopped and the topology removed.
- Per setup: its processes start, the workloads run one after the other (``idle-tunnels``
  last, because it leaves the tunnel's memory high), then its processes stop. Setups run one
  at a time so they never compete for the two cores.

A setup that fails is recorded with its reason and the run goes on with the next one; the
exit status says that something failed. Ctrl-C (or SIGTERM) stops everything started so far
and removes namespaces and temporary files on the way out.
"""

from __future__ import annotations

import contextlib
import functools
import resource
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.credentials import make_credentials
from bench.errors import BenchError
from bench.loadgen import LoadGen, build_loadgen
from bench.plan import Plan
from bench.ports import PortPicker
from bench.processes import ProcessSet
from bench.procfs import rss_kib
from bench.servers import start_servers
from bench.setups.base import SetupContext, StartSetup
from bench.setups.checks import verify_mtls
from bench.setups.clusterlink import start_clusterlink
from bench.setups.direct import start_direct
from bench.setups.haproxy import start_haproxy
from bench.setups.stunnel import start_stunnel
from bench.topology import netns_unavailable_reason, open_topology
from bench.workloads import Workload, WorkloadRun, run_workload

__all__ = ["run_plan"]

_FDS_PER_IDLE_TUNNEL = 4  # the worst process holds both sides of each tunnel, plus slack
_FDS_BASE = 4096


def _starters(plan: Plan) -> dict[str, StartSetup]:
    max_connections = plan.idle_tunnels + 1000
    return {
        "direct": start_direct,
        "stunnel": start_stunnel,
        "haproxy": functools.partial(start_haproxy, max_connections=max_connections),
        "clusterlink": functools.partial(start_clusterlink, gateway_args=plan.gateway_args),
    }


def _raise_fd_limit(idle_tunnels: int) -> None:
    """Give this process and its children enough file descriptors for the idle tunnels.

    Raising the hard limit needs CAP_SYS_RESOURCE; without it we take the hard limit as it is,
    and a workload that runs out says so in its error.
    """
    need = _FDS_BASE + _FDS_PER_IDLE_TUNNEL * idle_tunnels
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def _work_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clusterlink-bench-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run_plan(plan: Plan, console: Console, *, keep_work: bool = False) -> dict[str, Any]:
    """Run ``plan``; the raw results by topology and setup, and the topologies skipped."""
    results: dict[str, Any] = {"topologies": {}, "skipped": {}}
    _raise_fd_limit(plan.idle_tunnels)
    with _work_dir(keep_work) as work:
        if keep_work:
            console.print(f"work directory (kept): {work}")
        loadgen = build_loadgen(work)
        credentials = make_credentials(work)
        ports = PortPicker()
        for topology_name in plan.topologies:
            if topology_name == "netns" and (reason := netns_unavailable_reason()):
                console.print(f"[yellow]skipping topology netns: {reason}[/]")
                results["skipped"][topology_name] = reason
                continue
            with (
                open_topology(topology_name) as topology,
                ProcessSet(work / topology_name / "servers") as servers,
            ):
                targets = start_servers(servers, topology, loadgen, ports)
                by_setup: dict[str, Any] = {}
                results["topologies"][topology_name] = by_setup
                for setup in plan.setups:
                    setup_dir = work / topology_name / setup
                    setup_dir.mkdir(parents=True)
                    with ProcessSet(setup_dir) as procs:
                        context = SetupContext(
                            topology, targets, credentials, loadgen, ports, procs, setup_dir
                        )
                        by_setup[setup] = _run_setup(
                            plan, context, _starters(plan)[setup], loadgen, console
                        )
    return results


def _run_setup(
    plan: Plan,
    context: SetupContext,
    start: StartSetup,
    loadgen: LoadGen,
    console: Console,
) -> dict[str, Any]:
    where = f"{context.topology.name} {context.work_dir.name}"
    workloads: dict[str, Any] = {}
    outcome: dict[str, Any] = {"workloads": workloads, "error": None}
    try:
        entry = start(context)
        tunnel_pids = context.procs.pids
        idle_rss_kib = rss_kib(tunnel_pids) if tunnel_pids else None
        if entry.tls_port is not None:
            outcome["mtls_check"] = verify_mtls(context, entry)
        with ProcessSet(context.work_dir / "clients") as clients:
            run = WorkloadRun(
                topology=context.topology,
                entry=entry,
                loadgen=loadgen,
                client_procs=clients,
                tunnel_pids=tunnel_pids,
                duration_s=plan.duration_s,
                throughput_s=plan.throughput_s,
                warmup_s=plan.warmup_s,
                idle_tunnels=plan.idle_tunnels,
                repeat=plan.repeat,
            )
            for workload in _ordered(plan.workloads):
                with console.status(f"{where}: {workload} ..."):
                    workloads[workload.value] = run_workload(workload, run)
                console.print(f"{where}: {workload}: {_headline(workloads[workload.value])}")
        if tunnel_pids:
            outcome["summary"] = _summary(workloads, idle_rss_kib)
    except BenchError as exc:
        outcome["error"] = str(exc)
        console.print(f"[red]{where}: failed: {exc}[/]")
    return outcome


def _summary(workloads: dict[str, Any], idle_rss_kib: int | None) -> dict[str, Any]:
    """The tunnel's CPU over all workloads, its peak RSS under load (idle tunnels aside), and
    that peak as a multiple of its RSS when it had just started (``idle_rss_kib``): what a
    load costs in memory, whatever the process's own size."""
    loaded = [r for w, r in workloads.items() if w != Workload.IDLE_TUNNELS]
    peak = max((r["tunnel_peak_rss_kib"] for r in loaded), default=None)
    return {
        "tunnel_cpu_s": sum(r["tunnel_cpu_s"] for r in workloads.values()),
        "tunnel_idle_rss_kib": idle_rss_kib,
        "tunnel_peak_rss_kib": peak,
        "peak_over_idle_rss": peak / idle_rss_kib if peak and idle_rss_kib else None,
    }


def _ordered(workloads: tuple[Workload, ...]) -> list[Workload]:
    """The workloads in the canonical order (idle tunnels last)."""
    return [w for w in Workload if w in workloads]


_HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "gbit_per_s": lambda r: f"{r['gbit_per_s']:.2f} Gbit/s",
    "rate_per_s": lambda r: (
        f"{r['rate_per_s']:,.0f}/s, p50 {r['latency_us']['p50']:,.0f} µs, "
        f"p99 {r['latency_us']['p99']:,.0f} µs, errors {r['errors']}"
    ),
    "datagrams_per_s": lambda r: (
        f"{r['datagrams_per_s']:,.0f} datagrams/s, loss {r['loss_percent']:.2f}%"
    ),
    "carried": lambda _r: "no UDP",
    "rss_per_tunnel_kib": lambda r: (
        f"{r['tunnels']} tunnels, {r['rss_per_tunnel_kib']:.1f} KiB each"
    ),
    "tunnels": lambda r: f"{r['tunnels']} idle connections held",
}


def _headline(result: dict[str, Any]) -> str:
    """A one-line summary of a workload's result for the progress log."""
    return next((show(result) for key, show in _HEADLINES.items() if key in result), "done")

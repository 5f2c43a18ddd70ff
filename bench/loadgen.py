"""Build and drive ``loadgen.c``: the echo server and the clients of every non-iperf workload.

Why a C program: on this class of machine (2 cores) a Python client of a 1-byte ping-pong or
of a connect/echo/close loop burns a core of its own, which then is not there for the tunnel
being measured, and caps the direct baseline; the C clients cost a fraction of that. Every
setup gets exactly the same binary, built once per run with gcc into the run's work
directory.

The measuring modes print one JSON object (``LoadResult``); this module only runs them on the
client side of a topology and parses that. What the numbers mean is documented in
``loadgen.c``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

from bench.errors import BenchError
from bench.processes import ProcessSet, stop
from bench.topology import Side, Topology

__all__ = ["LatencyUs", "LoadGen", "LoadResult", "build_loadgen"]

_SOURCE = Path(__file__).with_name("loadgen.c")
_SLACK_S = 60.0  # how much longer than planned a measuring run may take before it is a hang
_IDLE_OPEN_TIMEOUT_S = 300.0


class LatencyUs(TypedDict):
    mean: float
    p50: float
    p90: float
    p99: float
    p999: float
    min: float
    max: float


class LoadResult(TypedDict):
    count: int
    errors: int
    seconds: float
    concurrency: int
    rate_per_s: float
    latency_us: LatencyUs


def build_loadgen(work_dir: Path) -> LoadGen:
    """Compile loadgen.c (gcc -O2) into ``work_dir``."""
    if (gcc := shutil.which("gcc")) is None:
        raise BenchError("the benchmark compiles its load generator with gcc; install gcc")
    binary = work_dir / "loadgen"
    done = subprocess.run(
        [gcc, "-O2", "-Wall", "-pthread", "-o", str(binary), str(_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"gcc could not build {_SOURCE}: {done.stderr.strip()}")
    return LoadGen(binary)


@dataclass(frozen=True, slots=True)
class LoadGen:
    """The compiled program; every method runs it on the client side of ``topology``."""

    binary: Path

    def echo_argv(self, host: str, port: int) -> list[str]:
        return [str(self.binary), "echo", host, str(port)]

    def probe(self, topology: Topology, host: str, port: int, timeout_s: float) -> bool:
        """Whether a 64-byte echo through ``host:port`` works within ``timeout_s``."""
        argv = [str(self.binary), "probe", host, str(port), str(timeout_s)]
        done = subprocess.run(
            topology.argv(Side.CLIENT, argv),
            capture_output=True,
            timeout=timeout_s + _SLACK_S,
            check=False,
        )
        return done.returncode == 0

    def pingpong(
        self, topology: Topology, host: str, port: int, *, seconds: float, warmup_s: float
    ) -> LoadResult:
        return self._measure(
            topology, ["pingpong", host, str(port), str(seconds), str(warmup_s)], seconds
        )

    def connrate(
        self,
        topology: Topology,
        host: str,
        port: int,
        *,
        seconds: float,
        warmup_s: float,
        concurrency: int,
    ) -> LoadResult:
        args = ["connrate", host, str(port), str(seconds), str(warmup_s), str(concurrency)]
        return self._measure(topology, args, seconds + warmup_s)

    def _measure(self, topology: Topology, args: list[str], planned_s: float) -> LoadResult:
        argv = topology.argv(Side.CLIENT, [str(self.binary), *args])
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=planned_s + _SLACK_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"loadgen {args[0]} hung past {planned_s + _SLACK_S:.0f} s") from exc
        if done.returncode != 0 or not done.stdout.strip():
            raise BenchError(
                f"loadgen {' '.join(args)} failed (exit {done.returncode}): {done.stderr.strip()}"
            )
        return cast(LoadResult, json.loads(done.stdout))

    @contextlib.contextmanager
    def idle_connections(
        self, procs: ProcessSet, topology: Topology, host: str, port: int, count: int
    ) -> Iterator[int]:
        """Hold ``count`` echo-checked idle connections open; yields how many opened."""
        argv = topology.argv(Side.CLIENT, [str(self.binary), "idle", host, str(port), str(count)])
        proc = procs.start("loadgen-idle", argv, stdin_pipe=True)
        try:
            line = procs.wait_for_line("loadgen-idle", proc, "ready ", _IDLE_OPEN_TIMEOUT_S)
            yield int(line.split()[1])
        finally:
            stop(proc)  # SIGTERM ends it at once; its connections close with it

"""A few-second run of the whole benchmark, so that the harness cannot rot unnoticed.

It runs ``python -m bench run`` on loopback with tiny durations and 50 idle tunnels, and checks
that every setup produced every number (the tunnel's CPU time plausible: some for moving
bytes, never more than the machine's cores had) and that the files were written. It judges no
speed and compares no ratio: those depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUPS = ("direct", "stunnel", "haproxy", "clusterlink")
TUNNELS = SETUPS[1:]
UDP_SETUPS = ("direct", "clusterlink")  # stunnel and HAProxy carry no UDP
IDLE_TUNNELS = 50
RUN_TIMEOUT_S = 240
CORES = os.cpu_count() or 1
CPU_TICK_SLACK_S = 0.1  # /proc counts CPU in clock ticks (10 ms), per process and field

missing = [tool for tool in ("gcc", "iperf3", "stunnel4", "haproxy") if not shutil.which(tool)]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"needs {', '.join(missing)} (installed by ./setup.sh)"
)


@pytest.fixture(scope="module")
def smoke_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench-results")
    argv = [
        *(sys.executable, "-m", "bench", "run", "--topology", "loopback"),
        *("--duration", "0.5", "--idle-tunnels", str(IDLE_TUNNELS), "--out", str(out)),
    ]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    return done, out


def _results(smoke_run: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    done, out = smoke_run
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_every_setup_measures_every_workload(
    smoke_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    by_setup = _results(smoke_run)["topologies"]["loopback"]
    assert set(by_setup) == set(SETUPS)
    for setup, outcome in by_setup.items():
        assert outcome["error"] is None, f"{setup}: {outcome['error']}"
        workloads = outcome["workloads"]
        for streams in ("throughput-1", "throughput-8"):
            assert workloads[streams]["gbit_per_s"] > 0, (setup, streams)
        for name in ("pingpong", "connrate-1", "connrate-16"):
            assert workloads[name]["count"] > 0, (setup, name)
            assert workloads[name]["latency_us"]["p99"] > 0, (setup, name)
        assert workloads["idle-tunnels"]["tunnels"] == IDLE_TUNNELS, setup
        udp = workloads["udp"]
        if setup in UDP_SETUPS:
            assert udp["datagrams_per_s"] > 0 and 0 <= udp["loss_percent"] <= 100, (setup, udp)
        else:
            assert udp["carried"] is False, setup


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_tunnels_report_cpu_memory_and_pass_the_mtls_check(
    smoke_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    by_setup = _results(smoke_run)["topologies"]["loopback"]
    for setup in TUNNELS:
        outcome = by_setup[setup]
        workloads = outcome["workloads"]
        for streams in ("throughput-1", "throughput-8"):  # a second of bytes through TLS
            assert workloads[streams]["tunnel_cpu_s"] > 0, (setup, streams)
            assert workloads[streams]["cpu_s_per_gb"] > 0, (setup, streams)
        assert workloads["pingpong"]["cpu_s_per_1k_round_trips"] > 0, setup
        for name, result in workloads.items():  # no more CPU than the machine had meanwhile
            bound_s = result["wall_s"] * CORES + CPU_TICK_SLACK_S
            assert 0 <= result["tunnel_cpu_s"] <= bound_s, (setup, name, result)
        total = sum(result["tunnel_cpu_s"] for result in workloads.values())
        assert outcome["summary"]["tunnel_cpu_s"] == pytest.approx(total), setup
        summary = outcome["summary"]
        assert 0 < summary["tunnel_idle_rss_kib"] <= summary["tunnel_peak_rss_kib"], setup
        assert summary["peak_over_idle_rss"] >= 1, setup
        assert "rss_per_tunnel_kib" in outcome["workloads"]["idle-tunnels"], setup
        assert outcome["mtls_check"]["stranger's certificate"].startswith("refused"), setup
    assert "summary" not in by_setup["direct"]  # nothing of its own to measure


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_run_writes_json_with_environment_and_verdicts_and_the_table(
    smoke_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    results = _results(smoke_run)
    _, out = smoke_run
    assert results["environment"]["clusterlink"]
    assert {v["metric"] for v in results["verdicts"]} >= {"throughput_1", "conn16_rate", "idle_rss"}
    for name in ("table.txt", "table.md"):
        table = (out / name).read_text()
        assert "cl/stunnel" in table and "clusterlink" in table, name

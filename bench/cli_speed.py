"""How fast the command line starts, and a gateway starts and stops.

``python -m bench.cli_speed [--runs N]`` makes a throw-away fabric, starts one gateway on
loopback and prints, for each command, the median CPU time of N runs (user + system, from
``resource.getrusage(RUSAGE_CHILDREN)``, so the machine's load changes it little) as a ratio to
a bare ``python -c "import ssl, asyncio"``: the least any Python tool that speaks TLS pays. It
then times, in wall-clock seconds, a gateway's start (until its admin port accepts) and its
clean stop (SIGTERM until exit 0), medians of N as well.

Ratios, not seconds, are what the README quotes: they hold from one machine to the next.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# The console script users run, installed beside this interpreter (else `python -m`).
_SCRIPT = Path(sys.executable).with_name("clusterlink")
CLUSTERLINK = (str(_SCRIPT),) if _SCRIPT.exists() else (sys.executable, "-m", "clusterlink")
BARE = (sys.executable, "-c", "import ssl, asyncio")
WAIT_S = 20.0
_LOOPBACK = ("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--log-level", "error")


def cpu_seconds(command: Sequence[str], runs: int) -> float:
    """The median CPU time of ``runs`` runs of ``command`` (each must exit 0)."""
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, capture_output=True, check=True, timeout=60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
        )
    return statistics.median(times)


def _admin_of(peer_dir: Path, pid: int) -> tuple[str, int] | None:
    try:
        info = json.loads((peer_dir / "gateway.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("pid") != pid:
        return None
    host, _, port = str(info["admin"]).rpartition(":")
    return host.strip("[]"), int(port)


def _accepts(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def start_gateway(peer_dir: Path) -> tuple[subprocess.Popen[bytes], float]:
    """A gateway on loopback, and the seconds until its admin port accepted a connection."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*CLUSTERLINK, "gateway", "run", "--peer-dir", str(peer_dir), *_LOOPBACK],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = started + WAIT_S
    while time.monotonic() < deadline:
        address = _admin_of(peer_dir, process.pid)
        if address is not None and _accepts(address):
            return process, time.monotonic() - started
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode} while starting")
        time.sleep(0.005)  # the probe's own pace
    process.kill()
    raise SystemExit(f"the gateway did not answer within {WAIT_S:g} s")


def stop_gateway(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM, and the seconds until the gateway exited (it must exit 0)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=WAIT_S)
    if code != 0:
        raise SystemExit(f"the gateway exited with {code} on SIGTERM")
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_speed", description=__doc__)
    parser.add_argument("--runs", type=int, default=15, help="runs per figure (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cl-speed-") as tmp:
        root = Path(tmp)
        _quietly("create", "fabric", "--name", "f", "--path", tmp)
        _quietly("create", "peer-cert", "--name", "a", "--fabric", "f", "--path", tmp)
        peer_dir = root / "f" / "a"
        bare = cpu_seconds(BARE, args.runs)
        print(f"bare start (python -c 'import ssl, asyncio'): {bare * 1000:.0f} ms CPU")
        commands = {
            "clusterlink --version": ["--version"],
            "clusterlink get peers (usage error)": ["get", "peers", "-o", "xml"],
        }
        for label, command in commands.items():
            figure = _cpu_or_usage(command, args.runs)
            print(f"{label}: {figure / bare:.2f}x")
        process, _ = start_gateway(peer_dir)
        try:
            for label, command in {
                "clusterlink get peers": ["--peer-dir", str(peer_dir), "get", "peers"],
                "clusterlink status": ["--peer-dir", str(peer_dir), "status"],
            }.items():
                figure = cpu_seconds([*CLUSTERLINK, *command], args.runs)
                print(f"{label} (against a running gateway): {figure / bare:.2f}x")
        finally:
            stop_gateway(process)
        starts, stops = [], []
        for _ in range(args.runs):
            process, start_s = start_gateway(peer_dir)
            starts.append(start_s)
            stops.append(stop_gateway(process))
        print(f"gateway start, until its admin port accepts: {statistics.median(starts):.3f} s")
        print(f"gateway clean stop (SIGTERM to exit 0): {statistics.median(stops):.3f} s")
    return 0


def _quietly(*args: str) -> None:
    subprocess.run([*CLUSTERLINK, *args], capture_output=True, check=True, timeout=60)


def _cpu_or_usage(command: Sequence[str], runs: int) -> float:
    """Like ``cpu_seconds``, for a command expected to fail as a usage error (exit 2)."""
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [*CLUSTERLINK, *command], capture_output=True, check=False, timeout=60
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 2):
            raise SystemExit(f"clusterlink {' '.join(command)}: exit {done.returncode}")
        times.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())

"""What machine and which versions produced a result, for the JSON next to the numbers.

Ratios are only comparable within one run, and absolute numbers only on the same machine
and versions; so every result file says which CPU, kernel, tunnels, Python and clusterlink
commit it came from. A tool that is missing or fails to answer shows as ``None`` instead of
stopping the run: the environment describes the run, it does not gate it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.product import CLUSTERLINK, product_env

__all__ = ["describe_environment"]

_REPO = Path(__file__).resolve().parent.parent
_TIMEOUT_S = 10.0


def _first_line(argv: list[str], *, env: dict[str, str] | None = None) -> str | None:
    """The first non-empty line a command prints (stdout, else stderr), or None."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[0] if lines else None


def _stunnel_version() -> str | None:
    """stunnel prints its version on stderr after a line about inetd mode."""
    try:
        done = subprocess.run(
            ["stunnel", "-version"], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return next(
        (line.strip() for line in done.stderr.splitlines() if line.startswith("stunnel ")), None
    )


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    return _first_line(["git", "-C", str(_REPO), *args])


def describe_environment() -> dict[str, Any]:
    commit = _git("rev-parse", "HEAD")
    dirty = _first_line(["git", "-C", str(_REPO), "status", "--porcelain", "--", "src"])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "clusterlink": _first_line([*CLUSTERLINK, "--version"], env=product_env()),
        "clusterlink_commit": commit,
        "clusterlink_src_modified": dirty is not None,
        "stunnel": _stunnel_version(),
        "haproxy": _first_line(["haproxy", "-v"]),
        "iperf3": _first_line(["iperf3", "--version"]),
        "openssl": _first_line(["openssl", "version"]),
        "gcc": _first_line(["gcc", "--version"]),
    }

"""How the benchmark drives clusterlink: through its command line only, like a user.

The CLI runs as ``sys.executable -m clusterlink``, so the benchmark measures the clusterlink
installed in the interpreter that runs it (``.venv/bin/python -m bench``). Nothing here
imports the product: the benchmark must keep working however the inside changes, as long as
the contract of DESIGN §3, §4 and §6 holds. ``CLUSTERLINK_*`` variables of the caller never
reach the processes started here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from bench.errors import BenchError

__all__ = ["CLUSTERLINK", "product_env", "run_cli"]

CLUSTERLINK = (sys.executable, "-m", "clusterlink")
_CLI_TIMEOUT_S = 60.0


def product_env() -> dict[str, str]:
    """This process's environment without ``CLUSTERLINK_*`` variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERLINK_")}


def run_cli(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a clusterlink command line (``argv`` may start with ``ip netns exec NS``); its stdout.

    A non-zero exit is a ``BenchError`` carrying the command's one-line reason.
    """
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_CLI_TIMEOUT_S,
            env=product_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(argv)} did not finish within {_CLI_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout

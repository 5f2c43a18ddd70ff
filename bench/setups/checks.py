"""Run ``bench.mtls_check`` on side A against a setup's TLS listener, and insist on the result.

A setup whose listener lets in a client it should refuse (or refuses the right one) is not
measured at all: its numbers would not mean what the table says. The check runs in a child
interpreter on side A (that is where the clients are in the netns topology), from the
checkout's root so that ``bench`` is importable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.mtls_check import EXPECTED
from bench.setups.base import Entry, SetupContext
from bench.topology import Side

__all__ = ["verify_mtls"]

_ROOT = Path(__file__).resolve().parents[2]
_TIMEOUT_S = 60.0


def verify_mtls(context: SetupContext, entry: Entry) -> dict[str, str]:
    """The outcome of each case; a BenchError when any is not what ``EXPECTED`` says."""
    creds = context.credentials
    argv = [
        *(sys.executable, "-m", "bench.mtls_check"),
        *(context.topology.server_host, str(entry.tls_port), entry.tls_probe.hex()),
        *(str(creds.client.ca), str(creds.client.cert), str(creds.client.key)),
        *(str(creds.stranger.cert), str(creds.stranger.key)),
    ]
    done = subprocess.run(
        context.topology.argv(Side.CLIENT, argv),
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        cwd=_ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"the mTLS check could not run: {done.stderr.strip()[-500:]}")
    outcome: dict[str, str] = json.loads(done.stdout)
    if wrong := [
        f"{case}: {outcome[case]}"
        for case, expected in EXPECTED.items()
        if not outcome[case].startswith(expected)
    ]:
        raise BenchError(f"the TLS listener does not do mutual TLS 1.3 as set up: {wrong}")
    return outcome

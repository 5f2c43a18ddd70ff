"""Process set-up of the gateway: its open-file limit is raised (tunnels hold two sockets)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

pytestmark = pytest.mark.component


def test_the_gateway_raises_its_soft_open_file_limit_to_the_hard_one() -> None:
    script = (
        "import resource; from clusterlink.file_limit import raise_file_limit; "
        "raise_file_limit(); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = min(hard if hard != resource.RLIM_INFINITY else 1_048_576, 1_048_576)

    def start_low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        preexec_fn=start_low,  # the child only: its limit starts low
    )
    assert int(done.stdout) == wanted > 256

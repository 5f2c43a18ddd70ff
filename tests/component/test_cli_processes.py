"""The command line as a real process: the console script and ``python -m clusterlink``.

What the in-process tests (tests/unit/test_cli_*.py, through click's runner) cannot show:
that the installed entry points start, print to the real stdout and exit with the right
status. No gateway is involved; the management commands against a running one are in
test_cli_end_to_end.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from clusterlink import __version__
from tests.unit._kube_schemas import check_object
from tests.unit.test_cli_deploy import (
    base_fixture,  # noqa: F401 -- a fixture, requested by name
    deploy,
    documents,
)

pytestmark = pytest.mark.component

CONSOLE_SCRIPT = Path(sys.executable).parent / "clusterlink"


@pytest.mark.parametrize(
    "command",
    [[str(CONSOLE_SCRIPT)], [sys.executable, "-m", "clusterlink"]],
    ids=["console-script", "python-m"],
)
def test_version_from_a_real_process(command: list[str]) -> None:
    done = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=30, check=False
    )

    assert (done.returncode, done.stdout, done.stderr) == (0, f"clusterlink {__version__}\n", "")


INGRESS_RUNS = [
    ["--ingress", "none"],
    ["--ingress", "NodePort", "--ingress-port", "30443"],
    ["--ingress", "loadbalancer", "--ingress-port", "443"],
    ["--replicas", "2", "--label", "region=eu", "--label", "tier=edge", "--namespace", "cl"],
]


@pytest.mark.parametrize("args", INGRESS_RUNS, ids=" ".join)
def test_deploy_peer_as_a_real_process_prints_objects_the_kubernetes_api_accepts(
    base: Path,
    args: list[str],
) -> None:
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), *deploy(*args, "-o", "yaml", path=base)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    docs = documents(done.stdout)
    assert len(docs) == 14
    for doc in docs:
        check_object(doc)

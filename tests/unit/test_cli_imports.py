"""The command line starts without importing what only some commands need.

Every ``clusterlink`` run pays for what ``clusterlink.cli.main`` imports before it parses a
word; typer, pydantic, cryptography, YAML, rich, HTTP clients and the gateway cost several
times a bare interpreter's start (see bench/cli_speed.py). A fresh interpreter is the only honest
place to look, since this test process has imported all of them already.
"""

import json
import subprocess
import sys

import pytest

HEAVY = (
    "typer",
    "pydantic",
    "cryptography",
    "yaml",
    "rich",
    "httpx",
    "httpcore",
    "aiohttp",
    "uvloop",
    "h11",
    "prometheus_client",
    "lightkube",
    "clusterlink.api",
    "clusterlink.certs",
    "clusterlink.gateway",
)

PROBE = """
import json, sys
{statement}
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(statement: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(statement=statement)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stderr.splitlines()[-1]))  # what the command printed comes first


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_imports_nothing_heavy() -> None:
    assert heavy_in(imported_by("import clusterlink.cli.main")) == []


@pytest.mark.parametrize(
    "args",
    [["--version"], ["completion", "bash"], ["get"], ["status", "--bogus"]],
    ids=" ".join,
)
def test_a_run_that_needs_no_gateway_and_no_help_page_imports_nothing_heavy(
    args: list[str],
) -> None:
    statement = (
        f"sys.argv = ['clusterlink', *{args!r}]\n"
        "from clusterlink.cli.main import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass"
    )
    modules = imported_by(statement)

    assert heavy_in(modules) == []
    assert "clusterlink.client" not in modules  # nor the admin client, with http.client and ssl

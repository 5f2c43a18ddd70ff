"""Habits kubectl users bring: global flags after the command, one-line usage errors."""

import pytest
from click.testing import CliRunner

from clusterlink.cli.context import hoist_globals
from clusterlink.cli.main import app


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["get", "peers", "--peer-dir", "D"], ["--peer-dir", "D", "get", "peers"]),
        (["get", "peers", "--peer-dir=D"], ["--peer-dir=D", "get", "peers"]),
        (
            ["--admin", "h:1", "create", "peer", "--name", "b", "--peer-dir", "D"],
            ["--admin", "h:1", "--peer-dir", "D", "create", "peer", "--name", "b"],
        ),
        (
            ["describe", "import", "x", "--", "--peer-dir"],
            ["describe", "import", "x", "--", "--peer-dir"],
        ),
    ],
)
def test_global_options_after_a_management_command_move_first(
    given: list[str], expected: list[str]
) -> None:
    assert hoist_globals(given) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["install", "peer-cert", "--peer-dir", "D", "--cert", "c", "--ca", "a"],
        ["gateway", "run", "--peer-dir", "D"],
        ["create", "fabric", "--name", "f"],
    ],
)
def test_commands_with_a_peer_dir_of_their_own_keep_it(args: list[str]) -> None:
    assert hoist_globals(args) == args


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["status", "--bogus"], "clusterlink status"),
        (["get"], "clusterlink get"),
        (["get", "import", "-o", "xml"], "clusterlink get"),
        (["no-such-command"], "clusterlink"),
        (["completion", "tcsh"], "clusterlink completion"),
    ],
    ids=repr,
)
def test_a_usage_error_is_one_line_naming_the_help_to_read(args: list[str], command: str) -> None:
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.endswith(f"see `{command} --help`\n")

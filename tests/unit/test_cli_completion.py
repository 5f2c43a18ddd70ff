"""Shell completion and the command tree: what a user's Tab key and ``--help`` see."""

import pytest
from click.testing import CliRunner

from clusterlink.cli.lazy import Entry
from clusterlink.cli.main import COMMANDS, app


def complete(words: str) -> list[str]:
    """What bash offers for ``words`` (the last one being completed), as the script asks."""
    env = {
        "_CLUSTERLINK_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = CliRunner().invoke(app, [], env=env)
    assert result.exit_code == 0, result.output
    return [line.partition(",")[2] for line in result.stdout.splitlines()]


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("clusterlink st", ["status"]),
        ("clusterlink create p", ["peer-cert", "peer-key", "peer", "policy"]),
        ("clusterlink get im", ["imports"]),
        (
            "clusterlink get ",
            ["peers", "exports", "imports", "accesspolicies", "privilegedaccesspolicies", "all"],
        ),
        ("clusterlink describe a", ["accesspolicies"]),
        ("clusterlink delete ex", ["exports"]),
        ("clusterlink get peers -o ", ["table", "wide", "name", "json", "yaml"]),
        ("clusterlink gateway run --log-format ", ["text", "json"]),
    ],
)
def test_tab_offers_the_commands_kinds_and_choices_that_fit(words: str, offered: list[str]) -> None:
    assert complete(words) == offered


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_script_calls_clusterlink_back_with_its_variable(shell: str) -> None:
    result = CliRunner().invoke(app, ["completion", shell])

    assert result.exit_code == 0
    assert "_CLUSTERLINK_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout


def every_command(entries: dict[str, Entry], path: str = "") -> list[tuple[str, str]]:
    found = []
    for name, entry in entries.items():
        if isinstance(entry, str):
            found.append((f"{path}{name}", entry))
        else:
            found += every_command(dict(entry[1]), f"{path}{name} ")
    return found


@pytest.mark.parametrize(("path", "entry"), every_command(COMMANDS), ids=repr)
def test_every_command_of_the_tree_has_a_help_page(path: str, entry: str) -> None:
    result = CliRunner().invoke(app, [*path.split(), "--help"])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: clusterlink {path} ")


def test_help_lists_every_command_with_its_whole_first_sentence() -> None:
    result = CliRunner().invoke(app, ["--help"], terminal_width=80)

    listed = " ".join(result.stdout.partition("Commands:")[2].split())
    assert all(f" {name} " in f" {listed} " for name in COMMANDS)
    assert "..." not in listed
    assert "tier by tier: privileged deny, privileged allow, deny, allow, default deny." in listed

"""Exit codes and error lines of the command line that need no gateway (DESIGN §6)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterlink import __version__
from clusterlink.certs import create_fabric, create_peer_cert
from clusterlink.cli.main import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CLUSTERLINK_PEER_DIR", raising=False)
    return CliRunner()


@pytest.fixture(scope="module")
def peer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("peers")
    create_fabric(base, "fab")
    return create_peer_cert(base, "a", "fab")


def one_error_line(stderr: str) -> bool:
    return stderr.startswith("error: ") and stderr.count("\n") == 1


def test_version_option_prints_the_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"clusterlink {__version__}\n"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["no-such-command"],
        ["get"],
        ["get", "import", "-o", "xml"],
        ["status", "--bogus"],
        ["--admin", "no-port", "status"],
        ["create", "import", "--name", "x", "--port", "70000", "--source", "b"],
        ["gateway", "run", "--peer-dir", ".", "--log-format", "xml"],
        ["gateway", "run", "--peer-dir", ".", "--listen", "nowhere"],
    ],
    ids=repr,
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["create", "import", "--name", "x", "--port", "0", "--source", "b:only-name"],
        ["create", "import", "--name", "x", "--port", "0", "--source", ":ns/e"],
        ["create", "policy", "--name", "p", "--action", "allow", "--from", "no-equals"],
        ["create", "policy", "--name", "p", "--action", "allow", "--privileged", "-n", "x"],
        ["delete", "import"],
        ["delete", "-f", "x.yaml", "import", "echo"],
        ["get", "import", "echo", "-A"],
        ["gateway", "run", "--label", "novalue"],
    ],
    ids=repr,
)
def test_malformed_flags_are_usage_errors_before_any_gateway_is_asked(
    runner: CliRunner, peer_dir: Path, args: list[str]
) -> None:
    result = runner.invoke(app, ["--peer-dir", str(peer_dir), *args])

    assert result.exit_code == 2, result.output


def test_management_command_without_peer_dir_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["status"])

    assert result.exit_code == 2
    assert "--peer-dir" in result.stderr


def test_gateway_not_running_exits_1_saying_how_to_start_it(
    runner: CliRunner, peer_dir: Path
) -> None:
    result = runner.invoke(app, ["--peer-dir", str(peer_dir), "get", "imports"])

    assert result.exit_code == 1
    assert one_error_line(result.stderr)
    assert "gateway.json" in result.stderr
    assert f"clusterlink gateway run --peer-dir {peer_dir}" in result.stderr


def test_peer_dir_comes_from_the_environment(runner: CliRunner, peer_dir: Path) -> None:
    result = runner.invoke(app, ["status"], env={"CLUSTERLINK_PEER_DIR": str(peer_dir)})

    assert result.exit_code == 1
    assert "gateway.json" in result.stderr


def test_missing_peer_dir_exits_1_in_one_line(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--peer-dir", str(tmp_path / "nope"), "status"])

    assert result.exit_code == 1
    assert one_error_line(result.stderr)
    assert "create peer-cert" in result.stderr


def test_unknown_kind_exits_1_naming_the_accepted_kinds(runner: CliRunner, peer_dir: Path) -> None:
    result = runner.invoke(app, ["--peer-dir", str(peer_dir), "get", "gizmo"])

    assert result.exit_code == 1
    assert one_error_line(result.stderr)
    assert "Import" in result.stderr


def test_apply_of_a_missing_file_exits_1_in_one_line(runner: CliRunner, peer_dir: Path) -> None:
    result = runner.invoke(app, ["--peer-dir", str(peer_dir), "apply", "-f", "/no/such.yaml"])

    assert result.exit_code == 1
    assert result.stderr == "error: /no/such.yaml: no such file or directory\n"


def test_apply_of_an_invalid_document_names_the_field_before_calling_the_gateway(
    runner: CliRunner, peer_dir: Path
) -> None:
    document = (
        "apiVersion: clusterlink.net/v1alpha1\nkind: Import\nmetadata: {name: bad}\n"
        "spec: {port: 70000, sources: [{peer: b, exportName: e, exportNamespace: default}]}\n"
    )

    result = runner.invoke(app, ["--peer-dir", str(peer_dir), "apply", "-f", "-"], input=document)

    assert result.exit_code == 1
    assert one_error_line(result.stderr)
    assert "spec.port" in result.stderr


def test_apply_of_an_empty_file_exits_1(runner: CliRunner, peer_dir: Path) -> None:
    result = runner.invoke(app, ["--peer-dir", str(peer_dir), "apply", "-f", "-"], input="---\n")

    assert result.exit_code == 1
    assert result.stderr == "error: stdin holds no documents\n"

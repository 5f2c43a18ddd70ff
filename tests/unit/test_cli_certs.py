"""`create fabric` and `create peer-cert` through the real command line: files, modes, refusals."""

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from clusterlink.cli.main import app

KEYS = ("key.pem", "admin/key.pem")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CLUSTERLINK_PEER_DIR", raising=False)
    return CliRunner()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_fabric_writes_ca_with_private_key(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["create", "fabric", "--name", "fab", "--path", str(tmp_path)])

    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "fab" / "cert.pem").is_file()
    assert mode(tmp_path / "fab" / "key.pem") == 0o600
    assert "fab" in result.stdout


def test_create_fabric_warns_on_stderr_where_the_ca_key_is_and_to_keep_it_unserved(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["create", "fabric", "--name", "fab", "--path", str(tmp_path)])

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"created fabric fab in {tmp_path / 'fab'}\n"
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {tmp_path / 'fab' / 'key.pem'} is the private key ")
    assert "keep it off any served or shared directory" in warning


def test_create_fabric_defaults_to_default_fabric_in_current_dir(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert runner.invoke(app, ["create", "fabric"]).exit_code == 0
    assert (tmp_path / "default_fabric" / "key.pem").is_file()


def test_create_fabric_refuses_to_overwrite_with_one_stderr_line(
    runner: CliRunner, tmp_path: Path
) -> None:
    args = ["create", "fabric", "--name", "fab", "--path", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    key_before = (tmp_path / "fab" / "key.pem").read_bytes()

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "exists" in result.stderr
    assert (tmp_path / "fab" / "key.pem").read_bytes() == key_before


def test_create_peer_cert_writes_the_peer_directory(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(app, ["create", "fabric", "--name", "fab", "--path", str(tmp_path)])

    result = runner.invoke(
        app, ["create", "peer-cert", "--name", "a", "--fabric", "fab", "--path", str(tmp_path)]
    )

    assert result.exit_code == 0, result.stderr
    peer = tmp_path / "fab" / "a"
    for name in ("cert.pem", "key.pem", "ca.pem", "admin/cert.pem", "admin/key.pem"):
        assert (peer / name).is_file(), name
    assert {key: mode(peer / key) for key in KEYS} == {key: 0o600 for key in KEYS}


def test_create_peer_cert_twice_refuses_to_overwrite(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(app, ["create", "fabric", "--name", "fab", "--path", str(tmp_path)])
    args = ["create", "peer-cert", "--name", "a", "--fabric", "fab", "--path", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["Peer_A", "-a", "a..b", "a/b", ""])
def test_create_peer_cert_rejects_a_bad_name_in_one_line(
    runner: CliRunner, tmp_path: Path, name: str
) -> None:
    runner.invoke(app, ["create", "fabric", "--name", "fab", "--path", str(tmp_path)])

    result = runner.invoke(
        app, ["create", "peer-cert", "--name", name, "--fabric", "fab", "--path", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "name" in result.stderr
    assert sorted(p.name for p in (tmp_path / "fab").iterdir()) == ["cert.pem", "key.pem"]


def test_create_peer_cert_of_a_missing_fabric_says_how_to_create_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["create", "peer-cert", "--name", "a", "--fabric", "nofab", "--path", str(tmp_path)]
    )

    assert result.exit_code == 1
    assert "create fabric" in result.stderr and result.stderr.count("\n") == 1


def test_create_peer_cert_needs_a_name(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["create", "peer-cert", "--path", str(tmp_path)])

    assert result.exit_code == 2

"""`deploy peer` through the command line, in-process: what it writes, where, with which mode,
and its refusals (DESIGN §9). The same command as a real process is in
tests/component/test_cli_processes.py."""

from __future__ import annotations

import base64
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from clusterlink.certs import create_fabric, create_peer_cert
from clusterlink.cli.main import app
from tests.unit._kube_schemas import check_object
from tests.unit.test_cli_usage import one_error_line


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CLUSTERLINK_PEER_DIR", raising=False)
    return CliRunner()


@pytest.fixture(name="base", scope="module")
def base_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fabric ``fab`` with the peer ``site-a``; tests that write copy it first."""
    path = tmp_path_factory.mktemp("fabric")
    create_fabric(path, "fab")
    create_peer_cert(path, "site-a", "fab")
    return path


@pytest.fixture
def fabric(base: Path, tmp_path: Path) -> Path:
    shutil.copytree(base, tmp_path, dirs_exist_ok=True)
    return tmp_path


def deploy(*args: str, path: Path) -> list[str]:
    return ["deploy", "peer", "--name", "site-a", "--fabric", "fab", "--path", str(path), *args]


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def test_kinds_replicas_and_labels_reach_the_objects(runner: CliRunner, base: Path) -> None:
    args = ["--ingress", "nodeport", "--ingress-port", "30443", "--replicas", "2"]
    result = runner.invoke(app, deploy(*args, "--label", "region=eu", "-o", "yaml", path=base))

    assert result.exit_code == 0, result.stderr
    docs = documents(result.stdout)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "region=eu" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    service = one(docs, "Service")["spec"]
    assert (service["type"], service["ports"][0]["nodePort"]) == ("NodePort", 30443)


def test_the_secret_holds_the_peers_certificate_key_and_ca(runner: CliRunner, base: Path) -> None:
    result = runner.invoke(app, deploy("-o", "yaml", path=base))

    assert result.exit_code == 0, result.stderr
    data = one(documents(result.stdout), "Secret")["data"]
    peer_dir = base / "fab" / "site-a"
    assert data == {
        name: base64.b64encode((peer_dir / name).read_bytes()).decode()
        for name in ("cert.pem", "key.pem", "ca.pem")
    }
    admin_key = (peer_dir / "admin" / "key.pem").read_bytes()
    assert base64.b64encode(admin_key).decode() not in result.stdout


def test_by_default_it_writes_peer_dir_k8s_yaml_readable_by_its_owner_only(
    runner: CliRunner, fabric: Path
) -> None:
    result = runner.invoke(app, deploy(path=fabric))

    written = fabric / "fab" / "site-a" / "k8s.yaml"
    assert result.exit_code == 0, result.stderr
    assert str(written) in result.stdout and result.stdout.count("\n") == 1
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    for doc in documents(written.read_text()):
        check_object(doc)


def test_output_file_replaces_a_file_there_and_makes_it_0600(
    runner: CliRunner, fabric: Path
) -> None:
    target = fabric / "out.yaml"
    target.write_text("old")
    target.chmod(0o644)

    result = runner.invoke(app, deploy("--output-file", str(target), path=fabric))

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert one(documents(target.read_text()), "Deployment")["metadata"]["name"] == "clusterlink"
    assert [p.name for p in fabric.iterdir() if p.name.startswith(".")] == []


def test_o_yaml_writes_no_file(runner: CliRunner, fabric: Path) -> None:
    result = runner.invoke(app, deploy("-o", "yaml", path=fabric))

    assert result.exit_code == 0, result.stderr
    assert not (fabric / "fab" / "site-a" / "k8s.yaml").exists()


def test_a_missing_peer_directory_is_one_line_and_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, deploy(path=tmp_path))

    assert result.exit_code == 1
    assert one_error_line(result.stderr)
    assert "does not exist" in result.stderr and "create peer-cert" in result.stderr


def test_a_directory_holding_another_peers_certificate_is_refused(
    runner: CliRunner, fabric: Path
) -> None:
    (fabric / "fab" / "site-a").rename(fabric / "fab" / "site-b")

    result = runner.invoke(
        app, ["deploy", "peer", "--name", "site-b", "--fabric", "fab", "--path", str(fabric)]
    )

    assert result.exit_code == 1
    assert one_error_line(result.stderr)
    assert "'site-a', not 'site-b'" in result.stderr


def test_an_unwritable_output_file_names_that_file(runner: CliRunner, fabric: Path) -> None:
    target = fabric / "no-such-dir" / "k8s.yaml"

    result = runner.invoke(app, deploy("--output-file", str(target), path=fabric))

    assert result.exit_code == 1
    assert result.stderr == f"error: {target}: no such file or directory\n"


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "peer"],
        ["deploy", "peer", "--name", "Site_A"],
        ["deploy", "peer", "--name", "a", "--fabric", "../up"],
        ["deploy", "peer", "--name", "a", "--ingress", "Ingress"],
        ["deploy", "peer", "--name", "a", "--ingress-port", "70000"],
        ["deploy", "peer", "--name", "a", "--replicas", "0"],
        ["deploy", "peer", "--name", "a", "--namespace", "Not_A_Namespace"],
        ["deploy", "peer", "--name", "a", "--label", "no-equals"],
        ["deploy", "peer", "--name", "a", "--image", "has space"],
        ["deploy", "peer", "--name", "a", "--log-level", "loud"],
        ["deploy", "peer", "--name", "a", "-o", "json"],
        ["deploy", "peer", "--name", "a", "-o", "yaml", "--output-file", "x.yaml"],
    ],
    ids=repr,
)
def test_usage_errors_exit_2_before_anything_is_read(
    runner: CliRunner, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing there: a usage error must not get as far as the files

    result = runner.invoke(app, args)

    assert result.exit_code == 2, result.output


def test_the_deployments_arguments_are_ones_gateway_run_takes(
    runner: CliRunner, base: Path, tmp_path: Path
) -> None:
    """The container runs ``clusterlink`` with the Deployment's args: every flag must parse
    (exit 2 is a usage error). Pointed at an empty peer directory, the gateway then stops at
    its first real check, the credentials (exit 1), before anything listens."""
    result = runner.invoke(app, deploy("-o", "yaml", path=base))
    container = one(documents(result.stdout), "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    args = list(container["args"])
    args[args.index("--peer-dir") + 1] = str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()

    run = runner.invoke(app, args)

    assert run.exit_code == 1, run.stderr
    assert one_error_line(run.stderr)
    assert "cert.pem" in run.stderr or "certificate" in run.stderr

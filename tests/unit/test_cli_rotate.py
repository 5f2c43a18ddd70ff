"""`create fabric --rotate`, `rotate peer-cert`, `rotate ca-bundle` through the real command
line: the files they write, their modes, and every refusal (one stderr line, exit 1, nothing
changed on disk)."""

import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from clusterlink.certs import ca_id, load_peer_dir
from clusterlink.cli.main import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CLUSTERLINK_PEER_DIR", raising=False)
    return CliRunner()


@pytest.fixture
def base(runner: CliRunner, tmp_path: Path) -> Path:
    """A fabric ``fab`` with peers ``a`` and ``b``."""
    invoke(runner, tmp_path, "create", "fabric", "--name", "fab")
    for peer in ("a", "b"):
        invoke(runner, tmp_path, "create", "peer-cert", "--name", peer, "--fabric", "fab")
    return tmp_path


def invoke(runner: CliRunner, base: Path, *args: str, rc: int = 0) -> Result:
    """Run the command with ``--path base``; it must exit with ``rc``."""
    result = runner.invoke(app, [*args, "--path", str(base)])
    assert result.exit_code == rc, (result.stdout, result.stderr)
    if rc == 1:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def certs_in(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def rotate_fabric(runner: CliRunner, base: Path) -> Result:
    return invoke(runner, base, "create", "fabric", "--name", "fab", "--rotate")


def test_fabric_rotation_keeps_the_previous_ca_aside_with_a_private_key(
    runner: CliRunner, base: Path
) -> None:
    fab = base / "fab"
    old_cert, old_key = (fab / "cert.pem").read_bytes(), (fab / "key.pem").read_bytes()

    result = rotate_fabric(runner, base)

    assert (fab / "previous_ca" / "cert.pem").read_bytes() == old_cert
    assert (fab / "previous_ca" / "key.pem").read_bytes() == old_key
    assert (fab / "cert.pem").read_bytes() != old_cert
    assert mode(fab / "key.pem") == mode(fab / "previous_ca" / "key.pem") == 0o600
    assert mode(fab / "previous_ca") == 0o700
    new = certs_in(fab / "cert.pem")[0]
    assert ca_id(new) in result.stdout and "rotate ca-bundle" in result.stdout
    assert not list(fab.glob(".partial-*"))
    assert result.stderr.startswith(f"warning: {fab / 'key.pem'} is the private key ")


def test_a_second_fabric_rotation_is_refused_until_the_previous_ca_is_gone(
    runner: CliRunner, base: Path
) -> None:
    rotate_fabric(runner, base)
    before = snapshot(base / "fab")

    result = invoke(runner, base, "create", "fabric", "--name", "fab", "--rotate", rc=1)

    assert "previous_ca already exists" in result.stderr
    assert snapshot(base / "fab") == before


def test_rotating_a_fabric_that_does_not_exist_is_refused(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = invoke(runner, tmp_path, "create", "fabric", "--name", "nope", "--rotate", rc=1)

    assert "create it with `clusterlink create fabric" in result.stderr


def test_a_peer_created_during_the_overlap_trusts_both_cas(runner: CliRunner, base: Path) -> None:
    rotate_fabric(runner, base)

    invoke(runner, base, "create", "peer-cert", "--name", "c", "--fabric", "fab")

    trusted = certs_in(base / "fab" / "c" / "ca.pem")
    assert trusted == [
        *certs_in(base / "fab/cert.pem"),
        *certs_in(base / "fab/previous_ca/cert.pem"),
    ]


def test_rotate_peer_cert_replaces_gateway_and_admin_credentials_and_keeps_no_old_key(
    runner: CliRunner, base: Path
) -> None:
    peer = base / "fab" / "a"
    before = snapshot(peer)

    result = invoke(runner, base, "rotate", "peer-cert", "--name", "a", "--fabric", "fab")

    after = snapshot(peer)
    assert set(after) == set(before)  # nothing kept beside (no *.old, no staging left)
    for file in ("cert.pem", "key.pem", "admin/cert.pem", "admin/key.pem"):
        assert after[file] != before[file], file
    assert after["ca.pem"] == before["ca.pem"]
    assert mode(peer / "key.pem") == mode(peer / "admin" / "key.pem") == 0o600
    serial = re.search(r"serial ([0-9A-F]+)", result.stdout)
    assert serial and f"{certs_in(peer / 'cert.pem')[0].serial_number:X}" in serial.group(1)
    assert load_peer_dir(peer).name == "a"


def test_rotate_peer_cert_refuses_while_the_peer_does_not_trust_the_new_ca(
    runner: CliRunner, base: Path
) -> None:
    rotate_fabric(runner, base)
    before = snapshot(base / "fab" / "a")

    result = invoke(runner, base, "rotate", "peer-cert", "--name", "a", "--fabric", "fab", rc=1)

    assert "does not trust CA" in result.stderr and "rotate ca-bundle" in result.stderr
    assert snapshot(base / "fab" / "a") == before


def test_rotate_peer_cert_of_an_unknown_peer_is_refused(runner: CliRunner, base: Path) -> None:
    result = invoke(runner, base, "rotate", "peer-cert", "--name", "zz", "--fabric", "fab", rc=1)

    assert "no peer directory" in result.stderr and "create peer-cert" in result.stderr


def test_a_peer_rotated_from_the_new_ca_loads(runner: CliRunner, base: Path) -> None:
    rotate_fabric(runner, base)
    new_ca = str(base / "fab" / "cert.pem")
    invoke(runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab", "--add", new_ca)

    invoke(runner, base, "rotate", "peer-cert", "--name", "a", "--fabric", "fab")

    issuer = certs_in(base / "fab" / "a" / "cert.pem")[0].issuer
    assert issuer == certs_in(base / "fab" / "cert.pem")[0].subject
    assert load_peer_dir(base / "fab" / "a").fabric == "fab"


def test_ca_bundle_without_changes_lists_the_cas_and_which_issued_the_peer(
    runner: CliRunner, base: Path
) -> None:
    before = snapshot(base / "fab" / "a")

    result = invoke(runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab")

    ca = certs_in(base / "fab" / "cert.pem")[0]
    assert "peer a trusts 1 CA(s) of fabric fab:" in result.stdout
    assert f"{ca_id(ca)}  valid " in result.stdout
    assert "(issued this peer's certificate)" in result.stdout
    assert snapshot(base / "fab" / "a") == before


def test_ca_bundle_add_is_atomic_public_and_idempotent(runner: CliRunner, base: Path) -> None:
    rotate_fabric(runner, base)
    new_ca = base / "fab" / "cert.pem"
    args = ("rotate", "ca-bundle", "--name", "a", "--fabric", "fab", "--add", str(new_ca))

    added = invoke(runner, base, *args)
    again = invoke(runner, base, *args)

    bundle = base / "fab" / "a" / "ca.pem"
    assert certs_in(bundle) == [*certs_in(base / "fab/previous_ca/cert.pem"), *certs_in(new_ca)]
    assert mode(bundle) == 0o644
    assert f"added CA {ca_id(certs_in(new_ca)[0])}" in added.stdout
    assert "was already in" in again.stdout
    assert len(certs_in(bundle)) == 2


def test_ca_bundle_remove_by_fingerprint_prefix(runner: CliRunner, base: Path) -> None:
    rotate_fabric(runner, base)
    new_ca = str(base / "fab" / "cert.pem")
    invoke(runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab", "--add", new_ca)
    invoke(runner, base, "rotate", "peer-cert", "--name", "a", "--fabric", "fab")
    old = certs_in(base / "fab/previous_ca/cert.pem")[0]

    result = invoke(
        runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab",
        "--remove", ca_id(old)[:15],
    )  # fmt: skip

    assert f"removed CA {ca_id(old)}" in result.stdout
    assert certs_in(base / "fab" / "a" / "ca.pem") == certs_in(base / "fab" / "cert.pem")


def test_ca_bundle_refuses_to_remove_the_ca_of_the_peers_own_certificate(
    runner: CliRunner, base: Path
) -> None:
    rotate_fabric(runner, base)
    new_ca = str(base / "fab" / "cert.pem")
    invoke(runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab", "--add", new_ca)
    before = snapshot(base / "fab" / "a")
    old_ca = str(base / "fab" / "previous_ca" / "cert.pem")

    result = invoke(
        runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab",
        "--remove", old_ca, rc=1,
    )  # fmt: skip

    assert "would make the gateway refuse its own certificate" in result.stderr
    assert "rotate peer-cert --name a" in result.stderr
    assert snapshot(base / "fab" / "a") == before


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--add", "fab/a/cert.pem", "not a ClusterLink fabric CA"),
        ("--add", "other/cert.pem", "holds the CA of fabric 'other'"),
        ("--add", "missing.pem", "missing.pem is missing"),
        ("--remove", "other/cert.pem", "is not in"),
        ("--remove", "SHA256:00000000", "no CA with fingerprint SHA256:00000000"),
        ("--remove", "nonsense", "neither a CA certificate file nor a fingerprint"),
    ],
)
def test_ca_bundle_refusals_change_nothing(
    runner: CliRunner, base: Path, option: str, value: str, message: str
) -> None:
    invoke(runner, base, "create", "fabric", "--name", "other")
    before = snapshot(base / "fab" / "a")
    path = str(base / value) if value.endswith(".pem") else value

    result = invoke(
        runner, base, "rotate", "ca-bundle", "--name", "a", "--fabric", "fab", option, path, rc=1
    )

    assert message in result.stderr
    assert snapshot(base / "fab" / "a") == before


@pytest.mark.parametrize(
    "args",
    [
        ["rotate"],
        ["rotate", "peer-cert"],
        ["rotate", "ca-bundle", "--fabric", "fab"],
        ["rotate", "nothing"],
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str]) -> None:
    assert runner.invoke(app, args).exit_code == 2


def test_help_describes_the_rotate_commands(runner: CliRunner) -> None:
    overview = runner.invoke(app, ["rotate", "--help"]).stdout
    bundle = runner.invoke(app, ["rotate", "ca-bundle", "--help"]).stdout
    fabric = runner.invoke(app, ["create", "fabric", "--help"]).stdout

    assert "peer-cert" in overview and "ca-bundle" in overview
    assert "--add" in bundle and "--remove" in bundle and "fingerprint" in bundle
    assert "--rotate" in fabric and "previous_ca" in fabric

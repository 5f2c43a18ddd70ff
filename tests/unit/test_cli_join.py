"""`create peer-key`, `sign` and `install peer-cert` through the real command line (files only).

What a user sees at each step: what was made, what comes next, and for every refusal one
``error: ...`` line and exit 1, with nothing written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clusterlink.certs.issuing import peer_names
from clusterlink.cli.main import app


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CLUSTERLINK_PEER_DIR", raising=False)
    return CliRunner()


def ok(runner: CliRunner, *args: str) -> list[str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def refused(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    return line


@pytest.fixture
def owner(runner: CliRunner, tmp_path: Path) -> Path:
    ok(runner, "create", "fabric", "--name", "fab", "--path", str(tmp_path / "owner"))
    return tmp_path / "owner"


def test_the_three_steps_make_a_peer_directory_without_moving_a_key(
    runner: CliRunner, owner: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    made = ok(runner, "create", "peer-key", "--name", "site-b", "--path", str(site))
    inbox = owner / "site-b"
    inbox.mkdir()
    shutil.copy(site / "site-b" / "request.csr", inbox)
    signed = ok(
        runner,
        "sign",
        "--csr",
        str(inbox / "request.csr"),
        "--fabric",
        "fab",
        "--path",
        str(owner),
        "--valid-for",
        "30",
    )
    installed = ok(
        runner,
        "install",
        "peer-cert",
        "--peer-dir",
        str(site / "site-b"),
        "--cert",
        str(inbox / "cert.pem"),
        "--ca",
        str(inbox / "ca.pem"),
    )

    assert made[0].startswith(
        f"created the key and certificate request of peer site-b in {site / 'site-b'} "
    )
    assert made[1].startswith(f"next: send {site / 'site-b' / 'request.csr'} to the fabric's")
    assert signed[0].startswith("signed the request of peer site-b with CA SHA256:")
    assert f"{inbox / 'cert.pem'} (serial " in signed[0]
    assert installed[0].startswith(
        f"installed the certificate of peer site-b of fabric fab in {site / 'site-b'} (serial "
    )
    assert installed[1].startswith(f"next: `clusterlink gateway run --peer-dir {site / 'site-b'}`")
    cert = x509.load_pem_x509_certificate((site / "site-b" / "cert.pem").read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days == 30  # --valid-for, plus the few minutes of clock skew allowance
    assert not list(owner.rglob("site-b/key.pem"))


def test_sign_refuses_a_request_to_be_a_ca_in_one_line(
    runner: CliRunner, owner: Path, tmp_path: Path
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(peer_names("site-b")), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    request = tmp_path / "request.csr"
    request.write_bytes(csr.public_bytes(serialization.Encoding.PEM))

    line = refused(runner, "sign", "--csr", str(request), "--fabric", "fab", "--path", str(owner))

    assert line == (
        f"error: {request} asks to be a certificate authority; a peer may not sign "
        "certificates: refusing to sign it"
    )
    assert not (tmp_path / "cert.pem").exists()


def test_sign_refuses_a_request_made_for_another_fabric_in_one_line(
    runner: CliRunner, owner: Path, tmp_path: Path
) -> None:
    """A request shaped by hand (openssl req) with a subject of its own."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "prod"),
            x509.NameAttribute(x509.NameOID.COMMON_NAME, "site-b"),
        ]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName(peer_names("site-b")), critical=False)
        .sign(key, hashes.SHA256())
    )
    request = tmp_path / "request.csr"
    request.write_bytes(csr.public_bytes(serialization.Encoding.PEM))

    line = refused(runner, "sign", "--csr", str(request), "--fabric", "fab", "--path", str(owner))

    assert line.startswith(f"error: {request} asks for the subject 'CN=site-b,O=prod'; ")


def test_install_refuses_a_certificate_that_does_not_match_the_key_in_one_line(
    runner: CliRunner, owner: Path, tmp_path: Path
) -> None:
    for site in ("one", "two"):
        ok(runner, "create", "peer-key", "--name", "site-b", "--path", str(tmp_path / site))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(tmp_path / "one" / "site-b" / "request.csr", inbox)
    ok(runner, "sign", "--csr", str(inbox / "request.csr"), "--fabric", "fab", "--path", str(owner))
    target = tmp_path / "two" / "site-b"

    line = refused(
        runner,
        "install",
        "peer-cert",
        "--peer-dir",
        str(target),
        "--cert",
        str(inbox / "cert.pem"),
        "--ca",
        str(inbox / "ca.pem"),
    )

    assert line.startswith(f"error: {inbox / 'cert.pem'} does not match {target / 'key.pem'}: ")
    assert not (target / "cert.pem").exists()


def test_install_refuses_a_ca_that_does_not_verify_the_certificate_in_one_line(
    runner: CliRunner, owner: Path, tmp_path: Path
) -> None:
    ok(runner, "create", "peer-key", "--name", "site-b", "--path", str(tmp_path / "site"))
    ok(runner, "create", "fabric", "--name", "fab", "--path", str(tmp_path / "elsewhere"))
    request = tmp_path / "site" / "site-b" / "request.csr"
    out = tmp_path / "out"
    out.mkdir()
    ok(
        runner,
        "sign",
        "--csr",
        str(request),
        "--path",
        str(owner),
        "--fabric",
        "fab",
        "--out",
        str(out),
    )
    stranger = tmp_path / "elsewhere" / "fab" / "cert.pem"

    line = refused(
        runner,
        "install",
        "peer-cert",
        "--peer-dir",
        str(tmp_path / "site" / "site-b"),
        "--cert",
        str(out / "cert.pem"),
        "--ca",
        str(stranger),
    )

    assert line.startswith(f"error: {stranger} does not verify {out / 'cert.pem'}: ")


@pytest.mark.parametrize("ttl", ["15x", "m", "-5m", "1.5h", "", "0s"])
def test_invite_with_a_ttl_that_is_no_duration_is_a_usage_error(
    runner: CliRunner, tmp_path: Path, ttl: str
) -> None:
    result = runner.invoke(
        app, ["--peer-dir", str(tmp_path), "invite", "--name", "site-b", "--ttl", ttl]
    )

    assert result.exit_code == 2
    assert "is not a duration" in result.stderr

"""Creating a fabric and peer directories: layout, modes, refusals, certificate profile."""

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clusterlink.certs import (
    _fs,
    create_fabric,
    create_peer_cert,
    load_fabric,
    load_peer_dir,
)
from clusterlink.errors import AlreadyExistsError, CertificateError, ValidationError

PEER_FILES = {"cert.pem", "key.pem", "ca.pem", "admin", "admin/cert.pem", "admin/key.pem"}


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def is_p256(certificate: x509.Certificate) -> bool:
    key = certificate.public_key()
    return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


@pytest.fixture(params=[0o000, 0o022, 0o077], ids=["umask000", "umask022", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_fabric_directory_holds_the_ca_with_a_private_key(tmp_path: Path, umask: int) -> None:
    fabric = create_fabric(tmp_path, "prod")
    assert fabric == tmp_path / "prod"
    assert tree(fabric) == {"cert.pem", "key.pem"}
    assert mode(fabric / "key.pem") == 0o600
    assert mode(fabric) == 0o700
    assert mode(fabric / "cert.pem") == 0o644 & ~umask


def test_peer_directory_layout_and_modes(tmp_path: Path, umask: int) -> None:
    create_fabric(tmp_path)
    peer = create_peer_cert(tmp_path, "peer-a")
    assert peer == tmp_path / "default_fabric" / "peer-a"
    assert tree(peer) == PEER_FILES
    assert (peer / "ca.pem").read_bytes() == (tmp_path / "default_fabric/cert.pem").read_bytes()
    for key in ("key.pem", "admin/key.pem"):
        assert mode(peer / key) == 0o600
    for directory in (peer, peer / "admin"):
        assert mode(directory) == 0o700
    assert not [p for p in (tmp_path / "default_fabric").iterdir() if p.name.startswith(".")]


def test_fabric_is_never_overwritten(tmp_path: Path) -> None:
    create_fabric(tmp_path)
    before = (tmp_path / "default_fabric/key.pem").read_bytes()
    with pytest.raises(AlreadyExistsError, match=r"default_fabric/cert\.pem already exists"):
        create_fabric(tmp_path)
    assert (tmp_path / "default_fabric/key.pem").read_bytes() == before


def test_fabric_with_only_a_key_left_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f/key.pem").write_bytes(b"precious")
    with pytest.raises(AlreadyExistsError, match=r"f/key\.pem"):
        create_fabric(tmp_path, "f")
    assert (tmp_path / "f/key.pem").read_bytes() == b"precious"


def test_peer_directory_is_never_overwritten(tmp_path: Path) -> None:
    create_fabric(tmp_path)
    peer = create_peer_cert(tmp_path, "a")
    before = {f: (peer / f).read_bytes() for f in PEER_FILES - {"admin"}}
    with pytest.raises(AlreadyExistsError, match=r"a/cert\.pem already exists"):
        create_peer_cert(tmp_path, "a")
    assert {f: (peer / f).read_bytes() for f in PEER_FILES - {"admin"}} == before


def test_peer_directory_holding_any_credential_file_is_refused(tmp_path: Path) -> None:
    create_fabric(tmp_path)
    admin = tmp_path / "default_fabric/a/admin"
    admin.mkdir(parents=True)
    (admin / "key.pem").write_bytes(b"precious")
    with pytest.raises(AlreadyExistsError, match=r"admin/key\.pem"):
        create_peer_cert(tmp_path, "a")
    assert tree(admin.parent) == {"admin", "admin/key.pem"}


def test_existing_peer_directory_without_credentials_is_filled_and_keeps_its_files(
    tmp_path: Path,
) -> None:
    create_fabric(tmp_path)
    peer = tmp_path / "default_fabric/a"
    peer.mkdir(mode=0o755)
    (peer / "state.db").write_bytes(b"state")
    create_peer_cert(tmp_path, "a")
    assert tree(peer) == PEER_FILES | {"state.db"}
    assert (peer / "state.db").read_bytes() == b"state"
    assert mode(peer) == 0o700
    assert load_peer_dir(peer).name == "a"


def test_a_failure_while_writing_leaves_no_peer_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_fabric(tmp_path)
    real_write = _fs._write
    written: list[Path] = []

    def write_then_fail(path: Path, data: bytes, *, private: bool) -> None:
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real_write(path, data, private=private)
        written.append(path)

    monkeypatch.setattr(_fs, "_write", write_then_fail)
    with pytest.raises(CertificateError, match="No space left on device"):
        create_peer_cert(tmp_path, "a")
    assert tree(tmp_path / "default_fabric") == {"cert.pem", "key.pem"}


def test_peer_cert_without_a_fabric_says_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="`clusterlink create fabric --name nope"):
        create_peer_cert(tmp_path, "a", fabric="nope")
    assert list(tmp_path.iterdir()) == []


def test_invalid_names_are_rejected_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="fabric name"):
        create_fabric(tmp_path, "../evil")
    create_fabric(tmp_path)
    with pytest.raises(ValidationError, match="peer name"):
        create_peer_cert(tmp_path, "Bad_Name")
    with pytest.raises(ValidationError, match="fabric name"):
        create_peer_cert(tmp_path, "a", fabric="../default_fabric")
    assert tree(tmp_path) == {"default_fabric", "default_fabric/cert.pem", "default_fabric/key.pem"}


def test_ca_certificate_profile(tmp_path: Path) -> None:
    ca = cert(create_fabric(tmp_path, "prod") / "cert.pem")
    assert ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "prod"
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "prod fabric CA"
    assert ca.issuer == ca.subject
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert (constraints.value.ca, constraints.value.path_length) == (True, 0)
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert is_p256(ca)
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3650) < lifetime < timedelta(days=3651)


def test_peer_and_admin_certificate_profile(tmp_path: Path) -> None:
    create_fabric(tmp_path, "prod")
    started = datetime.now(UTC)
    peer_dir = create_peer_cert(tmp_path, "a.example", fabric="prod")
    peer, admin = cert(peer_dir / "cert.pem"), cert(peer_dir / "admin/cert.pem")

    assert peer.subject.rfc4514_string() == "CN=a.example,O=prod"
    peer_san = peer.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert peer_san.get_values_for_type(x509.DNSName) == ["a.example"]
    assert peer_san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:clusterlink:peer:a.example"
    ]
    assert list(peer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]

    assert admin.subject.rfc4514_string() == "CN=admin,O=prod"
    admin_san = admin.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(admin_san) == [x509.UniformResourceIdentifier("urn:clusterlink:admin:a.example")]
    assert list(admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]

    for leaf in (peer, admin):
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert is_p256(leaf)
        assert timedelta(minutes=1) < started - leaf.not_valid_before_utc < timedelta(minutes=10)
        lifetime = leaf.not_valid_after_utc - started
        assert timedelta(days=729) < lifetime < timedelta(days=731)
    assert peer.serial_number != admin.serial_number


def test_peer_validity_is_a_parameter_and_never_outlives_the_ca(tmp_path: Path) -> None:
    create_fabric(tmp_path)
    short = cert(create_peer_cert(tmp_path, "a", validity=timedelta(days=7)) / "cert.pem")
    assert short.not_valid_after_utc - datetime.now(UTC) < timedelta(days=7)
    long = cert(create_peer_cert(tmp_path, "b", validity=timedelta(days=99999)) / "cert.pem")
    ca = cert(tmp_path / "default_fabric/cert.pem")
    assert long.not_valid_after_utc == ca.not_valid_after_utc


def test_longest_peer_name_gets_a_certificate_without_common_name(tmp_path: Path) -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    create_fabric(tmp_path)
    peer_dir = load_peer_dir(create_peer_cert(tmp_path, name))
    assert peer_dir.name == name
    assert not cert(peer_dir.cert_file).subject.get_attributes_for_oid(NameOID.COMMON_NAME)


def test_loading_a_fabric_that_is_not_a_ca_is_refused(tmp_path: Path) -> None:
    create_fabric(tmp_path)
    create_peer_cert(tmp_path, "a")
    with pytest.raises(CertificateError, match="not a ClusterLink fabric CA"):
        load_fabric(tmp_path / "default_fabric", "a")

"""Loading a peer directory: what it reports, and a clear error for every way it can be broken."""

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clusterlink.certs import (
    PeerDir,
    PeerName,
    create_fabric,
    create_peer_cert,
    issue_peer_credentials,
    load_fabric,
    load_peer_dir,
)
from clusterlink.errors import CertificateError


@pytest.fixture
def peer_a(tmp_path: Path) -> Path:
    create_fabric(tmp_path / "one", "prod")
    return create_peer_cert(tmp_path / "one", "a", fabric="prod")


def other_fabric_peer(tmp_path: Path, name: str = "a") -> Path:
    """A peer of a second fabric with the same name as the first: only the CA key differs."""
    create_fabric(tmp_path / "two", "prod")
    return create_peer_cert(tmp_path / "two", name, fabric="prod")


def test_loaded_peer_dir_names_the_peer_fabric_and_files(peer_a: Path) -> None:
    pd = load_peer_dir(peer_a)
    assert (pd.name, pd.fabric, pd.path) == ("a", "prod", peer_a)
    assert pd.cert_file == peer_a / "cert.pem"
    assert pd.key_file == peer_a / "key.pem"
    assert pd.ca_file == peer_a / "ca.pem"
    assert pd.admin_cert_file == peer_a / "admin/cert.pem"
    assert pd.admin_key_file == peer_a / "admin/key.pem"


def test_name_comes_from_the_certificate_not_the_directory(peer_a: Path, tmp_path: Path) -> None:
    moved = shutil.copytree(peer_a, tmp_path / "elsewhere")
    assert load_peer_dir(moved) == PeerDir(name=PeerName("a"), fabric="prod", path=moved)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"peer directory .*nope does not exist; create"):
        load_peer_dir(tmp_path / "nope")


def test_missing_certificate_says_how_to_create_it(peer_a: Path) -> None:
    (peer_a / "cert.pem").unlink()
    with pytest.raises(CertificateError) as info:
        load_peer_dir(peer_a)
    assert str(info.value).startswith(f"no peer certificate in {peer_a} (cert.pem is missing)")
    assert "`clusterlink create peer-cert --name PEER`" in str(info.value)


@pytest.mark.parametrize("missing", ["key.pem", "ca.pem", "admin/cert.pem", "admin/key.pem"])
def test_every_file_is_required(peer_a: Path, missing: str) -> None:
    (peer_a / missing).unlink()
    with pytest.raises(CertificateError, match=f"{Path(missing).name} is missing"):
        load_peer_dir(peer_a)


def test_key_not_matching_the_certificate(peer_a: Path) -> None:
    shutil.copy(peer_a / "admin/key.pem", peer_a / "key.pem")
    with pytest.raises(CertificateError, match=r"key\.pem is not the key of the certificate"):
        load_peer_dir(peer_a)


def test_certificate_and_key_of_another_fabric(peer_a: Path, tmp_path: Path) -> None:
    stranger = other_fabric_peer(tmp_path)
    for file in ("cert.pem", "key.pem"):
        shutil.copy(stranger / file, peer_a / file)
    with pytest.raises(CertificateError, match=r"cert\.pem was not issued by a CA of .*ca\.pem"):
        load_peer_dir(peer_a)


def test_admin_certificate_of_another_peer(peer_a: Path, tmp_path: Path) -> None:
    b = create_peer_cert(tmp_path / "one", "b", fabric="prod")
    shutil.copytree(b / "admin", peer_a / "admin", dirs_exist_ok=True)
    with pytest.raises(CertificateError, match="not the admin certificate of peer 'a'"):
        load_peer_dir(peer_a)


def test_a_file_that_is_not_pem(peer_a: Path) -> None:
    (peer_a / "ca.pem").write_text("hello")
    with pytest.raises(CertificateError, match=r"ca\.pem is not a PEM certificate"):
        load_peer_dir(peer_a)


def test_the_admin_certificate_is_not_a_peer_certificate(peer_a: Path) -> None:
    for file in ("cert.pem", "key.pem"):
        shutil.copy(peer_a / "admin" / file, peer_a / file)
    with pytest.raises(CertificateError, match="not a ClusterLink peer certificate"):
        load_peer_dir(peer_a)


def write_credentials_issued_at(peer_dir: Path, fabric_base: Path, now: datetime) -> None:
    ca = load_fabric(fabric_base, "prod")
    creds = issue_peer_credentials(ca, PeerName("a"), validity=timedelta(days=30), now=now)
    for file, issued in (("", creds.peer), ("admin/", creds.admin)):
        (peer_dir / f"{file}cert.pem").write_bytes(issued.cert_pem)
        (peer_dir / f"{file}key.pem").write_bytes(issued.key_pem)


def test_expired_certificate_is_reported_with_its_date(peer_a: Path, tmp_path: Path) -> None:
    write_credentials_issued_at(peer_a, tmp_path / "one", datetime.now(UTC) - timedelta(days=60))
    with pytest.raises(CertificateError) as info:
        load_peer_dir(peer_a)
    assert re.search(
        r"cert\.pem: certificate of peer a \(serial [0-9A-F]+\) expired at 20\S+ \S+ UTC "
        r"\(valid from 20\S+ \S+ UTC; now 20\S+ \S+ UTC\); "
        r"issue new ones with `clusterlink rotate peer-cert --name a --fabric prod`",
        str(info.value),
    ), info.value


def test_not_yet_valid_certificate_points_at_the_clock(peer_a: Path, tmp_path: Path) -> None:
    write_credentials_issued_at(peer_a, tmp_path / "one", datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(CertificateError, match=r"is not valid before .*check the clocks"):
        load_peer_dir(peer_a)

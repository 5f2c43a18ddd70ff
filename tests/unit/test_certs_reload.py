"""``CredentialReloader``: what a running gateway does when its certificate files change.

``build`` here records the peer directories it was given instead of making TLS contexts, so
each test sees exactly when the gateway would have swapped its contexts; the clock is
injected where a test is about validity periods running out.
"""

import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from clusterlink.certs import (
    CredentialReloader,
    PeerDir,
    PeerName,
    create_fabric,
    create_peer_cert,
    issue_peer_credentials,
    load_fabric,
    rotate_peer_cert,
    serial_hex,
)
from clusterlink.certs.issuing import new_fabric_ca
from clusterlink.errors import CertificateError


class Builds:
    """A ``build`` that counts its calls; ``hook`` runs inside it (to change files meanwhile)."""

    def __init__(self) -> None:
        self.count = 0
        self.hook: Callable[[], None] = lambda: None

    def __call__(self, pd: PeerDir) -> int:
        self.count += 1
        self.hook()
        return self.count


@pytest.fixture
def base(tmp_path: Path) -> Path:
    create_fabric(tmp_path, "prod")
    create_peer_cert(tmp_path, "a", "prod")
    return tmp_path


@pytest.fixture
def peer(base: Path) -> Path:
    return base / "prod" / "a"


def serial(path: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)


def reloader(
    peer: Path, clock: Callable[[], datetime] | None = None
) -> tuple[CredentialReloader[int], Builds]:
    builds = Builds()
    if clock is None:
        return CredentialReloader(peer, builds), builds
    return CredentialReloader(peer, builds, clock=clock), builds


def test_files_that_did_not_change_are_not_reloaded(peer: Path) -> None:
    watched, builds = reloader(peer)

    assert not watched.check()
    assert (watched.current, builds.count) == (1, 1)


def test_a_rotated_certificate_is_picked_up_and_logged_with_its_serial(
    base: Path, peer: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watched, _ = reloader(peer)
    rotate_peer_cert(base, "a", "prod")

    with caplog.at_level(logging.INFO, "clusterlink.certs"):
        assert watched.check()

    assert watched.current == 2
    assert serial_hex(watched.credentials.cert.serial_number) == serial(peer / "cert.pem")
    assert any(
        "reloaded the TLS credentials of peer a" in m and serial(peer / "cert.pem") in m
        for m in caplog.messages
    )


def test_a_key_that_does_not_match_is_rejected_once_and_the_old_credentials_stay(
    base: Path, peer: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watched, builds = reloader(peer)
    in_use = serial(peer / "cert.pem")
    shutil.copy(peer / "admin" / "key.pem", peer / "key.pem")

    with caplog.at_level(logging.WARNING, "clusterlink.certs"):
        assert not watched.check()
        assert not watched.check()  # the same files: not reported again

    assert (watched.current, builds.count) == (1, 1)
    rejected = [m for m in caplog.messages if "rejected the changed files" in m]
    assert len(rejected) == 1
    assert f"kept the TLS credentials in use (certificate serial {in_use})" in rejected[0]
    assert "key.pem is not the key of the certificate beside it" in rejected[0]

    rotate_peer_cert(base, "a", "prod")  # a good pair again
    assert watched.check()


def test_a_half_written_certificate_is_rejected(peer: Path) -> None:
    watched, _ = reloader(peer)
    whole = (peer / "cert.pem").read_bytes()
    (peer / "cert.pem").write_bytes(whole[: len(whole) // 2])

    assert not watched.check()

    (peer / "cert.pem").write_bytes(whole)  # the writer finished: same as before
    assert not watched.check()
    assert watched.current == 1


def test_an_expired_replacement_is_rejected_saying_when_it_expired(
    base: Path, peer: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watched, _ = reloader(peer)
    old = issue_peer_credentials(
        load_fabric(base, "prod"),
        PeerName("a"),
        validity=timedelta(days=1),
        now=datetime.now(UTC) - timedelta(days=5),
    )
    (peer / "key.pem").write_bytes(old.peer.key_pem)
    (peer / "cert.pem").write_bytes(old.peer.cert_pem)

    with caplog.at_level(logging.WARNING, "clusterlink.certs"):
        assert not watched.check()

    assert watched.current == 1
    assert any(
        "certificate of peer a (serial " in m and " expired at " in m for m in caplog.messages
    )


def test_a_certificate_of_another_peer_needs_a_restart(base: Path, peer: Path) -> None:
    watched, _ = reloader(peer)
    b = create_peer_cert(base, "b", "prod")
    for file in ("cert.pem", "key.pem"):
        shutil.copy(b / file, peer / file)

    assert not watched.check()
    assert watched.current == 1


def test_files_changing_while_they_are_loaded_are_read_again_at_the_next_check(
    base: Path, peer: Path
) -> None:
    watched, builds = reloader(peer)
    rotate_peer_cert(base, "a", "prod")

    def rotate_again() -> None:  # another rotation while the first is being loaded
        rotate_peer_cert(base, "a", "prod")

    builds.hook = rotate_again

    assert not watched.check()

    builds.hook = lambda: None
    assert watched.check()
    assert serial_hex(watched.credentials.cert.serial_number) == serial(peer / "cert.pem")


def test_sighup_reloads_even_unchanged_files(peer: Path) -> None:
    watched, _ = reloader(peer)

    assert watched.check(force=True)
    assert watched.current == 2


def test_an_own_certificate_that_expires_while_running_is_reported_once_as_an_error(
    peer: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [datetime.now(UTC)]
    watched, builds = reloader(peer, clock=lambda: now[0])
    now[0] += timedelta(days=800)  # past the 2-year certificate

    with caplog.at_level(logging.WARNING, "clusterlink.certs"):
        assert not watched.check()
        assert not watched.check()

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "rejected the current files" in errors[0].message
    assert " expired at " in errors[0].message
    assert builds.count == 1


def test_a_ca_of_the_bundle_running_out_rebuilds_the_contexts_without_it(
    peer: Path, caplog: pytest.LogCaptureFixture
) -> None:
    short = new_fabric_ca("prod", validity=timedelta(days=2))
    with (peer / "ca.pem").open("ab") as bundle:
        bundle.write(short.cert_pem)
    now = [datetime.now(UTC)]
    watched, builds = reloader(peer, clock=lambda: now[0])

    assert not watched.check()
    now[0] += timedelta(days=3)
    with caplog.at_level(logging.WARNING, "clusterlink.certs"):
        assert watched.check()

    assert builds.count == 2
    assert any("expired at" in m and "it is not trusted" in m for m in caplog.messages)


def test_a_directory_that_is_unusable_at_start_raises(peer: Path) -> None:
    (peer / "key.pem").unlink()

    with pytest.raises(CertificateError, match=r"key\.pem is missing"):
        reloader(peer)


def test_kubernetes_mode_needs_only_the_gateways_own_files(tmp_path: Path) -> None:
    """In a pod the peer directory is a Secret with cert.pem, key.pem and ca.pem: the admin
    key stays out of the cluster, and the gateway must start without it."""
    create_fabric(tmp_path, "fab")
    peer = create_peer_cert(tmp_path, "a", "fab")
    secret = tmp_path / "secret"
    secret.mkdir()
    for name in ("cert.pem", "key.pem", "ca.pem"):
        shutil.copy(peer / name, secret / name)
    with pytest.raises(CertificateError, match="admin"):
        CredentialReloader(secret, lambda pd: pd.name)
    reloader = CredentialReloader(secret, lambda pd: pd.name, require_admin=False)
    assert reloader.current == "a"

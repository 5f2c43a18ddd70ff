"""Joining across a boundary on files: create peer-key, sign, install, and the admin CA's reach.

Every private key is made where it is used: the site's key and admin key never go into what
travels (the request one way, the certificate and CA back), and the admin API of a site's
gateway trusts the site's own admin CA for that peer only. TLS is checked with real
handshakes over memory BIOs (the helpers of test_certs_tls), so no socket is opened.
"""

from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from clusterlink.certs import (
    PeerDir,
    admin_client_context,
    admin_peer_of,
    admin_server_context,
    create_fabric,
    create_peer_cert,
    create_peer_key,
    install_peer_cert,
    load_peer_dir,
    peer_client_context,
    peer_server_context,
    sign_request,
)
from clusterlink.certs._pem import as_peercert
from clusterlink.errors import AlreadyExistsError, CertificateError
from tests.unit.test_certs_tls import HandshakeFailed, handshake

ALPN = ["clusterlink/1"]
TRAVELLING = ("request.csr", "cert.pem", "ca.pem")


@dataclass(frozen=True)
class World:
    owner: Path  # where the fabric CA is
    a: PeerDir  # joined from its own site
    b: PeerDir  # joined from its own site
    made_here: PeerDir  # `create peer-cert` at the owner, one-machine style


def join(owner: Path, site: Path, peer: str, *, fabric: str = "fab") -> Path:
    """create peer-key at ``site``, the request copied to the owner, signed, copied back,
    installed: the README's steps."""
    directory = create_peer_key(site, peer)
    inbox = owner / "inbox" / peer
    inbox.mkdir(parents=True)
    shutil.copy(directory / "request.csr", inbox / "request.csr")
    sign_request(inbox / "request.csr", path=owner, fabric=fabric)
    install_peer_cert(directory, inbox / "cert.pem", inbox / "ca.pem")
    return directory


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("join")
    owner = base / "owner"
    create_fabric(owner, "fab")
    return World(
        owner=owner,
        a=load_peer_dir(join(owner, base / "site-a", "a")),
        b=load_peer_dir(join(owner, base / "site-b", "b")),
        made_here=load_peer_dir(create_peer_cert(owner, "c", "fab")),
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_peer_key_makes_the_key_the_request_and_the_site_admin(tmp_path: Path) -> None:
    directory = create_peer_key(tmp_path, "site-b")

    files = {str(p.relative_to(directory)) for p in directory.rglob("*")}
    assert files == {
        "key.pem",
        "request.csr",
        "admin",
        "admin/ca.pem",
        "admin/cert.pem",
        "admin/key.pem",
    }
    assert mode(directory / "key.pem") == mode(directory / "admin" / "key.pem") == 0o600
    assert mode(directory) == mode(directory / "admin") == 0o700
    admin = x509.load_pem_x509_certificate((directory / "admin" / "cert.pem").read_bytes())
    assert admin_peer_of(as_peercert(admin)) == "site-b"
    admin.verify_directly_issued_by(
        x509.load_pem_x509_certificate((directory / "admin" / "ca.pem").read_bytes())
    )


def test_create_peer_key_refuses_to_overwrite_anything(tmp_path: Path) -> None:
    directory = create_peer_key(tmp_path, "site-b")
    key = (directory / "key.pem").read_bytes()

    with pytest.raises(AlreadyExistsError, match=r"key\.pem already exists; refusing"):
        create_peer_key(tmp_path, "site-b")
    assert (directory / "key.pem").read_bytes() == key


def test_nothing_that_travels_holds_a_private_key(world: World) -> None:
    inbox = world.owner / "inbox"
    travelled = [inbox / peer / name for peer in ("a", "b") for name in TRAVELLING]

    assert all(path.is_file() for path in travelled)
    assert [p for p in travelled if b"PRIVATE KEY" in p.read_bytes()] == []
    assert not list(inbox.rglob("key.pem"))


def test_a_joined_site_is_a_peer_directory_like_any_other(world: World) -> None:
    assert (world.a.name, world.a.fabric) == ("a", "fab")
    client, _ = handshake(
        peer_client_context(world.a, ALPN), peer_server_context(world.b, ALPN), "b"
    )
    assert client.version() == "TLSv1.3"
    handshake(peer_client_context(world.made_here, ALPN), peer_server_context(world.a, ALPN), "a")


def test_the_sites_admin_certificate_administers_its_gateway(world: World) -> None:
    _, server = handshake(admin_client_context(world.a), admin_server_context(world.a), "a")

    assert admin_peer_of(server.getpeercert()) == "a"


def test_another_sites_admin_certificate_fails_the_handshake(world: World) -> None:
    """b's admin CA is b's alone: a's admin API never trusts it."""
    with pytest.raises(HandshakeFailed) as caught:
        handshake(admin_client_context(world.b), admin_server_context(world.a), "a")

    assert caught.value.side == "server"


def test_the_site_admin_ca_is_not_trusted_by_the_peer_listener(world: World) -> None:
    """What the site's admin CA signs can never pass as a gateway, even at its own site."""
    stranger = admin_client_context(world.a)  # presents a's admin certificate
    with pytest.raises(HandshakeFailed) as caught:
        handshake(stranger, peer_server_context(world.a, ALPN), "a")

    assert caught.value.side == "server"


def test_the_fabric_admin_certificate_of_a_peer_made_at_the_owner_still_works(
    world: World,
) -> None:
    _, server = handshake(
        admin_client_context(world.made_here), admin_server_context(world.made_here), "c"
    )

    assert admin_peer_of(server.getpeercert()) == "c"


def test_sign_refuses_to_overwrite_what_it_wrote(world: World) -> None:
    with pytest.raises(AlreadyExistsError, match=r"cert\.pem already exists"):
        sign_request(world.owner / "inbox" / "a" / "request.csr", path=world.owner, fabric="fab")


def test_sign_writes_into_out_when_given(world: World, tmp_path: Path) -> None:
    signed = sign_request(
        world.owner / "inbox" / "a" / "request.csr", path=world.owner, fabric="fab", out=tmp_path
    )

    assert (signed.cert_file, signed.ca_file) == (tmp_path / "cert.pem", tmp_path / "ca.pem")
    assert signed.peer == "a"


@pytest.fixture
def pending(world: World, tmp_path: Path) -> Path:
    """A site that made its key and request, and got nothing installed yet."""
    return create_peer_key(tmp_path / "site-d", "d")


def signed_for(world: World, directory: Path, out: Path) -> tuple[Path, Path]:
    out.mkdir()
    shutil.copy(directory / "request.csr", out / "request.csr")
    signed = sign_request(out / "request.csr", path=world.owner, fabric="fab")
    return signed.cert_file, signed.ca_file


def install_refusal(directory: Path, cert: Path, ca: Path) -> str:
    before = sorted(p.name for p in directory.iterdir())
    with pytest.raises(CertificateError) as caught:
        install_peer_cert(directory, cert, ca)
    assert sorted(p.name for p in directory.iterdir()) == before  # nothing written
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_install_refuses_a_certificate_of_another_key(
    world: World, pending: Path, tmp_path: Path
) -> None:
    cert, ca = signed_for(world, world.a.path, tmp_path / "for-a")

    message = install_refusal(pending, cert, ca)

    assert message.startswith(f"{cert} does not match {pending / 'key.pem'}: it certifies ")


def test_install_refuses_a_ca_that_does_not_verify_the_certificate(
    world: World, pending: Path, tmp_path: Path
) -> None:
    cert, _ = signed_for(world, pending, tmp_path / "for-d")
    other = tmp_path / "other"
    create_fabric(other, "fab")

    message = install_refusal(pending, cert, other / "fab" / "cert.pem")

    assert message.startswith(f"{other / 'fab' / 'cert.pem'} does not verify {cert}: ")


def test_install_refuses_a_ca_file_that_is_no_fabric_ca(
    world: World, pending: Path, tmp_path: Path
) -> None:
    cert, _ = signed_for(world, pending, tmp_path / "for-d")

    message = install_refusal(pending, cert, cert)  # a leaf, not a CA

    assert "holds a certificate that is not a ClusterLink fabric CA" in message


def test_install_puts_both_files_in_place_and_the_directory_loads(
    world: World, pending: Path, tmp_path: Path
) -> None:
    cert, ca = signed_for(world, pending, tmp_path / "for-d")

    installed = install_peer_cert(pending, cert, ca)

    assert installed.peer_dir == load_peer_dir(pending)
    assert (pending / "cert.pem").read_bytes() == cert.read_bytes()
    assert (pending / "ca.pem").read_bytes() == ca.read_bytes()
    assert mode(pending / "key.pem") == 0o600


def test_a_site_directory_without_its_certificate_says_how_to_get_one(pending: Path) -> None:
    with pytest.raises(CertificateError, match=r"`clusterlink install peer-cert`"):
        load_peer_dir(pending)

"""Real TLS 1.3 handshakes between our contexts, over in-memory BIOs (no sockets).

Each test pumps bytes between a client and a server ``SSLObject`` until both finish or one
fails, then reads identities from ``getpeercert()`` exactly as a listener would. In TLS 1.3
the client finishes before the server has checked its certificate, so a rejected client
certificate shows up as a *server-side* failure.
"""

import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterlink.certs import (
    PeerDir,
    admin_client_context,
    admin_peer_of,
    admin_server_context,
    create_fabric,
    create_peer_cert,
    fabric_of,
    load_peer_dir,
    peer_client_context,
    peer_name_of,
    peer_server_context,
)
from clusterlink.errors import CertificateError

ALPN = ["clusterlink/1"]


@dataclass(frozen=True)
class Fabric:
    a: PeerDir
    b: PeerDir
    stranger: PeerDir  # peer "a" of another fabric that is also called "prod"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory: pytest.TempPathFactory) -> Fabric:
    base = tmp_path_factory.mktemp("certs")
    create_fabric(base / "one", "prod")
    create_fabric(base / "two", "prod")
    return Fabric(
        a=load_peer_dir(create_peer_cert(base / "one", "a", fabric="prod")),
        b=load_peer_dir(create_peer_cert(base / "one", "b", fabric="prod")),
        stranger=load_peer_dir(create_peer_cert(base / "two", "a", fabric="prod")),
    )


class HandshakeFailed(Exception):
    def __init__(self, side: str, error: ssl.SSLError) -> None:
        super().__init__(f"{side}: {error}")
        self.side = side
        self.error = error


def handshake(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, server_hostname: str
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, client_out, server_hostname=server_hostname)
    server = server_context.wrap_bio(to_server, server_out, server_side=True)
    pending = {"client": client, "server": server}
    for _ in range(10):
        for side, end in list(pending.items()):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                continue
            except ssl.SSLError as exc:
                raise HandshakeFailed(side, exc) from exc
            del pending[side]
        to_server.write(client_out.read())
        to_client.write(server_out.read())
        if not pending:
            return client, server
    raise AssertionError(f"handshake stalled: {sorted(pending)} not finished")


def also_trusting(context: ssl.SSLContext, pd: PeerDir) -> ssl.SSLContext:
    """A stranger who also trusts our CA, so that only our side's check can stop it."""
    context.load_verify_locations(cafile=pd.ca_file)
    return context


def test_peers_handshake_and_each_reads_the_others_name(fabric: Fabric) -> None:
    client, server = handshake(
        peer_client_context(fabric.a, ALPN), peer_server_context(fabric.b, ALPN), "b"
    )
    assert client.version() == server.version() == "TLSv1.3"
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "clusterlink/1"
    assert peer_name_of(server.getpeercert()) == "a"
    assert peer_name_of(client.getpeercert()) == "b"
    assert fabric_of(server.getpeercert()) == fabric_of(client.getpeercert()) == "prod"
    assert admin_peer_of(server.getpeercert()) is None


@pytest.mark.parametrize(
    "listener",
    [lambda pd: peer_server_context(pd, ALPN), admin_server_context],
    ids=["peer-listener", "admin-listener"],
)
@pytest.mark.parametrize(
    "credentials",
    [lambda pd: peer_client_context(pd, ALPN), admin_client_context],
    ids=["peer-cert", "admin-cert"],
)
def test_client_certificate_of_another_fabric_fails_the_handshake(
    fabric: Fabric, listener, credentials
) -> None:
    stranger = also_trusting(credentials(fabric.stranger), fabric.a)
    with pytest.raises(HandshakeFailed) as info:
        handshake(stranger, listener(fabric.a), "a")
    assert info.value.side == "server"
    assert isinstance(info.value.error, ssl.SSLCertVerificationError)


def test_client_without_certificate_fails_the_handshake(fabric: Fabric) -> None:
    anonymous = ssl.create_default_context(cafile=fabric.a.ca_file)
    with pytest.raises(HandshakeFailed) as info:
        handshake(anonymous, peer_server_context(fabric.a, ALPN), "a")
    assert info.value.side == "server"


def test_dialer_refuses_a_server_whose_certificate_names_another_peer(fabric: Fabric) -> None:
    with pytest.raises(HandshakeFailed) as info:
        handshake(peer_client_context(fabric.a, ALPN), peer_server_context(fabric.b, ALPN), "c")
    assert info.value.side == "client"
    assert isinstance(info.value.error, ssl.SSLCertVerificationError)
    assert info.value.error.verify_message == "Hostname mismatch, certificate is not valid for 'c'."


def test_dialer_refuses_a_server_of_another_fabric_with_the_same_names(fabric: Fabric) -> None:
    impostor = also_trusting(peer_server_context(fabric.stranger, ALPN), fabric.a)
    with pytest.raises(HandshakeFailed) as info:
        handshake(peer_client_context(fabric.b, ALPN), impostor, "a")
    assert info.value.side == "client"


def test_an_admin_certificate_cannot_serve_as_a_gateway(fabric: Fabric) -> None:
    posing = peer_server_context(fabric.a, ALPN)
    posing.load_cert_chain(fabric.a.admin_cert_file, fabric.a.admin_key_file)
    with pytest.raises(HandshakeFailed) as info:
        handshake(peer_client_context(fabric.b, ALPN), posing, "a")
    assert info.value.side == "client"
    assert isinstance(info.value.error, ssl.SSLCertVerificationError)
    assert info.value.error.verify_message == "unsuitable certificate purpose"


def test_admin_listener_reads_its_own_admin(fabric: Fabric) -> None:
    _, server = handshake(admin_client_context(fabric.a), admin_server_context(fabric.a), "a")
    cert = server.getpeercert()
    assert admin_peer_of(cert) == "a"
    assert peer_name_of(cert) is None
    assert fabric_of(cert) == "prod"


def test_admin_listener_reads_another_peers_admin_as_that_peer(fabric: Fabric) -> None:
    _, server = handshake(admin_client_context(fabric.b), admin_server_context(fabric.a), "a")
    assert admin_peer_of(server.getpeercert()) == "b"


def test_admin_listener_reads_no_admin_from_a_peer_certificate(fabric: Fabric) -> None:
    _, server = handshake(peer_client_context(fabric.b, ALPN), admin_server_context(fabric.a), "a")
    assert admin_peer_of(server.getpeercert()) is None
    assert peer_name_of(server.getpeercert()) == "b"


def test_admin_client_refuses_a_listener_of_another_peer(fabric: Fabric) -> None:
    with pytest.raises(HandshakeFailed) as info:
        handshake(admin_client_context(fabric.a), admin_server_context(fabric.b), "a")
    assert info.value.side == "client"


def test_tls12_client_is_refused_by_the_listener(fabric: Fabric) -> None:
    old = peer_client_context(fabric.a, ALPN)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(HandshakeFailed) as info:
        handshake(old, peer_server_context(fabric.b, ALPN), "b")
    assert info.value.error.reason == "UNSUPPORTED_PROTOCOL"


def test_client_offers_only_tls13_so_a_tls12_server_cannot_answer(fabric: Fabric) -> None:
    old = admin_server_context(fabric.a)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(HandshakeFailed) as info:
        handshake(admin_client_context(fabric.a), old, "a")
    assert info.value.error.reason == "UNSUPPORTED_PROTOCOL"


def test_server_completes_without_alpn_when_the_client_offers_no_match(fabric: Fabric) -> None:
    _, server = handshake(
        peer_client_context(fabric.a, ["h2"]), peer_server_context(fabric.b, ALPN), "b"
    )
    assert server.selected_alpn_protocol() is None
    assert peer_name_of(server.getpeercert()) == "a"


def test_context_over_a_broken_directory_raises_a_certificate_error(
    fabric: Fabric, tmp_path: Path
) -> None:
    copy = load_peer_dir(Path(shutil.copytree(fabric.a.path, tmp_path / "a")))
    copy.key_file.unlink()
    with pytest.raises(CertificateError, match=r"cannot load .*cert\.pem and its key"):
        peer_server_context(copy, ALPN)


def peercert(*san: tuple[str, str], orgs: tuple[str, ...] = ("prod",)) -> dict[str, object]:
    return {
        "subject": (*((("organizationName", o),) for o in orgs), (("commonName", "x"),)),
        "subjectAltName": san,
    }


PEER = ("URI", "urn:clusterlink:peer:a")
ADMIN = ("URI", "urn:clusterlink:admin:a")


@pytest.mark.parametrize(
    ("cert", "peer", "admin", "fabric_name"),
    [
        (None, None, None, None),
        ({}, None, None, None),
        (peercert(("DNS", "a"), PEER), "a", None, "prod"),
        (peercert(("DNS", "b"), PEER), None, None, "prod"),  # DNS and URI disagree
        (peercert(PEER), None, None, "prod"),  # no DNS name to dial
        (peercert(("DNS", "a"), ("DNS", "b"), PEER), None, None, "prod"),  # extra DNS name
        (peercert(("DNS", "a"), PEER, ("URI", "urn:clusterlink:peer:b")), None, None, "prod"),
        (peercert(("DNS", "a"), PEER, ADMIN), None, None, "prod"),  # claims both roles
        (peercert(ADMIN), None, "a", "prod"),
        (peercert(ADMIN, ("URI", "urn:clusterlink:admin:b")), None, None, "prod"),
        (peercert(("DNS", "a"), ADMIN), None, None, "prod"),  # an admin has no DNS name
        (peercert(("URI", "urn:other:peer:a")), None, None, "prod"),
        (peercert(ADMIN, orgs=()), None, "a", None),
        (peercert(ADMIN, orgs=("prod", "dev")), None, "a", None),
    ],
)
def test_identity_of_certificate_dicts(cert, peer, admin, fabric_name) -> None:
    assert peer_name_of(cert) == peer
    assert admin_peer_of(cert) == admin
    assert fabric_of(cert) == fabric_name

"""Who may talk to a gateway (DESIGN §3): real TLS clients with real certificates.

The attacker's fabric is the worst case on purpose: it has the same fabric name and the same
peer names as ours, and differs only in its CA key. Each refusal is paired with the same
request made with the right certificate, so a test cannot pass because the request itself
was wrong.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.integration.clients import Exchange, HTTPAnswer, http_over_tls, talk, tls_client_context
from tests.integration.conftest import Link, Pair, StartService
from tests.integration.documents import PEER_NAME, access_policy, import_, peer, selector
from tests.integration.gateways import Fabric, cl
from tests.integration.services import echo

pytestmark = pytest.mark.integration

ALPN = "clusterlink/1"


@pytest.fixture(scope="module")
def other_fabric(tmp_path_factory: pytest.TempPathFactory) -> Fabric:
    """Another fabric named like ours, with a peer named like ours: only the CA differs."""
    other = Fabric(tmp_path_factory.mktemp("other"), "fab")
    other.peer_dir("a")
    return other


def health(address: tuple[str, int], cert_dir: Path) -> HTTPAnswer:
    """``GET /healthz`` on a peer listener with the certificate in ``cert_dir``."""
    context = tls_client_context(cert_dir / "cert.pem", cert_dir / "key.pem", alpn=ALPN)
    return http_over_tls(address, context, method="GET", target="/healthz")


def admin_status(address: tuple[str, int], cert_dir: Path) -> HTTPAnswer:
    """``GET /v1/status`` on an admin listener with the certificate in ``cert_dir``."""
    context = tls_client_context(cert_dir / "cert.pem", cert_dir / "key.pem")
    return http_over_tls(address, context, method="GET", target="/v1/status")


def test_peer_listener_rejects_a_certificate_of_another_fabric(
    pair: Pair, fabric: Fabric, other_fabric: Fabric
) -> None:
    ours = health(pair.target.listen, fabric.path / "a")
    theirs = health(pair.target.listen, other_fabric.path / "a")

    assert ours.status == 200 and json.loads(ours.body)["name"] == "b"
    assert theirs.status is None, theirs  # handshake failed or connection closed, no answer
    assert theirs.error


def test_peer_listener_drops_an_admin_certificate(pair: Pair, fabric: Fabric) -> None:
    answer = health(pair.target.listen, fabric.path / "a" / "admin")

    assert answer.status is None, answer
    assert pair.target.wait_for_log("certificate names no gateway of the fabric")


def test_admin_listener_rejects_a_certificate_of_another_fabric(
    pair: Pair, fabric: Fabric, other_fabric: Fabric
) -> None:
    ours = admin_status(pair.source.admin, fabric.path / "a" / "admin")
    theirs = admin_status(pair.source.admin, other_fabric.path / "a" / "admin")

    assert ours.status == 200 and json.loads(ours.body)["gateway"]["name"] == "a"
    assert theirs.status is None, theirs
    assert theirs.error


def test_admin_api_refuses_another_peers_admin_certificate_with_403(
    pair: Pair, fabric: Fabric
) -> None:
    answer = admin_status(pair.source.admin, fabric.path / "b" / "admin")

    assert answer.status == 403, answer
    assert json.loads(answer.body) == {
        "reason": "forbidden",
        "message": "the admin certificate of peer 'b' cannot administer peer 'a'; "
        "use a's admin/cert.pem",
    }
    assert pair.source.wait_for_log("admin API refused the admin certificate of peer 'b'")


def test_admin_api_refuses_a_peer_certificate_with_403(pair: Pair, fabric: Fabric) -> None:
    answer = admin_status(pair.source.admin, fabric.path / "a")

    assert answer.status == 403, answer
    body = json.loads(answer.body)
    assert body["reason"] == "forbidden"
    assert body["message"].startswith("a certificate cannot administer peer 'a'")


def test_cli_with_another_peers_directory_will_not_administer_this_gateway(
    pair: Pair, fabric: Fabric
) -> None:
    """The CLI checks that the gateway is the peer its directory names, so b's admin
    certificate is never even presented to a's admin API (the 403 above is the server's
    own line of defence)."""
    admin = "{}:{}".format(*pair.source.admin)

    done = cl("--peer-dir", str(fabric.path / "b"), "--admin", admin, "get", "peers")

    assert done.rc == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "not valid for 'b'" in done.stderr


def test_ingress_takes_the_callers_name_from_its_certificate_not_its_claims(
    link: Link, fabric: Fabric, start_service: StartService
) -> None:
    """Gateway a's certificate CONNECTs claiming to be peer c: b's policies must see a."""
    link.expose("echo", start_service(echo).port)
    link.policy(link.target, "from-c", "allow", from_=[selector({PEER_NAME: "c"})])
    a = fabric.path / "a"
    context = tls_client_context(a / "cert.pem", a / "key.pem", alpn=ALPN)

    def connect_claiming_c() -> int | None:
        claims = base64.urlsafe_b64encode(json.dumps({PEER_NAME: "c"}).encode()).rstrip(b"=")
        header = ("clusterlink-client-attributes", claims.decode())
        target = f"{link.namespace}/echo"
        answer = http_over_tls(
            link.target.listen, context, method="CONNECT", target=target, headers=(header,)
        )
        return answer.status

    assert connect_claiming_c() == 403
    assert link.ingress_log("echo", "denied").endswith("deny (default deny: no policy matched)")

    link.policy(link.target, "from-a", "allow", from_=[selector({PEER_NAME: "a"})])

    assert connect_claiming_c() == 200
    assert link.ingress_log("echo", "allowed").endswith(f"allow by policy {link.namespace}/from-a")


def test_gateway_will_not_tunnel_to_an_address_whose_certificate_names_another_peer(
    link: Link, start_service: StartService
) -> None:
    """Peer ``impostor`` is declared at b's address: a must refuse b's certificate for it."""
    link.expose("echo", start_service(echo).port)
    link.target.apply(access_policy("allow-all", link.namespace, "allow"))
    link.source.apply(
        peer("impostor", link.target.listen),
        import_("echo", link.namespace, peer="impostor"),
        access_policy("allow-all", link.namespace, "allow"),
    )

    assert talk(link.listen_address("echo"), b"hello") == Exchange(b"", "reset")
    refused = link.egress_log("echo", "refused")
    assert "presented a certificate that does not verify" in refused
    assert "named 'impostor'" in refused
    assert f"export={link.namespace}/echo " not in link.target.log()
    link.source.delete("peer", "impostor")

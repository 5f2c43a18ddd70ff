"""AdminClient: where it finds the gateway, what it sends, and how every failure is reported."""

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from clusterlink.certs import admin_server_context, create_fabric, create_peer_cert, load_peer_dir
from clusterlink.client import AdminClient, format_address, parse_address
from clusterlink.errors import (
    AdminAPIError,
    CertificateError,
    ConflictError,
    NotFoundError,
    PeerUnreachable,
    ValidationError,
)

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def peer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("peers")
    create_fabric(base, "fab")
    return create_peer_cert(base, "a", "fab")


@pytest.fixture(scope="module")
def fabric_peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Peers a and b of fabric `fab`, and a peer also named a of fabric `other`."""
    base = tmp_path_factory.mktemp("fabrics")
    create_fabric(base, "fab")
    create_fabric(base, "other")
    return {
        "a": create_peer_cert(base, "a", "fab"),
        "b": create_peer_cert(base, "b", "fab"),
        "other-a": create_peer_cert(base, "a", "other"),
    }


@contextmanager
def admin_tls_server(peer_dir: Path) -> Iterator[str]:
    """A TLS server with the admin listener's context of `peer_dir`; yields its address."""
    context = admin_server_context(load_peer_dir(peer_dir))
    stop = threading.Event()

    def serve(listener: socket.socket) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with (
                conn,
                contextlib.suppress(OSError),
                context.wrap_socket(conn, server_side=True) as tls,
            ):
                tls.recv(1)

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.1)
        thread = threading.Thread(target=serve, args=(listener,), daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{listener.getsockname()[1]}"
        finally:
            stop.set()
            thread.join(timeout=5)


@pytest.fixture
def gateway_json(peer_dir: Path) -> Iterator[Path]:
    path = peer_dir / "gateway.json"
    yield path
    path.unlink(missing_ok=True)


Handler = Callable[[httpx.Request], httpx.Response]


def client_answering(handler: Handler) -> AdminClient:
    """A client whose requests `handler` answers in place of a gateway."""
    return AdminClient(
        peer="a",
        address="127.0.0.1:8444",
        ssl_context=ssl.create_default_context(),
        transport=httpx.MockTransport(handler),
    )


def error(status: int, reason: str, message: str, **extra: str) -> Handler:
    body = {"reason": reason, "message": message, **extra}
    return lambda request: httpx.Response(status, json=body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8444", ("127.0.0.1", 8444)), ("[::1]:0", ("::1", 0)), ("h:1", ("h", 1))],
)
def test_parse_address_and_back(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
    assert format_address(*expected) == text


@pytest.mark.parametrize("text", ["", "8444", "h:", "h:x", "h:65536", "h:-1"])
def test_parse_address_refuses_what_is_not_host_port(text: str) -> None:
    with pytest.raises(ValidationError, match="HOST:PORT"):
        parse_address(text)


def test_without_gateway_json_the_error_says_how_to_start_the_gateway(peer_dir: Path) -> None:
    with pytest.raises(PeerUnreachable) as caught:
        AdminClient.from_peer_dir(peer_dir)

    message = str(caught.value)
    assert "gateway of peer a is not running" in message
    assert f"clusterlink gateway run --peer-dir {peer_dir}" in message


def test_gateway_json_without_admin_address_is_reported(peer_dir: Path, gateway_json: Path) -> None:
    gateway_json.write_text(json.dumps({"name": "a", "pid": 1}))

    with pytest.raises(PeerUnreachable, match="no admin address"):
        AdminClient.from_peer_dir(peer_dir)


def test_admin_address_comes_from_gateway_json_and_wildcards_mean_loopback(
    peer_dir: Path, gateway_json: Path
) -> None:
    gateway_json.write_text(json.dumps({"name": "a", "admin": "0.0.0.0:9001"}))

    with AdminClient.from_peer_dir(peer_dir) as client:
        assert (client.peer, client.address) == ("a", "127.0.0.1:9001")


def test_admin_option_wins_over_gateway_json(peer_dir: Path, gateway_json: Path) -> None:
    gateway_json.write_text(json.dumps({"name": "a", "admin": "127.0.0.1:9001"}))

    with AdminClient.from_peer_dir(peer_dir, admin="[::1]:9002") as client:
        assert client.address == "[::1]:9002"


def test_connection_refused_names_peer_address_and_the_command_to_run(peer_dir: Path) -> None:
    address = f"127.0.0.1:{free_port()}"

    with (
        AdminClient.from_peer_dir(peer_dir, admin=address) as client,
        pytest.raises(PeerUnreachable) as caught,
    ):
        client.status()

    assert str(caught.value).startswith(
        f"cannot reach the admin API of peer a at {address}: connection refused; "
        f"is `clusterlink gateway run --peer-dir {peer_dir}` running"
    )


def test_a_silent_server_times_out_within_the_bound(peer_dir: Path) -> None:
    from clusterlink.certs import admin_client_context, load_peer_dir

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        client = AdminClient(
            peer="a",
            address=f"127.0.0.1:{port}",
            ssl_context=admin_client_context(load_peer_dir(peer_dir)),
            timeout_s=0.3,
            connect_timeout_s=0.3,
        )
        with client, pytest.raises(PeerUnreachable, match=r"did not answer within 0\.3 s"):
            client.status()


def test_requests_follow_the_admin_api_and_name_the_peer_for_tls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"results": [{"outcome": "created"}]})
        if request.url.path.endswith("/echo"):
            return httpx.Response(200, json={"kind": "Import"})
        return httpx.Response(200, json={"items": []})

    with client_answering(handler) as client:
        assert client.apply([{"kind": "Import"}]) == [{"outcome": "created"}]
        assert client.get("imports", "echo") == {"kind": "Import"}
        assert client.list("policy") == []
        assert client.list("Peer", "team") == []

    assert [(r.method, str(r.url)) for r in seen] == [
        ("POST", "https://127.0.0.1:8444/v1/apply"),
        ("GET", "https://127.0.0.1:8444/v1/resources/imports/echo?namespace=default"),
        ("GET", "https://127.0.0.1:8444/v1/resources/accesspolicies"),
        ("GET", "https://127.0.0.1:8444/v1/resources/peers?namespace=team"),
    ]
    assert json.loads(seen[0].content) == {"documents": [{"kind": "Import"}]}
    assert {r.extensions["sni_hostname"] for r in seen} == {"a"}


def test_404_is_not_found_with_the_servers_message() -> None:
    answer = error(404, "not-found", "import default/nosuch not found")

    with client_answering(answer) as client, pytest.raises(NotFoundError) as caught:
        client.get("import", "nosuch")

    assert str(caught.value) == "import default/nosuch not found"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("document 1 (Import default/x): spec.port: must be at most 65535", None),
        ("must be at most 65535", "spec.port: must be at most 65535"),
    ],
)
def test_422_is_a_validation_error_naming_the_field_once(
    message: str, expected: str | None
) -> None:
    answer = error(422, "invalid", message, field="spec.port")

    with client_answering(answer) as client, pytest.raises(ValidationError) as caught:
        client.apply([{}])

    assert caught.value.field == "spec.port"
    assert str(caught.value) == (expected or message)


def test_409_is_a_conflict() -> None:
    answer = error(409, "conflict", "port 7000 is in use")

    with client_answering(answer) as client, pytest.raises(ConflictError, match="in use"):
        client.apply([{}])


@pytest.mark.parametrize(
    ("answer", "status", "words"),
    [
        (error(403, "forbidden", "not this peer's admin"), 403, "admin/cert.pem"),
        (error(503, "store-unavailable", "disk full"), 503, "disk full (503 store-unavailable)"),
        (lambda request: httpx.Response(502, text="<html>bad gateway</html>"), 502, "502"),
        (lambda request: httpx.Response(200, json=["not", "an", "object"]), 200, "200"),
    ],
    ids=["forbidden", "store", "not-json", "not-an-object"],
)
def test_other_answers_are_admin_api_errors_with_their_status(
    answer: Handler, status: int, words: str
) -> None:
    with client_answering(answer) as client, pytest.raises(AdminAPIError) as caught:
        client.status()

    assert caught.value.status == status
    assert words in str(caught.value)


def test_an_answer_without_its_list_is_an_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": True})

    with client_answering(answer) as client, pytest.raises(AdminAPIError, match="without"):
        client.list("imports")


@pytest.mark.parametrize(
    ("client_dir", "words"),
    [("b", "not valid for 'b'"), ("other-a", "certificate verify failed")],
    ids=["another-peer", "another-fabric"],
)
def test_a_gateway_that_is_not_this_peers_fails_the_handshake_with_a_certificate_error(
    fabric_peers: dict[str, Path], client_dir: str, words: str
) -> None:
    with (
        admin_tls_server(fabric_peers["a"]) as address,
        AdminClient.from_peer_dir(fabric_peers[client_dir], admin=address) as client,
        pytest.raises(CertificateError) as caught,
    ):
        client.status()

    assert str(caught.value).startswith("TLS handshake with the admin API of peer")
    assert words in str(caught.value)

"""AdminClient: where it finds the gateway, what it sends, and how every failure is reported."""

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clusterlink.certs import (
    admin_client_context,
    admin_server_context,
    create_fabric,
    create_peer_cert,
    load_peer_dir,
)
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


@dataclass(frozen=True)
class Request:
    """What a client sent, as the server saw it."""

    method: str
    target: str  # path and query
    body: bytes
    server_name: str | None  # the TLS SNI


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    close: bool = False  # close the connection after answering, without saying so

    @classmethod
    def json(cls, status: int, value: object, *, close: bool = False) -> "Reply":
        return cls(status, json.dumps(value).encode(), close)


Handler = Callable[[Request], Reply]


@contextmanager
def client_answering(peer_dir: Path, handler: Handler) -> Iterator[AdminClient]:
    """A client of a real HTTPS server (with the admin listener's TLS context of
    `peer_dir`) whose answers come from `handler`."""
    context = admin_server_context(load_peer_dir(peer_dir))
    names: list[str | None] = []  # one per connection, in order

    def note_name(tls: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = note_name

    class Serve(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            request = Request(method, self.path, body, names[-1] if names else None)
            reply = handler(request)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.close_connection = reply.close

        def do_GET(self) -> None:
            self.handle_one("GET")

        def do_POST(self) -> None:
            self.handle_one("POST")

        def do_DELETE(self) -> None:
            self.handle_one("DELETE")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        client = AdminClient(
            peer="a",
            address=f"127.0.0.1:{server.server_address[1]}",
            ssl_context=admin_client_context(load_peer_dir(peer_dir)),
        )
        with client:
            yield client
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def error(status: int, reason: str, message: str, **extra: str) -> Handler:
    body = {"reason": reason, "message": message, **extra}
    return lambda request: Reply.json(status, body)


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


def test_requests_follow_the_admin_api_and_name_the_peer_for_tls(peer_dir: Path) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Reply:
        seen.append(request)
        if request.method == "POST":
            return Reply.json(200, {"results": [{"outcome": "created"}]})
        if request.target.startswith("/v1/resources/imports/echo"):
            return Reply.json(200, {"kind": "Import"})
        return Reply.json(200, {"items": []})

    with client_answering(peer_dir, handler) as client:
        assert client.apply([{"kind": "Import"}]) == [{"outcome": "created"}]
        assert client.get("imports", "echo") == {"kind": "Import"}
        assert client.list("policy") == []
        assert client.list("Peer", "team") == []

    assert [(r.method, r.target) for r in seen] == [
        ("POST", "/v1/apply"),
        ("GET", "/v1/resources/imports/echo?namespace=default"),
        ("GET", "/v1/resources/accesspolicies"),
        ("GET", "/v1/resources/peers?namespace=team"),
    ]
    assert json.loads(seen[0].body) == {"documents": [{"kind": "Import"}]}
    assert {r.server_name for r in seen} == {"a"}


def test_404_is_not_found_with_the_servers_message(peer_dir: Path) -> None:
    answer = error(404, "not-found", "import default/nosuch not found")

    with client_answering(peer_dir, answer) as client, pytest.raises(NotFoundError) as caught:
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
    peer_dir: Path, message: str, expected: str | None
) -> None:
    answer = error(422, "invalid", message, field="spec.port")

    with client_answering(peer_dir, answer) as client, pytest.raises(ValidationError) as caught:
        client.apply([{}])

    assert caught.value.field == "spec.port"
    assert str(caught.value) == (expected or message)


def test_409_is_a_conflict(peer_dir: Path) -> None:
    answer = error(409, "conflict", "port 7000 is in use")

    with client_answering(peer_dir, answer) as client, pytest.raises(ConflictError, match="in use"):
        client.apply([{}])


@pytest.mark.parametrize(
    ("answer", "status", "words"),
    [
        (error(403, "forbidden", "not this peer's admin"), 403, "admin/cert.pem"),
        (error(503, "store-unavailable", "disk full"), 503, "disk full (503 store-unavailable)"),
        (lambda request: Reply(502, b"<html>bad gateway</html>"), 502, "502"),
        (lambda request: Reply.json(200, ["not", "an", "object"]), 200, "200"),
    ],
    ids=["forbidden", "store", "not-json", "not-an-object"],
)
def test_other_answers_are_admin_api_errors_with_their_status(
    peer_dir: Path, answer: Handler, status: int, words: str
) -> None:
    with client_answering(peer_dir, answer) as client, pytest.raises(AdminAPIError) as caught:
        client.status()

    assert caught.value.status == status
    assert words in str(caught.value)


def test_an_answer_without_its_list_is_an_error(peer_dir: Path) -> None:
    def answer(request: Request) -> Reply:
        return Reply.json(200, {"unexpected": True})

    with (
        client_answering(peer_dir, answer) as client,
        pytest.raises(AdminAPIError, match="without"),
    ):
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


def test_a_connection_the_server_closed_while_idle_is_reopened(peer_dir: Path) -> None:
    served: list[str] = []

    def answer(request: Request) -> Reply:
        served.append(request.target)
        return Reply.json(200, {"items": []}, close=True)

    with client_answering(peer_dir, answer) as client:
        assert client.list("imports") == []
        assert client.list("exports") == []

    assert served == ["/v1/resources/imports", "/v1/resources/exports"]


def test_a_refusal_that_this_sides_files_explain_is_reported_in_their_words(
    fabric_peers: dict[str, Path], tmp_path: Path
) -> None:
    mixed = tmp_path / "a"
    shutil.copytree(fabric_peers["a"], mixed)
    shutil.copytree(fabric_peers["b"] / "admin", mixed / "admin", dirs_exist_ok=True)
    forbidden = error(403, "forbidden", "this certificate may not administer peer a")

    with client_answering(fabric_peers["a"], forbidden) as direct:
        (mixed / "gateway.json").write_text(json.dumps({"name": "a", "admin": direct.address}))
        with (
            AdminClient.from_peer_dir(mixed) as client,
            pytest.raises(CertificateError, match="is not the admin certificate of peer 'a'"),
        ):
            client.status()


def test_a_sound_peer_directory_is_used_without_loading_cryptography(peer_dir: Path) -> None:
    """The quick way (``ssl`` alone) is what makes a `clusterlink get` start fast."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from clusterlink.client import AdminClient\n"
        "with AdminClient.from_peer_dir(Path(sys.argv[1])) as client:\n"
        "    print(client.status()['ok'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('cryptography', 'httpx', 'pydantic', 'clusterlink.certs')))\n"
    )
    with client_answering(peer_dir, lambda request: Reply.json(200, {"ok": True})) as direct:
        (peer_dir / "gateway.json").write_text(json.dumps({"name": "a", "admin": direct.address}))
        try:
            done = subprocess.run(
                [sys.executable, "-c", probe, str(peer_dir)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        finally:
            (peer_dir / "gateway.json").unlink()

    assert done.stdout.split("\n")[:2] == ["True", "[]"]

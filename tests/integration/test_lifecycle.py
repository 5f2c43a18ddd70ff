"""Starting and stopping gateways (DESIGN §2, §3, §6): SIGTERM is a clean stop (exit 0,
gateway.json removed, open tunnels reset), and a restart keeps what was stored."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.integration.clients import Exchange, is_refused, talk
from tests.integration.conftest import StartGateway, StartService
from tests.integration.documents import access_policy, export, import_, peer
from tests.integration.gateways import Fabric, Gateway, cl, parse_address
from tests.integration.services import echo

pytestmark = pytest.mark.integration


def test_sigterm_stops_the_gateway_with_exit_0_and_removes_gateway_json(
    start_gateway: StartGateway,
) -> None:
    gateway = start_gateway("lone")
    listen, admin = gateway.listen, gateway.admin

    gateway.stop()  # asserts exit 0 within the bound and gateway.json gone

    assert is_refused(listen) and is_refused(admin)
    assert gateway.wait_for_log("gateway lone stopped")


def test_a_second_gateway_on_a_served_peer_dir_is_refused_naming_the_first_pid(
    start_gateway: StartGateway,
) -> None:
    first = start_gateway("served")
    written = first.info_path.read_text()
    where = ("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")

    second = cl("gateway", "run", "--peer-dir", str(first.peer_dir), *where)

    assert second.rc == 1, second
    assert second.stderr == (
        f"error: peer directory {first.peer_dir} is already served by a running gateway "
        f"(pid {first.process.pid}); stop that one first, or give this one another "
        "--peer-dir\n"
    )
    assert first.process.poll() is None
    assert first.info_path.read_text() == written
    assert first.cl("status", "-o", "json").json()["gateway"]["name"] == "served"


def test_a_gateway_killed_with_sigkill_does_not_block_a_restart_on_its_peer_dir(
    fabric: Fabric, start_gateway: StartGateway
) -> None:
    peer_dir = fabric.peer_dir("crashed")
    killed = Gateway(peer_dir, log_path=fabric.root / "gateway-crashed-killed.log")
    killed.kill()
    assert killed.process.returncode == -signal.SIGKILL
    assert (peer_dir / "gateway.lock").exists()  # left behind, but nobody holds it now

    again = start_gateway("crashed")

    assert again.cl("status", "-o", "json").json()["gateway"]["name"] == "crashed"


def connected(source: Gateway, target: Gateway, service_port: int) -> tuple[str, int]:
    """Export the service on ``target``, import it on ``source``, allow it on both."""
    ns = "default"
    target.apply(
        peer(source.name, source.listen),
        export("echo", ns, service_port),
        access_policy("allow-all", ns, "allow"),
    )
    source.apply(
        peer(target.name, target.listen),
        import_("echo", ns, peer=target.name),
        access_policy("allow-all", ns, "allow"),
    )
    return parse_address(source.get("import", "echo", ns)["status"]["listen"])


def test_sigterm_resets_open_tunnels_and_still_exits_0(
    start_gateway: StartGateway, start_service: StartService
) -> None:
    source, target = start_gateway("up"), start_gateway("down")
    address = connected(source, target, start_service(echo).port)

    with socket.create_connection(address, timeout=10) as client:
        client.sendall(b"hello")
        assert client.recv(5) == b"hello"  # the tunnel is open

        source.stop()

        with pytest.raises(ConnectionResetError):
            client.recv(1)


def test_restarted_gateway_serves_its_import_again_on_the_leased_port(
    start_gateway: StartGateway, start_service: StartService
) -> None:
    source, target = start_gateway("before"), start_gateway("after")
    address = connected(source, target, start_service(echo).port)
    source.stop()

    again = start_gateway("before")

    assert again.get("import", "echo")["status"]["listen"] == "{}:{}".format(*address)
    assert talk(address, b"hello") == Exchange(b"hello", "eof")


@pytest.mark.parametrize(
    ("flag", "what"),
    [
        ("--listen", "peers"),
        ("--admin-listen", "the admin API"),
        ("--metrics-listen", "metrics"),
    ],
)
def test_a_listen_address_in_use_stops_the_start_with_a_message_naming_it(
    fabric: Fabric, flag: str, what: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        addresses = {"--listen": "127.0.0.1:0", "--admin-listen": "127.0.0.1:0", flag: taken}
        args = [arg for pair in addresses.items() for arg in pair]
        result = cl("gateway", "run", "--peer-dir", str(fabric.peer_dir("busy")), *args)

    assert result.rc != 0, result
    assert f"cannot listen for {what} ({flag}) on {taken}: address already in use" in (
        result.stderr
    ), result
    assert not (fabric.peer_dir("busy") / "gateway.json").exists()

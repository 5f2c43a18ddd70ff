"""Faults on the data path: the exported service refusing or resetting, and
the target gateway dying in the middle of a transfer.

Each fault must give a clear error (a log line that names what failed; the client's
connection reset, never left hanging and never ended with a clean EOF that could pass for a
complete answer), and the gateways must go on serving everyone else: a *bystander* tunnel,
opened before the fault and used again after it, proves that nothing else was disturbed.
All of it in both tunnel modes of the source gateway.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.clients import Exchange, http_over_tls, talk, tls_client_context
from tests.integration.conftest import Link, StartService, every_tunnel_mode
from tests.integration.documents import access_policy, export, import_from, peer
from tests.integration.faults import Bystander
from tests.integration.gateways import Fabric, Gateway, parse_address, stop_all
from tests.integration.services import CHUNK, Handler, closed_port, echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

MB = 1024 * 1024
RESET_BOUND_S = 3.0  # from the fault to the client's reset: "promptly", with slack for CI
_LINGER_RST = struct.pack("ii", 1, 0)


tunnel_mode = every_tunnel_mode()


@pytest.fixture
def bystander(link: Link, start_service: StartService) -> Iterator[Bystander]:
    """An echo tunnel through the same two gateways, in the test's namespace."""
    watcher = Bystander(link.open("bystander", start_service(echo).port, allow=True))
    yield watcher
    watcher.close()


def test_service_refusing_connections_is_502_at_the_target_and_a_reset_at_the_client(
    link: Link, bystander: Bystander, fabric: Fabric
) -> None:
    port = closed_port()
    address = link.open("down", port)  # the allow-all policies came with the bystander

    assert talk(address, b"hello") == Exchange(b"", "reset")

    failed = link.ingress_log("down", "failed")
    assert f"service of export {link.namespace}/down at 127.0.0.1:{port}" in failed
    assert "connection refused" in failed
    assert "answered 502 unreachable" in link.egress_log("down", "refused")
    # The target's answer itself, as the source gateway receives it (basic mode framing).
    source_dir = fabric.peer_dir(link.source.name)
    context = tls_client_context(
        source_dir / "cert.pem", source_dir / "key.pem", alpn="clusterlink/1"
    )
    answer = http_over_tls(
        link.target.listen,
        context,
        method="CONNECT",
        target=f"{link.namespace}/down",
        headers=(("clusterlink-client-attributes", "e30"),),
    )
    assert answer.status == 502, answer
    assert b'"reason":"unreachable"' in answer.body.replace(b" ", b""), answer.body
    assert f"127.0.0.1:{port}".encode() in answer.body
    bystander.check()
    assert talk(bystander.address, b"after") == Exchange(b"after", "eof")


def resets_after(n_bytes: int, reply: bytes) -> Handler:
    """A service that reads ``n_bytes``, answers ``reply``, then resets (RST) the connection."""

    def handle(sock: socket.socket) -> None:
        received = 0
        while received < n_bytes and (chunk := sock.recv(CHUNK)):
            received += len(chunk)
        sock.sendall(reply)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        sock.close()

    return handle


def test_service_resetting_mid_stream_resets_the_tunnel_end_to_end(
    link: Link, start_service: StartService, bystander: Bystander
) -> None:
    service = start_service(resets_after(256 * 1024, b"partial answer"))
    address = link.open("flaky", service.port)

    got = talk(address, os.urandom(8 * MB), timeout_s=20)

    assert got.end == "reset", got  # not "eof": a cut answer must not look complete
    assert got.received in (b"", b"partial answer"), got
    assert "service side: ConnectionResetError" in link.target.wait_for_log(
        rf"ingress closed peer={link.source.name} export={link.namespace}/flaky .* error="
    )
    assert f"error='peer {link.target.name} side: " in link.egress_log("flaky", "closed")
    bystander.check()
    assert talk(bystander.address, b"after") == Exchange(b"after", "eof")


# -- the target gateway dies in the middle of a transfer ---------------------------------------


@dataclass
class Crew:
    """Gateways of one test that may crash: every one still running at the end is stopped
    (SIGTERM, checked for exit 0), the crashed ones are not."""

    fabric: Fabric
    workdir: Path
    started: list[Gateway] = field(default_factory=list)
    crashed: list[Gateway] = field(default_factory=list)

    def start(self, name: str, *args: str, listen: str = "127.0.0.1:0") -> Gateway:
        runs = sum(g.name == name for g in self.started)
        gateway = Gateway(
            self.fabric.peer_dir(name),
            log_path=self.workdir / f"gateway-{name}-{runs + 1}.log",
            extra_args=("--heartbeat-interval", "0.2", "--label", f"site={name}", *args),
            listen=listen,
        )
        self.started.append(gateway)
        return gateway

    def crash(self, gateway: Gateway) -> float:
        """SIGKILL; returns the monotonic time of the signal."""
        killed_at = time.monotonic()
        gateway.process.kill()
        gateway.process.wait(timeout=10)
        self.crashed.append(gateway)
        return killed_at

    def stop(self) -> None:
        stop_all(g for g in self.started if g not in self.crashed)


@pytest.fixture
def crew(fabric: Fabric, tmp_path: Path) -> Iterator[Crew]:
    team = Crew(fabric, tmp_path)
    yield team
    team.stop()


class Download:
    """A client that only reads (a large download), in the background, and remembers how
    much arrived and how and when its connection ended. Only reading matters: with a
    writer too, the one call that meets a reset may be the writer's, and the reader then
    sees what looks like a clean EOF."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=30)
        self.received = 0
        self.end = ""
        self.ended_at = 0.0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(CHUNK):
                self.received += len(chunk)
            self.end = "eof"
        except TimeoutError:
            self.end = "timeout"
        except OSError as exc:
            self.end = f"reset ({exc.strerror})"
        self.ended_at = time.monotonic()

    def wait_ended(self, timeout_s: float) -> None:
        self._reader.join(timeout_s)

    def close(self) -> None:
        self.sock.close()
        self._reader.join(5)


def endless(sock: socket.socket) -> None:
    """A service that sends random bytes until the connection breaks."""
    blob = os.urandom(MB)
    while True:
        sock.sendall(blob)


def serves(address: tuple[str, int]) -> str:
    """Which site served a fresh connection (its service answers its name), or how it ended."""
    got = talk(address, b"", timeout_s=5)
    return got.received.decode() if got.end == "eof" and got.received else got.end


def says(name: str) -> Handler:
    def handle(sock: socket.socket) -> None:
        sock.sendall(name.encode())

    return handle


def test_target_gateway_killed_mid_transfer_resets_the_client_and_the_source_fails_over(
    crew: Crew, start_service: StartService, tunnel_mode: str
) -> None:
    """``dst`` is the primary of a static Import (``alt`` its backup), and it is killed while
    a large download runs through it: the client is reset at once, the source keeps serving a
    tunnel to ``alt`` that was open all along, new connections go to ``alt``, and once
    ``dst`` is back on its address new connections go to it again."""
    src = crew.start("src", "--tunnel-mode", tunnel_mode)
    dst, alt = crew.start("dst"), crew.start("alt")
    ns = "default"
    src.apply(
        peer("dst", dst.listen),
        peer("alt", alt.listen),
        import_from("web", ns, peers=["dst", "alt"], lb_scheme="static"),
        import_from("big", ns, peers=["dst"], export_name="endless"),
        import_from("side", ns, peers=["alt"], export_name="echo"),
        access_policy("allow-all", ns, "allow"),
    )
    echo_port, endless_port = start_service(echo).port, start_service(endless).port
    for site in (dst, alt):
        site.apply(
            peer("src", src.listen),
            export("web", ns, start_service(says(site.name)).port),
            export("echo", ns, echo_port),
            export("endless", ns, endless_port),
            access_policy("allow-all", ns, "allow"),
        )
    web, big, side = (
        parse_address(src.get("import", n)["status"]["listen"]) for n in ("web", "big", "side")
    )
    wait_until(lambda: serves(web) == "dst", what="the primary dst serves web")
    bystander = Bystander(side)
    transfer = Download(big)
    try:
        wait_until(lambda: transfer.received >= 8 * MB, what="8 MB received", timeout_s=20)
        killed_at = crew.crash(dst)
        transfer.wait_ended(RESET_BOUND_S + 5)

        assert transfer.end.startswith("reset"), transfer.end
        assert transfer.ended_at - killed_at < RESET_BOUND_S
        closed = src.wait_for_log(r"egress closed import=default/big .* error=")
        assert "source=dst/default/endless" in closed
        assert "error='peer dst side: " in closed  # not the "service": dst's gateway died
        bystander.check()
        assert serves(web) == "alt"  # the very next connection fails over
        assert talk(side, b"ping") == Exchange(b"ping", "eof")

        again = crew.start("dst", listen="{}:{}".format(*dst.listen))
        wait_until(lambda: serves(web) == "dst", what="web served by dst again", timeout_s=15)
        again_big = Download(big)
        wait_until(lambda: again_big.received >= MB, what="the download runs again via dst")
        again_big.close()
        bystander.check()
        assert again.process.poll() is None
    finally:
        transfer.close()
        bystander.close()

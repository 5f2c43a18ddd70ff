"""UDP exports and imports, seen by real UDP software: dnsmasq exported, dig through the Import.

A UDP Import listens on a UDP port; each client address is a flow, authorized at both ends
like a TCP tunnel, recorded and ended after ``--udp-idle-timeout`` of silence. Both tunnel
modes carry it (the datagrams travel framed inside an ordinary tunnel stream).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from tests.integration.conftest import Link, Pair, StartGateway, every_tunnel_mode
from tests.integration.documents import access_policy, peer
from tests.integration.gateways import parse_address
from tests.integration.udp_services import (
    ANSWER,
    MISSING,
    dig,
    dnsmasq,
    free_udp_port,
    udp_export,
    udp_import,
)
from tests.integration.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.skipif(bool(MISSING), reason=str(MISSING))]

IDLE_TIMEOUT_S = 1.0


tunnel_mode = every_tunnel_mode()


@pytest.fixture(scope="module")
def pair(start_gateway: StartGateway, tunnel_mode: str) -> Pair:
    """The usual pair, with UDP flows that go idle after a second (observable in a test)."""
    idle = ("--udp-idle-timeout", str(IDLE_TIMEOUT_S))
    metrics = ("--metrics-listen", "127.0.0.1:0")
    a = start_gateway("a", "--label", "site=a", "--tunnel-mode", tunnel_mode, *idle, *metrics)
    b = start_gateway("b", "--label", "site=b", *idle)
    a.apply(peer("b", b.listen))
    b.apply(peer("a", a.listen))
    return Pair(source=a, target=b)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    port = free_udp_port()
    with dnsmasq(port):
        yield port


def open_udp(link: Link, dns_port: int, *, allow: bool, import_protocol: str = "UDP") -> int:
    also = [access_policy("allow-all", link.namespace, "allow")] if allow else []
    link.target.apply(udp_export("dns", link.namespace, dns_port), *also)
    link.source.apply(udp_import("dns", link.namespace, link.target.name, import_protocol), *also)
    return link.listen_address("dns")[1]


def flow_records(link: Link, side: str = "source") -> list[dict[str, Any]]:
    """This test's flow records at one gateway, as ``clusterlink flows -o json`` prints them."""
    gateway = link.source if side == "source" else link.target
    lines = gateway.cl("flows", "-o", "json").expect_ok().stdout.splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    return [r for r in records if r["resource"] == f"{link.namespace}/dns"]


def test_dig_through_a_udp_import_gets_the_exported_record(link: Link, dns_port: int) -> None:
    port = open_udp(link, dns_port, allow=True)

    assert dig(port) == ANSWER
    link.egress_log("dns", "allowed")
    records = flow_records(link) + flow_records(link, "target")
    assert {(r["direction"], r["protocol"], r["decision"]) for r in records} == {
        ("egress", "UDP", "allowed"),
        ("ingress", "UDP", "allowed"),
    }


def test_a_denied_udp_flow_gets_no_answer(link: Link, dns_port: int) -> None:
    port = open_udp(link, dns_port, allow=False)  # no policy: default deny

    assert dig(port, tries=1) == ""
    assert "default deny" in link.egress_log("dns", "refused")
    assert udp_drops(link, "flow_ended") >= 1  # the query waited for a tunnel that never came


def udp_drops(link: Link, reason: str) -> float:
    """``clusterlink_udp_datagrams_dropped_total{reason}`` of the importing gateway."""
    host, port = parse_address(link.source.info["metrics"])
    url = f"http://{host}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    sample = f'clusterlink_udp_datagrams_dropped_total{{reason="{reason}"}} '
    rows = [row for row in text.splitlines() if row.startswith(sample)]
    return float(rows[0].rsplit(" ", 1)[1]) if rows else 0.0


def test_an_idle_flow_ends_and_its_record_says_so(link: Link, dns_port: int) -> None:
    port = open_udp(link, dns_port, allow=True)
    assert dig(port) == ANSWER

    ended = wait_until(
        lambda: [r for r in flow_records(link) if r["endedAt"]] or None,
        what="the idle flow's record ends",
        timeout_s=20,
    )

    assert ended[0]["protocol"] == "UDP" and ended[0]["bytesDown"] > 0
    assert "error=" not in link.egress_log("dns", "closed")


def test_a_udp_import_of_a_tcp_export_is_refused_with_the_reason(link: Link, dns_port: int) -> None:
    also = [access_policy("allow-all", link.namespace, "allow")]
    tcp_export = udp_export("dns", link.namespace, dns_port)
    del tcp_export["spec"]["protocol"]
    link.target.apply(tcp_export, *also)
    link.source.apply(udp_import("dns", link.namespace, link.target.name), *also)
    port = link.listen_address("dns")[1]

    assert dig(port, tries=1) == ""
    assert "is TCP, the import UDP" in link.egress_log("dns", "refused")


class UDPEcho:
    """A UDP service that sends every datagram back as it came: boundaries are visible."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                data, addr = self.sock.recvfrom(70_000)
                self.sock.sendto(data, addr)

    def close(self) -> None:
        self.sock.close()


def test_datagrams_keep_their_boundaries_up_to_the_largest_udp_payload(link: Link) -> None:
    echo = UDPEcho()
    try:
        also = [access_policy("allow-all", link.namespace, "allow")]
        link.target.apply(udp_export("dns", link.namespace, echo.port), *also)
        link.source.apply(udp_import("dns", link.namespace, link.target.name), *also)
        port = link.listen_address("dns")[1]
        sizes = [0, 1, 1400, 9000, 65_507]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            client.connect(("127.0.0.1", port))
            client.settimeout(1.0)

            def echoed(payload: bytes) -> list[bytes] | None:
                """The answer to ``payload`` (in a list: an empty datagram is an answer). UDP
                may lose either way, so it is sent again until its answer comes back; a late
                answer to an earlier datagram has another size and is skipped."""
                client.send(payload)
                with contextlib.suppress(TimeoutError):
                    while len(answer := client.recv(70_000)) != len(payload):
                        pass
                    return [answer]
                return None

            sent = [os.urandom(n) for n in sizes]
            got = [
                wait_until(partial(echoed, payload), what=f"{len(payload)} bytes echoed")[0]
                for payload in sent
            ]
    finally:
        echo.close()

    assert [len(answer) for answer in got] == sizes
    assert got == sent


def test_an_iperf3_udp_burst_crosses_the_tunnel_and_reports_its_loss(link: Link) -> None:
    """iperf3 has a TCP control connection beside its UDP datagrams on the same port: the
    service is exported and imported twice, once per protocol, on one port number."""
    server_port, import_port = free_udp_port(), free_udp_port()
    server = subprocess.Popen(
        ["iperf3", "-s", "-p", str(server_port), "-B", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        also = [access_policy("allow-all", link.namespace, "allow")]
        tcp_export = udp_export("iperf", link.namespace, server_port)
        del tcp_export["spec"]["protocol"]
        tcp_import = udp_import("iperf", link.namespace, link.target.name, "TCP")
        tcp_import["spec"]["port"] = import_port
        udp_imp = udp_import("iperf-udp", link.namespace, link.target.name)
        udp_imp["spec"]["port"] = import_port
        udp_imp["spec"]["sources"][0]["exportName"] = "iperf-udp"
        link.target.apply(tcp_export, udp_export("iperf-udp", link.namespace, server_port), *also)
        link.source.apply(tcp_import, udp_imp, *also)
        link.listen_address("iperf-udp")
        wait_until(lambda: _connects(server_port), what="iperf3 server listens", timeout_s=10)
        result = subprocess.run(
            [
                *("iperf3", "-c", "127.0.0.1", "-p", str(import_port), "-u", "-b", "20M"),
                *("-l", "1200", "-t", "2", "-J"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    report = json.loads(result.stdout)
    assert "error" not in report, report.get("error")
    received = report["end"]["sum"]
    assert received["packets"] > 0
    assert 0 <= received["lost_packets"] < received["packets"]


def _connects(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False

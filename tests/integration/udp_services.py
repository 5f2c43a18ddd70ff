"""UDP software for the tests: dnsmasq with one record, dig, and UDP Export/Import documents.

Shared by the loopback tests and the network-namespace ones (``prefix``: ``ip netns exec``)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

from tests.integration.documents import Document
from tests.integration.waiting import wait_until

ANSWER = "10.1.2.3"
DNSMASQ = shutil.which("dnsmasq", path="/usr/sbin:/usr/bin")
MISSING = (
    None if DNSMASQ and shutil.which("dig") else "needs dnsmasq and dig (setup.sh installs them)"
)


@contextlib.contextmanager
def dnsmasq(port: int, *, host: str = "127.0.0.1", prefix: Sequence[str] = ()) -> Iterator[None]:
    """dnsmasq answering ``svc.test`` with ANSWER, and nothing else, on ``host:port``."""
    process = subprocess.Popen(
        [
            *prefix,
            DNSMASQ or "dnsmasq",
            "--no-resolv",
            "--no-hosts",
            f"--address=/svc.test/{ANSWER}",
            f"--port={port}",
            f"--listen-address={host}",
            "--bind-interfaces",
            "--no-daemon",
            "--conf-file=/dev/null",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: dig(port, host=host, tries=1, prefix=prefix) == ANSWER or None,
            what="dnsmasq answers",
            timeout_s=10,
        )
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP: dnsmasq and iperf3 listen on both."""
    while True:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        ):
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with contextlib.suppress(OSError):
                udp.bind((host, port))
                return port


def dig(
    port: int,
    *,
    host: str = "127.0.0.1",
    tries: int = 3,
    timeout_s: int = 2,
    prefix: Sequence[str] = (),
) -> str:
    """What dig prints with +short for ``svc.test`` (empty: no answer at all)."""
    result = subprocess.run(
        [
            *prefix,
            "dig",
            f"@{host}",
            "-p",
            str(port),
            "svc.test",
            "+short",
            f"+tries={tries}",
            f"+time={timeout_s}",
        ],
        capture_output=True,
        text=True,
        timeout=tries * timeout_s + 10,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith(";")]
    return lines[0] if lines else ""


def udp_export(name: str, namespace: str, port: int, host: str = "127.0.0.1") -> Document:
    spec = {"host": host, "port": port, "protocol": "UDP"}
    return {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": "Export",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def udp_import(name: str, namespace: str, peer_name: str, protocol: str = "UDP") -> Document:
    source = {"peer": peer_name, "exportName": name, "exportNamespace": namespace}
    spec: dict[str, Any] = {"port": 0, "sources": [source], "protocol": protocol}
    return {
        "apiVersion": "clusterlink.net/v1alpha1",
        "kind": "Import",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }

"""Where the two ends of a benchmark run: loopback, or two network namespaces over a veth pair.

Every measurement has a client side (A: the load generators and the tunnel end they connect
to) and a server side (B: the other tunnel end and the servers). On ``loopback`` both sides
are the machine's own network namespace and talk over 127.0.0.1. On ``netns`` each side is a
network namespace made for this run, joined by a veth pair, so the bytes cross a real
(virtual) link with a 1500-byte MTU instead of the 64 KiB loopback shortcut.

Invariants:

- The namespaces and the veth pair have names unique to this run and are deleted when the
  ``open_topology`` context ends, however it ends (deleting a namespace deletes its veth end,
  which deletes the pair). Nothing outside them is touched: the addresses live only inside
  the namespaces, and the sysctls we set there (``tcp_tw_reuse``, a wide ephemeral port
  range, so that thousands of short connections per second do not run out of ports) are
  per-namespace.
- The addresses come from 198.18.0.0/15, the range IANA reserves for network benchmarks
  (RFC 2544): never routed, unlikely to clash with any network the machine is on.
- A process is put on a side by prefixing its command with ``ip netns exec NS``, which enters
  the namespace and then *execs* the command, so the PID we track is the program's own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bench.errors import BenchError

__all__ = ["TOPOLOGIES", "Side", "Topology", "netns_unavailable_reason", "open_topology"]

TOPOLOGIES = ("loopback", "netns")
_NET_A = "198.18.0.1"
_NET_B = "198.18.0.2"
_PREFIX_LEN = 30
_NETNS_SYSCTLS = ("net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65000")


class Side(StrEnum):
    CLIENT = "a"
    SERVER = "b"


@dataclass(frozen=True, slots=True)
class Topology:
    """One topology while it exists: the addresses each side is reached at from the other."""

    name: str
    client_host: str
    server_host: str
    namespaces: dict[Side, str] | None = None

    def argv(self, side: Side, argv: Sequence[str]) -> list[str]:
        """The command that runs ``argv`` on ``side``."""
        if self.namespaces is None:
            return list(argv)
        return ["ip", "netns", "exec", self.namespaces[side], *argv]


def netns_unavailable_reason() -> str | None:
    """Why the netns topology cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the netns topology needs root (network namespaces); run as root to include it"
    if shutil.which("ip") is None:
        return "the netns topology needs `ip` (Debian package iproute2)"
    return None


def _ip(*args: str, must_work: bool = True) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0 and must_work:
        raise BenchError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@contextlib.contextmanager
def open_topology(name: str) -> Iterator[Topology]:
    """Create the topology ``name`` (one of ``TOPOLOGIES``) and remove it afterwards."""
    if name == "loopback":
        yield Topology(name, client_host="127.0.0.1", server_host="127.0.0.1")
        return
    if reason := netns_unavailable_reason():
        raise BenchError(reason)
    token = secrets.token_hex(3)
    namespaces = {side: f"clbench-{token}-{side.value}" for side in Side}
    veths = {side: f"clb{token}{side.value}" for side in Side}
    addresses = {Side.CLIENT: _NET_A, Side.SERVER: _NET_B}
    with contextlib.ExitStack() as cleanup:
        for ns in namespaces.values():
            _ip("netns", "add", ns)
            cleanup.callback(_ip, "netns", "del", ns)
        _ip("link", "add", veths[Side.CLIENT], "type", "veth", "peer", "name", veths[Side.SERVER])
        # only matters if moving it into a namespace fails: then the pair is still out here
        cleanup.callback(_ip, "link", "del", veths[Side.CLIENT], must_work=False)
        for side, ns in namespaces.items():
            _ip("link", "set", veths[side], "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addresses[side]}/{_PREFIX_LEN}", "dev", veths[side])
            _ip("-n", ns, "link", "set", veths[side], "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            for setting in _NETNS_SYSCTLS:
                _ip("netns", "exec", ns, "sysctl", "-q", "-w", setting)
        yield Topology(
            name,
            client_host=addresses[Side.CLIENT],
            server_host=addresses[Side.SERVER],
            namespaces=namespaces,
        )

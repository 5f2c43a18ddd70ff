"""Sites as Linux network namespaces on one bridge: the many-site world of the multisite tests.

Layout: one namespace holds only a bridge (the "wire" between the sites); each site is a
namespace of its own with one veth link per address, whose other end is a port of the bridge.
So every site has its own loopback, its own ports (a gateway can use the default 8443 and
8444 in each) and its own address, and a site's link can be cut (``ip link set down`` on the
bridge port) without touching any other.

Processes join a site by prefixing their command with ``ip netns exec NS``, which enters the
namespace and then *execs* the command: the PID we track is the program's own. The test
process itself creates sockets in a site with ``entered(site)``, which moves only the calling
thread (``setns(2)``, network namespaces are per thread) and moves it back afterwards; a
socket stays in the namespace it was created in, so services and clients made that way are
real residents of the site and the helpers of ``tests.integration`` work unchanged there.

Invariants:

- Nothing is created in the machine's own namespace: veth pairs are made with both ends
  already in their namespaces (``ip -n BRIDGE link add ... peer ... netns SITE``).
- Names carry the test run's PID, so runs never collide, and the addresses
  (``SUBNET``, private) exist only inside these namespaces, so they cannot clash with any
  network the machine is on.
- ``close`` deletes every namespace created, whatever happened before (deleting a namespace
  deletes its veth ends, and with them the pairs). Callers stop the processes they started in
  a site *before* closing: a process keeps its namespace alive after ``ip netns del``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "SUBNET",
    "NetnsError",
    "Network",
    "Site",
    "entered",
    "inbound_refused",
    "unavailable_reason",
]

SUBNET = "10.213.0"  # .0/24; only ever configured inside the namespaces made here
_PREFIX_LEN = 24
_CLONE_NEWNET = 0x40000000
_IP_TIMEOUT_S = 10.0
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    """An ``ip`` command failed while building or changing the network."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can be tried."""
    if os.geteuid() != 0:
        return "the multisite tests need root to create network namespaces (CI runs as root)"
    if shutil.which("ip") is None:
        return "the multisite tests need `ip` (Debian package iproute2)"
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class Site:
    """One site: its namespace, its addresses (one per link) and the bridge ports of those
    links (what ``Network.cut`` turns off)."""

    name: str
    namespace: str
    addresses: tuple[str, ...]
    bridge_ports: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]

    @property
    def prefix(self) -> list[str]:
        """What to put before a command to run it inside this site."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    """A bridge namespace and sites attached to it; ``close`` removes all of it."""

    prefix: str = field(default_factory=lambda: f"clms{os.getpid()}")
    sites: dict[str, Site] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _cut_ports: set[str] = field(default_factory=set)
    _next_host: int = 1

    @property
    def bridge_namespace(self) -> str:
        return f"{self.prefix}-net"

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def open(self) -> None:
        """The bridge namespace and its bridge."""
        self._add_namespace(self.bridge_namespace)
        _ip("-n", self.bridge_namespace, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_namespace, "link", "set", "br0", "up")

    def add_site(self, name: str, *, links: int = 1) -> Site:
        """A new site ``name`` (one letter or digit keeps interface names short) with
        ``links`` links to the bridge, each with an address of its own."""
        namespace = f"{self.prefix}-{name}"
        self._add_namespace(namespace)
        addresses, ports = [], []
        for i in range(links):
            port = f"{self.prefix}{name}{i}"  # bridge side; at most 15 characters
            inside = f"eth{i}"
            address = f"{SUBNET}.{self._next_host}"
            self._next_host += 1
            bridge = ("-n", self.bridge_namespace)
            _ip(*bridge, "link", "add", port, "type", "veth", "peer", "name", inside,
                "netns", namespace)  # fmt: skip
            _ip(*bridge, "link", "set", port, "master", "br0", "up")
            _ip("-n", namespace, "addr", "add", f"{address}/{_PREFIX_LEN}", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            addresses.append(address)
            ports.append(port)
        if links > 1:
            self._route_by_source(namespace, addresses)
        site = Site(name, namespace, tuple(addresses), tuple(ports))
        self.sites[name] = site
        return site

    @staticmethod
    def _route_by_source(namespace: str, addresses: Sequence[str]) -> None:
        """Make each link of a multi-homed site carry its own address's traffic, both ways.

        All links share one subnet, so by default the kernel would send every reply out of
        the first link, and answer ARP for any address on every link: cutting the first link
        would then cut them all. So: replies leave by the link of their source address
        (a routing table per link), and a link answers ARP only for its own address.
        """
        with _inside(namespace):
            for setting, value in (("arp_ignore", "1"), ("arp_announce", "2")):
                Path(f"/proc/sys/net/ipv4/conf/all/{setting}").write_text(value)
        for i, address in enumerate(addresses):
            table = str(100 + i)
            _ip("-n", namespace, "rule", "add", "from", address, "table", table)
            _ip("-n", namespace, "route", "add", f"{SUBNET}.0/{_PREFIX_LEN}", "dev", f"eth{i}",
                "src", address, "table", table)  # fmt: skip

    def cut(self, site: Site, link: int = 0) -> None:
        """Take the site's link down at the bridge: its packets go nowhere, nothing is refused
        (the site itself only sees its carrier drop, as with a pulled cable)."""
        port = site.bridge_ports[link]
        _ip("-n", self.bridge_namespace, "link", "set", port, "down")
        self._cut_ports.add(port)

    def mend(self, site: Site, link: int = 0) -> None:
        self._mend(site.bridge_ports[link])

    def mend_all(self) -> None:
        """Every link cut so far up again (the next test starts with a whole network)."""
        for port in sorted(self._cut_ports):
            self._mend(port)

    def _mend(self, port: str) -> None:
        _ip("-n", self.bridge_namespace, "link", "set", port, "up")
        self._cut_ports.discard(port)

    def close(self) -> None:
        """Delete every namespace made here; reports the first failure after trying all."""
        errors = []
        for namespace in reversed(self._namespaces):
            try:
                _ip("netns", "del", namespace)
            except (NetnsError, subprocess.TimeoutExpired) as exc:
                errors.append(str(exc))
        self._namespaces.clear()
        self.sites.clear()
        if errors:
            raise NetnsError("; ".join(errors))


@contextlib.contextmanager
def inbound_refused(site: Site) -> Iterator[None]:
    """While the block runs, ``site`` takes no new inbound TCP connection, as behind NAT or a
    firewall: nftables in the site drops every SYN that arrives (SYN-ACKs, the answers to
    its own connections, still pass), so a connection to it times out."""
    table = "clusterlink_test_no_inbound"
    rules = (
        f"table inet {table} {{\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        '    iifname "lo" accept\n'
        "    tcp flags & (syn | ack) == syn drop\n"
        "  }\n"
        "}\n"
    )
    nft = ["ip", "netns", "exec", site.namespace, "nft"]
    done = subprocess.run([*nft, "-f", "-"], input=rules, capture_output=True, text=True,
                          timeout=_IP_TIMEOUT_S, check=False)  # fmt: skip
    if done.returncode != 0:
        raise NetnsError(f"nft in {site.namespace} failed: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([*nft, "delete", "table", "inet", table], capture_output=True,
                       timeout=_IP_TIMEOUT_S, check=True)  # fmt: skip


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def entered(site: Site) -> contextlib.AbstractContextManager[None]:
    """Run the block's socket calls inside ``site`` (this thread only), then come back.

    Keep the block to socket creation and use: a process started inside it would run in the
    site too. (``/proc/sys/net`` seen from inside is the site's own, too.)
    """
    return _inside(site.namespace)


@contextlib.contextmanager
def _inside(namespace: str) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        there = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            _setns(there)
        finally:
            os.close(there)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)

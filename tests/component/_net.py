"""Shared pieces of the component tests that use real loopback sockets and real TLS.

- ``make_fabric``: a fabric and its peer directories, written by ``clusterlink.certs``, plus a
  peer of a *second* fabric (same fabric name, other CA) to play the stranger;
- ``Endpoint``: the test's own end of a connection (plain TCP or the app of a ``TLSLayer``);
  it records what the transport tells it and offers bounded waits on it;
- fixtures ``fabric`` (one per module) and ``run`` (a fresh event loop per test, once on
  asyncio and once on uvloop). The gateway runs on uvloop, whose transports differ from
  asyncio's in ways our I/O code cares about (uvloop ignores a ``pause_reading`` made in
  ``connection_made``, and raises where asyncio quietly ignores a call on a closed
  transport), so the I/O tests run on both. A test module imports ``fabric_fixture`` and
  ``run_fixture``; pytest knows them by their fixture names, and a reader sees where each
  fixture comes from.

Every wait is bounded by ``WAIT_S``: a test that hangs is a test that failed.
"""

from __future__ import annotations

import asyncio
import errno
import random
import ssl
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import uvloop

from clusterlink.certs import (
    PeerDir,
    create_fabric,
    create_peer_cert,
    load_peer_dir,
    peer_client_context,
    peer_server_context,
)
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.dataplane.ingress import Ingress
from clusterlink.dataplane.limits import Limits
from clusterlink.dataplane.peer_listener import PeerListener
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.dataplane.tunnels import TunnelRegistry
from clusterlink.ids import PeerName
from clusterlink.metrics import GatewayMetrics
from clusterlink.protocol import ALPN_PROTOCOL, Health
from clusterlink.transport.dial import dial_tls
from clusterlink.transport.tls import TLSLayer

WAIT_S = 10.0
LOCALHOST = "127.0.0.1"
ALPN = [ALPN_PROTOCOL]

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


Run = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(name="run", params=sorted(LOOPS))
def run_fixture(request: pytest.FixtureRequest) -> Iterator[Run]:
    """``run(coroutine)`` on a fresh event loop of each kind the gateway may use."""
    with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
        yield runner.run


@dataclass(frozen=True)
class Fabric:
    a: PeerDir
    b: PeerDir
    stranger: PeerDir  # peer "a" of another fabric that is also called "prod"

    def server(self, pd: PeerDir | None = None) -> ssl.SSLContext:
        return peer_server_context(pd or self.b, ALPN)

    def client(self, pd: PeerDir | None = None) -> ssl.SSLContext:
        return peer_client_context(pd or self.a, ALPN)


@pytest.fixture(name="fabric", scope="module")
def fabric_fixture(tmp_path_factory: pytest.TempPathFactory) -> Fabric:
    return make_fabric(tmp_path_factory.mktemp("certs"))


def make_fabric(base: Path) -> Fabric:
    create_fabric(base / "one", "prod")
    create_fabric(base / "two", "prod")
    return Fabric(
        a=load_peer_dir(create_peer_cert(base / "one", "a", fabric="prod")),
        b=load_peer_dir(create_peer_cert(base / "one", "b", fabric="prod")),
        stranger=load_peer_dir(create_peer_cert(base / "two", "a", fabric="prod")),
    )


async def until(predicate: Callable[[], bool], *, timeout_s: float = WAIT_S) -> None:
    """Poll each millisecond until ``predicate()`` holds; TimeoutError if it never does."""
    async with asyncio.timeout(timeout_s):
        # The state polled belongs to the code under test, which offers no event to wait on.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)  # the poll's own interval


class Endpoint(asyncio.Protocol):
    """A test's end of a connection: records bytes, EOF and loss; never closes by itself.

    ``paused`` holds reading from ``connection_made`` until ``release()``. uvloop ignores a
    ``pause_reading`` made inside ``connection_made`` of a plain TCP transport, so a held
    endpoint pauses again on the chunk that slips through. ``bytes_while_paused`` counts
    bytes delivered while the transport said it was not reading (which TLSLayer must never
    do).
    """

    def __init__(self, *, paused: bool = False, keep_open_on_eof: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self.made: asyncio.Future[asyncio.Transport] = loop.create_future()
        self.lost: asyncio.Future[Exception | None] = loop.create_future()
        self.eof = asyncio.Event()
        self.received = bytearray()
        self.bytes_while_paused = 0
        self.n_pause_writing = 0
        self.n_lost = 0  # a transport must report its end exactly once
        self._is_held = paused
        self._keep_open_on_eof = keep_open_on_eof
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._changed = asyncio.Event()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect

    # -- protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self._is_held:
            self.transport.pause_reading()
        self.made.set_result(self.transport)

    def data_received(self, data: bytes) -> None:
        if not self.transport.is_reading():
            self.bytes_while_paused += len(data)
        self.received += data
        self._changed.set()
        if self._is_held and self.transport.is_reading():
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof.set()
        self._changed.set()
        return self._keep_open_on_eof

    def pause_writing(self) -> None:
        self.n_pause_writing += 1
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.n_lost += 1
        if not self.lost.done():
            self.lost.set_result(exc)
        self._can_write.set()  # let a blocked sender notice
        self._changed.set()

    # -- what tests call ----------------------------------------------------------------------

    @property
    def is_write_paused(self) -> bool:
        return not self._can_write.is_set()

    @property
    def is_held(self) -> bool:
        """Made with ``paused=True`` and not released yet."""
        return self._is_held

    def release(self) -> None:
        """Start reading (after ``paused=True``)."""
        self._is_held = False
        self.transport.resume_reading()

    async def send(self, data: bytes, *, chunk: int = 64 * 1024, timeout_s: float = WAIT_S) -> None:
        """Write ``data`` honouring back-pressure, as a well-behaved application does."""
        view = memoryview(data)
        async with asyncio.timeout(timeout_s):
            for start in range(0, len(view), chunk):
                await self._can_write.wait()
                if self.lost.done():
                    raise ConnectionError("connection lost while sending")
                self.transport.write(view[start : start + chunk])

    async def read(self, n: int, *, timeout_s: float = WAIT_S) -> bytes:
        """Wait for at least ``n`` bytes in total; return everything received so far."""
        await self._wait(lambda: len(self.received) >= n or self.lost.done(), timeout_s)
        if len(self.received) < n:
            raise AssertionError(f"connection ended after {len(self.received)} of {n} bytes")
        return bytes(self.received)

    async def read_to_eof(self, *, timeout_s: float = WAIT_S) -> bytes:
        """Everything received up to a clean EOF; AssertionError if the connection broke."""
        await self._wait(lambda: self.eof.is_set() or self.lost.done(), timeout_s)
        if not self.eof.is_set():
            raise AssertionError(f"connection lost before EOF: {self.lost.result()!r}")
        return bytes(self.received)

    async def wait_lost(self, *, timeout_s: float = WAIT_S) -> Exception | None:
        async with asyncio.timeout(timeout_s):
            return await self.lost

    async def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


async def listen(factory: Callable[[], asyncio.BaseProtocol]) -> tuple[asyncio.Server, int]:
    """A server on an ephemeral loopback port."""
    server = await asyncio.get_running_loop().create_server(factory, LOCALHOST, 0)
    return server, server.sockets[0].getsockname()[1]


async def connect_tcp(port: int, protocol: asyncio.BaseProtocol) -> asyncio.Transport:
    async with asyncio.timeout(WAIT_S):
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: protocol, LOCALHOST, port
        )
    return transport


async def connect_tls(
    port: int,
    app: asyncio.Protocol,
    context: ssl.SSLContext,
    *,
    server_hostname: str = "b",
    handshake_timeout_s: float = 5.0,
) -> TLSLayer:
    """A TLSLayer connected to ``port``; its handshake may still be running."""
    layer = TLSLayer(
        context,
        app,
        server_side=False,
        server_hostname=server_hostname,
        handshake_timeout_s=handshake_timeout_s,
    )
    await connect_tcp(port, layer)
    return layer


async def dial_b(
    port: int, app: asyncio.Protocol, context: ssl.SSLContext, *, what: str
) -> TLSLayer:
    """``dial_tls`` to gateway "b" at ``port``, as a gateway dials a peer: handshaken, and
    the certificate checked to be b's."""
    return await dial_tls(
        (LOCALHOST, port),
        app,
        context=context,
        server_name="b",
        connect_timeout_s=WAIT_S,
        handshake_timeout_s=WAIT_S,
        what=what,
    )


def tls_server_factory(
    context: ssl.SSLContext, app: Callable[[], asyncio.Protocol], layers: list[TLSLayer]
) -> Callable[[], TLSLayer]:
    """A server protocol factory that wraps each accepted connection in a TLSLayer."""

    def factory() -> TLSLayer:
        layer = TLSLayer(context, app(), server_side=True)
        layers.append(layer)
        return layer

    return factory


def is_reset(exc: BaseException | None) -> bool:
    """A real TCP RST as the kernel reports it (not the truncation TLSLayer makes up)."""
    return isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET


def pattern(n: int, seed: int) -> bytes:
    """``n`` bytes that are not periodic at any small offset, so a lost or repeated chunk shows."""
    return random.Random(seed).randbytes(n)


async def close_both(*ends: Endpoint) -> None:
    """Close the test's ends of a finished tunnel and let the loop run their last callbacks."""
    for end in ends:
        end.transport.close()
        await end.wait_lost()
    for _ in range(10):
        await asyncio.sleep(0)


def still_alive(refs: list[weakref.ref[object]]) -> list[object]:
    """The objects of ``refs`` that something still holds."""
    return [obj for obj in (ref() for ref in refs) if obj is not None]


def peer_side(
    *,
    context: Callable[[], ssl.SSLContext],
    catalog: Catalog,
    local: LocalPeer,
    health: Callable[[PeerName], Health],
    settings: DataplaneSettings,
    metrics: GatewayMetrics,
) -> PeerListener:
    """The target side of a gateway, wired as ``gateway.Gateway`` wires it: a peer listener
    handing its requests to an ``Ingress``, tunnels and limits of its own."""
    limits = Limits(settings, metrics)
    tunnels = TunnelRegistry(idle_timeout_s=0, metrics=metrics, catalog=catalog)
    ingress = Ingress(
        catalog=catalog,
        local=local,
        tunnels=tunnels,
        settings=settings,
        metrics=metrics,
        limits=limits,
    )
    return PeerListener(
        context=context, ingress=ingress, health=health, settings=settings, limits=limits
    )

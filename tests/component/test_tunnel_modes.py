"""A tunnel from ``PeerConnector`` (gateway "a") through ``PeerListener`` (gateway "b") to a
service, in both tunnel modes, over real loopback sockets with the fabric's certificates.

The same checks run with ``DataplaneSettings(multiplex=True)`` (streams of one
connection, ALPN ``clusterlink-mux/1``) and ``multiplex=False`` (one TLS connection per tunnel, ALPN
``clusterlink/1``): bytes both ways with half-close, a refusal reaching the connector as the
listener's verdict, and how many connections the tunnels cost. Then the fallback: a
multiplexing connector against a listener that serves only ``clusterlink/1`` (an older
gateway) opens its tunnels in the basic mode, and stops asking for the mux mode after the first.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clusterlink.api import Gateway
from clusterlink.certs import peer_client_context, peer_server_context
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.dataplane.connector import PeerConnector
from clusterlink.dataplane.peer_listener import PEER_ALPN, PeerListener
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.errors import TunnelRefused
from clusterlink.metrics import GatewayMetrics
from clusterlink.protocol import ALPN_PROTOCOL, ExportRef, Health
from clusterlink.protocol.mux import MUX_ALPN
from clusterlink.store import SQLiteStore
from clusterlink.transport.mux import StreamTransport
from clusterlink.transport.tls import TLSTransport
from tests.component._net import (
    LOCALHOST,
    Endpoint,
    Fabric,
    Run,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    listen,
    pattern,
    peer_side,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
)
from tests.unit._resources import document, policy, snapshot_of

pytestmark = pytest.mark.component

DB = ExportRef("default", "db")
CLIENT = {"client.clusterlink.net/ip": "10.0.0.9"}


@pytest.fixture(name="multiplex", params=[True, False], ids=["mux", "basic"])
def multiplex_fixture(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "b.db")
    yield store
    store.close()


@dataclass
class Gateways:
    """Gateway "b"'s peer listener serving default/db, and gateway "a"'s connector."""

    connector: PeerConnector
    listener: PeerListener
    gateway: Gateway
    service: list[Endpoint]  # one per connection the service accepted
    n_accepted: int = 0  # TLS connections the listener accepted
    n_mux_dials: int = 0  # connections the connector dialed asking for the mux mode

    async def open(self, export: ExportRef = DB) -> tuple[asyncio.Transport, Endpoint]:
        """A tunnel to ``export``, with the test's client end on it."""
        tunnel, early = await self.connector.open("b", [self.gateway], export, CLIENT)
        assert early == b""
        client = Endpoint()
        tunnel.set_protocol(client)
        client.connection_made(tunnel)
        tunnel.resume_reading()
        return tunnel, client

    async def close(self) -> None:
        self.connector.close()
        await self.listener.close()


async def gateways(
    fabric: Fabric, store: SQLiteStore, *, multiplex: bool, listener_alpn: list[str]
) -> Gateways:
    service: list[Endpoint] = []

    def accept_service() -> Endpoint:
        service.append(Endpoint())
        return service[-1]

    _, service_port = await listen(accept_service)
    snapshot_of(
        store,
        document("Peer", "a", {"gateways": [{"host": LOCALHOST, "port": 1}]}),
        document("Export", "db", {"host": LOCALHOST, "port": service_port}, namespace="default"),
        policy("everyone", "allow"),
    )
    server_context = peer_server_context(fabric.b, listener_alpn)
    mux_context = peer_client_context(fabric.a, [MUX_ALPN])
    settings = DataplaneSettings(multiplex=multiplex)

    def accepting() -> ssl.SSLContext:
        result.n_accepted += 1
        return server_context

    def dialing_mux() -> ssl.SSLContext:
        result.n_mux_dials += 1
        return mux_context

    metrics = GatewayMetrics()
    catalog = Catalog(store)
    catalog.reload()
    listener = peer_side(
        context=accepting,
        catalog=catalog,
        local=LocalPeer("b", {}),
        health=lambda caller: Health("b", {}, "test"),
        settings=settings,
        metrics=metrics,
    )
    host, port = await listener.start(LOCALHOST, 0)
    basic_context = peer_client_context(fabric.a, [ALPN_PROTOCOL])
    connector = PeerConnector(
        context=lambda: basic_context, mux_context=dialing_mux, settings=settings
    )
    result = Gateways(connector, listener, Gateway(host=host, port=port), service)
    return result


async def talk(client: Endpoint, service: Endpoint, seed: int) -> None:
    """A request, the client's EOF, then a reply and the service's EOF: all arrive."""
    request, reply = pattern(300_000, seed), pattern(700_000, seed + 1)
    await client.send(request)
    client.transport.write_eof()
    assert await service.read_to_eof() == request
    await service.send(reply)
    service.transport.write_eof()
    assert await client.read_to_eof() == reply
    assert await client.wait_lost() is None


def test_a_tunnel_carries_both_ways_with_half_close_in_either_mode(
    run: Run, fabric: Fabric, store: SQLiteStore, multiplex: bool
) -> None:
    async def scenario() -> None:
        gw = await gateways(fabric, store, multiplex=multiplex, listener_alpn=list(PEER_ALPN))
        try:
            tunnels = [await gw.open() for _ in range(3)]
            kind = StreamTransport if multiplex else TLSTransport
            assert all(isinstance(tunnel, kind) for tunnel, _ in tunnels)
            await asyncio.gather(
                *(talk(client, gw.service[i], 10 * i) for i, (_, client) in enumerate(tunnels))
            )
            if multiplex:  # three tunnels, one connection
                assert (gw.n_accepted, gw.n_mux_dials) == (1, 1)
            else:  # a connection each (and the warm pool keeps some more ready)
                assert gw.n_accepted >= 3 and gw.n_mux_dials == 0
        finally:
            await gw.close()

    run(scenario())


def test_a_refusal_reaches_the_connector_as_the_listeners_verdict_in_either_mode(
    run: Run, fabric: Fabric, store: SQLiteStore, multiplex: bool
) -> None:
    async def scenario() -> None:
        gw = await gateways(fabric, store, multiplex=multiplex, listener_alpn=list(PEER_ALPN))
        try:
            with pytest.raises(TunnelRefused) as refused:
                await gw.open(ExportRef("default", "nothing-here"))
            assert (refused.value.status, refused.value.reason) == (404, "not-found")
            assert "default/nothing-here" in str(refused.value)
            # The refusal cost no more than that tunnel: the next one opens.
            _, client = await gw.open()
            await talk(client, gw.service[0], 1)
        finally:
            await gw.close()

    run(scenario())


def test_a_multiplexing_connector_falls_back_to_the_basic_mode_with_an_older_gateway(
    run: Run, fabric: Fabric, store: SQLiteStore
) -> None:
    async def scenario() -> None:
        gw = await gateways(fabric, store, multiplex=True, listener_alpn=[ALPN_PROTOCOL])
        try:
            tunnel, client = await gw.open()
            assert isinstance(tunnel, TLSTransport)
            assert tunnel.get_extra_info("alpn_protocol") == ALPN_PROTOCOL
            await talk(client, gw.service[0], 1)

            tunnel, client = await gw.open()  # no second try at the mux mode with this gateway
            assert isinstance(tunnel, TLSTransport)
            await talk(client, gw.service[1], 2)
            assert gw.n_mux_dials == 1
        finally:
            await gw.close()

    run(scenario())

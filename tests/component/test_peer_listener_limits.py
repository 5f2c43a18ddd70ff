"""The peer listener against callers that push past its limits: one in-process ``PeerListener``
on loopback with the fabric's certificates, on both event loops.

What the gateway-level tests cannot set or see: the mux stream limit per connection (an OPEN
beyond it is answered ``503 overloaded`` and counted), and the basic mode answering no faster
than the caller reads (pipelined heartbeats from a caller that reads nothing stop being read,
instead of piling up answers in memory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.certs import peer_client_context, peer_server_context
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.dataplane.peer_listener import PEER_ALPN, PeerListener
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.ids import PeerName
from clusterlink.metrics import GatewayMetrics
from clusterlink.protocol import ALPN_PROTOCOL, ExportRef, Health, Verdict
from clusterlink.protocol.mux import MUX_ALPN, MuxConnection, MuxSettings, StreamVerdict
from clusterlink.store import SQLiteStore
from tests.component._net import (
    LOCALHOST,
    Endpoint,
    Fabric,
    Run,
    connect_tls,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    listen,
    peer_side,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
    until,
)
from tests.unit._resources import document, policy, snapshot_of

pytestmark = pytest.mark.component

DB = ExportRef("default", "db")


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "b.db")
    yield store
    store.close()


class _Listener:
    """Gateway b's peer listener for peer a, exporting default/db (a service that holds)."""

    def __init__(self, store: SQLiteStore, settings: DataplaneSettings, health: Health) -> None:
        self.store = store
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.health_answers = 0
        self._health = health
        self.listener: PeerListener | None = None

    def _answer_health(self, caller: PeerName) -> Health:
        self.health_answers += 1
        return self._health

    async def start(self, fabric: Fabric) -> int:
        _, service_port = await listen(Endpoint)
        snapshot_of(
            self.store,
            document("Peer", "a", {"gateways": [{"host": LOCALHOST, "port": 1}]}),
            document(
                "Export", "db", {"host": LOCALHOST, "port": service_port}, namespace="default"
            ),
            policy("everyone", "allow"),
        )
        catalog = Catalog(self.store)
        catalog.reload()
        context = peer_server_context(fabric.b, PEER_ALPN)
        self.listener = peer_side(
            context=lambda: context,
            catalog=catalog,
            local=LocalPeer("b", {}),
            health=self._answer_health,
            settings=self.settings,
            metrics=self.metrics,
        )
        _, port = await self.listener.start(LOCALHOST, 0)
        return int(port)

    def hits(self, limit: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "clusterlink_limit_hits_total", {"limit": limit}
        )
        return value or 0.0

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()


def test_an_open_storm_beyond_the_stream_limit_gets_503_and_counts_as_a_limit_hit(
    run: Run, fabric: Fabric, store: SQLiteStore
) -> None:
    settings = DataplaneSettings(mux=MuxSettings(max_concurrent_streams=4))
    b = _Listener(store, settings, Health("b", {}, "test"))

    async def scenario() -> None:
        port = await b.start(fabric)
        try:
            client = Endpoint()
            await connect_tls(port, client, peer_client_context(fabric.a, [MUX_ALPN]))
            transport = await client.made
            mux = MuxConnection(client_side=True)  # a client that ignores the server's limit
            for _ in range(10):
                mux.open_stream(DB, {})
            transport.writelines(mux.data_to_send())
            verdicts: list[Verdict] = []
            seen = 0

            def all_answered() -> bool:
                nonlocal seen
                events = mux.receive_data(bytes(client.received[seen:]))
                seen = len(client.received)
                verdicts.extend(e.verdict for e in events if isinstance(e, StreamVerdict))
                return len(verdicts) == 10

            await until(all_answered)
            statuses = sorted((v.status, v.reason) for v in verdicts)
            assert statuses == [(200, "allowed")] * 4 + [(503, "overloaded")] * 6
            assert b.hits("max_streams_per_connection") == 6
            transport.abort()
        finally:
            await b.close()

    run(scenario())


def test_pipelined_heartbeats_from_a_caller_that_reads_nothing_stop_being_read(
    run: Run, fabric: Fabric, store: SQLiteStore
) -> None:
    """Each answer is 8 KiB; 4,000 requests would make 32 MiB of answers. What the listener
    answers is bounded by what the socket buffers take, and then it stops reading."""
    b = _Listener(store, DataplaneSettings(), Health("b", {"big": "x" * 8192}, "test"))
    requests = 4000

    async def scenario() -> None:
        port = await b.start(fabric)
        try:
            client = Endpoint(paused=True)
            context = peer_client_context(fabric.a, [ALPN_PROTOCOL])
            layer = await connect_tls(port, client, context)
            await layer.handshake_done
            transport = await client.made
            transport.write(b"GET /healthz HTTP/1.1\r\nhost: b\r\n\r\n" * requests)

            async def answered_settles() -> None:
                last = -1
                while b.health_answers != last:
                    last = b.health_answers
                    await asyncio.sleep(0.5)  # settled: no answer for half a second

            await asyncio.wait_for(answered_settles(), timeout=20)
            assert 0 < b.health_answers < requests // 2

            client.release()  # reading again: every request is answered after all
            await until(lambda: b.health_answers == requests)
            transport.abort()
        finally:
            await b.close()

    run(scenario())

"""Peer health for real: ``PeerHealth`` against the gateway's own ``PeerListener``.

On loopback, with real fabric certificates and a short interval: first answer, labels and
round-trip time, the kept-open heartbeat connection, turning unreachable after exactly
``unreachable_after`` failed beats and back after exactly ``reachable_after`` answered ones,
a gateway with the wrong certificate, and how a failed beat reads. The thresholds themselves,
as a table, are in tests/unit/test_health.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from clusterlink.api import Gateway
from clusterlink.certs import admin_server_context
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.health import HealthSettings, PeerHealth, PeerState
from clusterlink.dataplane.peer_listener import PeerListener
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.ids import PeerName
from clusterlink.metrics import GatewayMetrics
from clusterlink.protocol import Health
from clusterlink.store import SQLiteStore
from clusterlink.transport.tls import TLSLayer
from tests.component._net import (
    LOCALHOST,
    Fabric,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    listen,
    peer_side,
    tls_server_factory,
    until,
)
from tests.unit.test_health import peer

pytestmark = pytest.mark.component

# -- PeerHealth against a real peer listener ---------------------------------------------------


@dataclass
class PeerGateway:
    """Gateway "b"'s peer listener, counting the connections and heartbeats it serves."""

    fabric: Fabric
    state_path: Path
    labels: dict[str, str] = field(default_factory=lambda: {"env": "prod"})
    n_connections: int = 0
    n_heartbeats: int = 0
    listener: PeerListener | None = None
    store: SQLiteStore | None = None

    async def start(self, port: int = 0) -> int:
        context = self.fabric.server()
        self.store = SQLiteStore(self.state_path)  # empty: heartbeats need no resources

        def accepting() -> ssl.SSLContext:
            self.n_connections += 1  # the listener builds one TLS context per connection
            return context

        def answer(caller: PeerName) -> Health:
            self.n_heartbeats += 1
            return Health(name="b", labels=dict(self.labels), version="test")

        self.listener = peer_side(
            context=accepting,
            catalog=Catalog(self.store),
            local=LocalPeer("b", self.labels),
            health=answer,
            settings=DataplaneSettings(),
            metrics=GatewayMetrics(),
        )
        _, bound = await self.listener.start(LOCALHOST, port)
        return bound

    async def close(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        if self.store is not None:
            self.store.close()


@pytest.fixture
async def gateway_b(fabric: Fabric, tmp_path: Path) -> AsyncIterator[PeerGateway]:
    gateway = PeerGateway(fabric, tmp_path / "b.db")
    yield gateway
    await gateway.close()


@dataclass(frozen=True)
class Change:
    """A reachability change, with how many heartbeats b had answered and how many
    connections a had dialed when it was decided."""

    peer: str
    reachable: bool | None
    answered: int
    dials: int


@dataclass
class Watcher:
    """Gateway "a"'s PeerHealth, with every reachability change and every dial recorded."""

    health: PeerHealth
    changes: list[Change] = field(default_factory=list)
    n_dials: int = 0
    silent: list[tuple[str, int]] = field(default_factory=list)  # (peer, gateway port)

    def reachability_changes(self) -> list[tuple[str, bool | None]]:
        return [(c.peer, c.reachable) for c in self.changes]


@pytest.fixture
async def watcher(fabric: Fabric, gateway_b: PeerGateway) -> AsyncIterator[Watcher]:
    settings = HealthSettings(
        interval_s=0.02, timeout_s=2.0, unreachable_after=3, reachable_after=3
    )

    def dialing() -> ssl.SSLContext:
        watched.n_dials += 1  # PeerHealth builds a context for each new heartbeat connection
        return fabric.client()

    def on_change(name: str, state: PeerState) -> None:
        reachable = state.reachability.reachable
        watched.changes.append(Change(name, reachable, gateway_b.n_heartbeats, watched.n_dials))

    def on_silent(name: str, gateway: Gateway) -> None:
        watched.silent.append((name, gateway.port))

    health = PeerHealth(
        context=dialing, settings=settings, on_change=on_change, on_silent=on_silent
    )
    watched = Watcher(health)
    yield watched
    await health.close()


def free_port_refusing_connections() -> tuple[socket.socket, int]:
    """A loopback port that is bound (so nobody takes it) but refuses connections."""
    sock = socket.socket()
    sock.bind((LOCALHOST, 0))
    return sock, sock.getsockname()[1]


async def test_first_answer_makes_the_peer_reachable_with_its_labels_and_rtt(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    port = await gateway_b.start()
    before = datetime.now(UTC)
    watcher.health.sync({PeerName("b"): peer("b", port)})
    await until(lambda: bool(watcher.changes))

    assert watcher.changes == [Change("b", True, answered=1, dials=1)]  # on the first answer
    assert not watcher.health.is_unreachable("b")
    assert watcher.health.labels_of("b") == {"env": "prod"}
    status = watcher.health.status_of("b")
    assert status is not None
    assert status["reachable"] is True and status["reason"] == "heartbeat ok"
    assert isinstance(status["rttMs"], float) and 0 < status["rttMs"] < 2000
    assert isinstance(status["lastSeen"], str)
    last_seen = datetime.fromisoformat(status["lastSeen"].replace("Z", "+00:00"))
    assert before <= last_seen <= datetime.now(UTC)


async def test_heartbeats_reuse_one_connection_and_bring_label_changes(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    port = await gateway_b.start()
    watcher.health.sync({PeerName("b"): peer("b", port)})
    await until(lambda: gateway_b.n_heartbeats >= 2)
    gateway_b.labels["env"] = "staging"
    await until(lambda: watcher.health.labels_of("b") == {"env": "staging"})
    await until(lambda: gateway_b.n_heartbeats >= 5)
    assert (gateway_b.n_connections, watcher.n_dials) == (1, 1)  # HTTP keep-alive


async def test_unreachable_after_exactly_the_threshold_then_back_after_exactly_the_threshold(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    reserved, port = free_port_refusing_connections()
    with reserved:
        watcher.health.sync({PeerName("b"): peer("b", port)})
        await until(lambda: bool(watcher.changes))
        # Three refused heartbeats, each on a new dial, and only then unreachable.
        assert watcher.changes == [Change("b", False, answered=0, dials=3)]
        assert watcher.health.is_unreachable("b")
        status = watcher.health.status_of("b")
        assert status is not None and status["reachable"] is False
        assert f"{LOCALHOST}:{port}" in str(status["reason"])  # says which address failed
        assert status["lastSeen"] is None
    await gateway_b.start(port)  # the gateway comes up where the Peer says it is

    await until(lambda: len(watcher.changes) == 2)
    back = watcher.changes[1]
    assert (back.peer, back.reachable, back.answered) == ("b", True, 3)  # not before the third
    assert not watcher.health.is_unreachable("b")


async def test_a_gateway_with_another_peers_certificate_is_not_that_peer(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    port = await gateway_b.start()
    watcher.health.sync({PeerName("c"): peer("c", port)})  # "c" points at gateway b
    await until(lambda: bool(watcher.changes))
    assert watcher.reachability_changes() == [("c", False)]
    status = watcher.health.status_of("c")
    assert status is not None
    assert "certificate" in str(status["reason"])
    assert watcher.health.labels_of("c") == {}  # nothing learned from an impostor


async def test_any_answering_gateway_keeps_the_peer_reachable(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    reserved, dead_port = free_port_refusing_connections()
    with reserved:
        port = await gateway_b.start()
        watcher.health.sync({PeerName("b"): peer("b", dead_port, port)})
        await until(lambda: gateway_b.n_heartbeats >= 6)
        assert watcher.reachability_changes() == [("b", True)]


async def test_deleted_peers_are_forgotten_and_no_longer_beaten(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    port = await gateway_b.start()
    watcher.health.sync({PeerName("b"): peer("b", port)})
    await until(lambda: gateway_b.n_heartbeats >= 2)
    watcher.health.sync({})
    assert watcher.health.status_of("b") is None
    assert not watcher.health.is_unreachable("b")
    answered = gateway_b.n_heartbeats
    await asyncio.sleep(0.1)  # an absence: five intervals in which no beat may come
    assert gateway_b.n_heartbeats <= answered + 1  # at most the beat already on the wire


async def test_a_changed_gateway_list_starts_over_as_unknown(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    reserved, dead_port = free_port_refusing_connections()
    with reserved:
        watcher.health.sync({PeerName("b"): peer("b", dead_port)})
        await until(lambda: watcher.health.is_unreachable("b"))
        port = await gateway_b.start()
        watcher.health.sync({PeerName("b"): peer("b", port)})  # the Peer was edited: a fresh start
        status = watcher.health.status_of("b")
        assert status is not None and status["reachable"] is None
        # As a new peer, its first answer is enough.
        await until(lambda: len(watcher.changes) == 2)
        assert watcher.changes[1].reachable is True
        assert watcher.changes[1].answered == 1


async def test_a_gateway_slower_than_the_interval_gets_one_beat_at_a_time(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    """A gateway that takes TCP connections but never answers, next to one that answers:
    rounds (every 20 ms) end with the first answer, long before the silent gateway's beat
    times out (2 s). A new round must not start a second beat on the silent gateway's
    half-made channel; the heartbeat loop keeps running and the peer stays reachable."""
    with socket.socket() as silent:
        silent.bind((LOCALHOST, 0))
        silent.listen()  # the kernel completes TCP handshakes; TLS never gets an answer
        port = await gateway_b.start()
        watcher.health.sync({PeerName("b"): peer("b", silent.getsockname()[1], port)})
        await until(lambda: gateway_b.n_heartbeats >= 30)
        (_, loop), *_ = watcher.health._loops.values()
        assert not loop.done()
        assert watcher.reachability_changes() == [("b", True)]


async def test_connections_try_first_the_gateways_that_answered_the_latest_beat(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    reserved, dead_port = free_port_refusing_connections()
    with reserved:
        port = await gateway_b.start()
        spec = peer("b", dead_port, port).spec.gateways
        assert watcher.health.gateways_in_order("b", spec) == spec  # nothing known yet
        watcher.health.sync({PeerName("b"): peer("b", dead_port, port)})
        await until(lambda: watcher.health.gateways_in_order("b", spec) == spec[::-1])
        await until(lambda: gateway_b.n_heartbeats >= 3)
        assert watcher.health.gateways_in_order("b", spec) == spec[::-1]  # and it stays so
    await gateway_b.close()  # now the other way round: b is gone ...
    await gateway_b.start(dead_port)  # ... and the first address answers
    await until(lambda: watcher.health.gateways_in_order("b", spec) == spec)


async def test_a_peer_whose_every_gateway_missed_the_latest_beat_is_silent_and_reported(
    gateway_b: PeerGateway, watcher: Watcher
) -> None:
    reserved, dead_port = free_port_refusing_connections()
    with reserved, socket.socket() as mute:
        mute.bind((LOCALHOST, 0))
        mute.listen()  # TCP connects, TLS never answers: a beat there times out
        mute_port = mute.getsockname()[1]
        port = await gateway_b.start()
        watcher.health.sync({PeerName("b"): peer("b", dead_port, port)})
        await until(lambda: ("b", dead_port) in watcher.silent)  # told at the first miss
        await until(lambda: gateway_b.n_heartbeats >= 3)
        assert not watcher.health.is_silent("b")  # one gateway still answers
        assert ("b", port) not in watcher.silent
        watcher.health.sync({PeerName("b"): peer("b", dead_port, mute_port)})  # now none answers
        await until(lambda: watcher.health.is_silent("b"))
        assert ("b", mute_port) in watcher.silent
        assert not watcher.health.is_unreachable("b")  # silent comes first, at the first miss


# -- what a failed beat says ----------------------------------------------------------------------


class Refusing(asyncio.Protocol):
    """Answers any request with ``status`` and a ``{reason, message}`` body, as our listeners
    (peer or admin) word a refusal."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        body = json.dumps({"reason": reason, "message": message}).encode()
        self.answer = (
            f"HTTP/1.1 {status} Refused\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(self.answer)


async def reason_for(watcher: Watcher, context: ssl.SSLContext, answer: Refusing) -> str:
    """The status reason of peer "b" when its one gateway is a TLS server with ``context``
    whose app answers ``answer``."""
    layers: list[TLSLayer] = []
    server, port = await listen(tls_server_factory(context, lambda: answer, layers))
    try:
        watcher.health.sync({PeerName("b"): peer("b", port)})
        await until(lambda: bool(watcher.changes))
        status = watcher.health.status_of("b")
        assert status is not None
        return str(status["reason"])
    finally:
        server.close()
        for layer in layers:
            layer.abort()


async def test_a_refused_heartbeat_reads_as_a_sentence_not_an_object(
    fabric: Fabric, watcher: Watcher
) -> None:
    reason = await reason_for(watcher, fabric.server(), Refusing(503, "overloaded", "too busy"))

    assert reason.startswith(f"peer b gateway at {LOCALHOST}:")
    assert reason.endswith(" answered the heartbeat with 503 overloaded: too busy")
    assert "Verdict" not in reason and "=" not in reason


async def test_a_peer_pointed_at_an_admin_port_is_told_to_use_the_peer_listener(
    fabric: Fabric, watcher: Watcher
) -> None:
    refusal = Refusing(403, "forbidden", "a certificate cannot administer peer 'b'")

    reason = await reason_for(watcher, admin_server_context(fabric.b), refusal)

    assert reason.endswith(
        " is an admin API port, not a peer listener: use the port of the peer's --listen"
    )
    assert reason.startswith(f"{LOCALHOST}:")
    assert "administer" not in reason  # told before any request is sent

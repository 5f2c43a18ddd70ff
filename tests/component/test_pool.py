"""WarmPool with real mTLS connections to a real local TLS server, on asyncio and uvloop.

What a tunnel set-up relies on: after a take, the pool refills to ``size`` in the background
(and never beyond); a connection handed out is alive and now talks to the caller's protocol;
an idle connection that is stale (older than ``max_idle_s``), that the server closed or reset,
or that received bytes is never handed out and is closed; ``close()`` closes the idle ones
but not those already taken; a pool nobody uses dials nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from clusterlink.dataplane.relay import reset
from clusterlink.errors import PeerUnreachable
from clusterlink.transport.pool import WarmPool
from clusterlink.transport.tls import TLSLayer
from tests.component._net import (
    WAIT_S,
    Endpoint,
    Fabric,
    Run,
    dial_b,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    listen,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
    until,
)

pytestmark = pytest.mark.component


class _HeldTLSLayer(TLSLayer):
    """A server TLSLayer that sits on what the client sends until ``release()``: a handshake
    the test keeps in flight."""

    held = b""
    is_held = True

    def data_received(self, data: bytes | memoryview) -> None:
        if self.is_held:
            self.held += data
        else:
            super().data_received(data)

    def release(self) -> None:
        self.is_held = False
        if self.held:
            super().data_received(self.held)


@dataclass
class Gateway:
    """Peer b's TLS server: one ``Endpoint`` per accepted connection. While ``holding``, new
    connections get a ``_HeldTLSLayer`` (listed in ``held``). ``dials`` and ``failed_dials``
    count what the pool asked for, so a test can tell when every dial has come to its end."""

    fabric: Fabric
    port: int = 0
    ends: list[Endpoint] = field(default_factory=list)
    dials: int = 0
    failed_dials: int = 0
    holding: bool = False
    held: list[_HeldTLSLayer] = field(default_factory=list)

    async def start(self) -> None:
        context = self.fabric.server()

        def accept() -> TLSLayer:
            self.ends.append(Endpoint())
            if not self.holding:
                return TLSLayer(context, self.ends[-1], server_side=True)
            self.held.append(_HeldTLSLayer(context, self.ends[-1], server_side=True))
            return self.held[-1]

        _, self.port = await listen(accept)

    async def dial(self, app: asyncio.Protocol) -> TLSLayer:
        """What the connector gives its pools: dial b and verify it is b."""
        self.dials += 1  # counted as the pool calls, before the first await
        try:
            return await dial_b(self.port, app, self.fabric.client(), what="peer b gateway")
        except PeerUnreachable:
            self.failed_dials += 1
            raise

    async def end_of(self, layer: TLSLayer) -> Endpoint:
        """The server's end of the connection ``layer`` is the client's end of (in TLS 1.3
        the server finishes its handshake after the client, so this may have to wait)."""
        ours = layer.transport.get_extra_info("sockname")

        def matches() -> list[Endpoint]:
            made = [e for e in self.ends if e.made.done()]
            return [e for e in made if e.transport.get_extra_info("peername") == ours]

        await until(lambda: len(matches()) == 1)
        return matches()[0]

    def ended(self) -> list[Endpoint]:
        return [e for e in self.ends if e.lost.done() or e.eof.is_set()]


async def started(fabric: Fabric) -> Gateway:
    gateway = Gateway(fabric)
    await gateway.start()
    return gateway


async def take(pool: WarmPool) -> tuple[TLSLayer, bool, Endpoint]:
    """Acquire with our protocol: warm or fresh, it is told ``connection_made`` with the
    connection's TLS transport before ``acquire`` returns."""
    app = Endpoint()
    async with asyncio.timeout(WAIT_S):
        layer, was_warm = await pool.acquire(app)
    assert layer.transport.get_protocol() is app
    assert app.made.done()
    return layer, was_warm, app


async def settled(gateway: Gateway, pool: WarmPool, idle: int) -> None:
    """Wait until the pool holds ``idle`` connections and every dial reached the server.

    The refill stops in the same step in which it reaches ``idle``: a dial too many would
    already be counted in ``gateway.dials``, so once every counted dial has reached the
    server, ``gateway.ends`` is all there will be."""
    await until(lambda: pool.idle_count == idle)
    await until(lambda: len(gateway.ends) == gateway.dials)
    await until(lambda: all(e.made.done() for e in gateway.ends))


async def works(gateway: Gateway, layer: TLSLayer, app: Endpoint) -> None:
    """Bytes go both ways on the taken connection, between our app and the server."""
    server = await gateway.end_of(layer)
    await app.send(b"CONNECT")
    assert await server.read(7) == b"CONNECT"
    await server.send(b"200")
    assert await app.read(3) == b"200"


def test_a_pool_nobody_took_from_dials_nothing(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        pool = WarmPool(gateway.dial, size=2)
        # An absence: no event can say "it will never dial", so a stretch of loop turns in
        # which a dial, had one started, would have been counted and reached the server.
        await asyncio.sleep(0.02)
        assert (pool.idle_count, gateway.dials, len(gateway.ends)) == (0, 0, 0)
        pool.close()

    run(scenario())


def test_a_take_refills_the_pool_to_its_size_and_no_further(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        pool = WarmPool(gateway.dial, size=2)

        layer, was_warm, app = await take(pool)
        assert not was_warm  # nothing idle yet: dialed in the foreground
        await works(gateway, layer, app)
        await settled(gateway, pool, idle=2)
        assert len(gateway.ends) == 3

        warm, was_warm, warm_app = await take(pool)
        assert was_warm
        assert not warm.is_closing()
        await works(gateway, warm, warm_app)
        await settled(gateway, pool, idle=2)
        assert len(gateway.ends) == 4  # one more, to replace the one taken
        assert gateway.ended() == []
        pool.close()

    run(scenario())


def test_a_stale_idle_connection_is_closed_not_handed_out(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        pool = WarmPool(gateway.dial, size=1, max_idle_s=0.05)
        first, _, _ = await take(pool)
        await settled(gateway, pool, idle=1)
        await asyncio.sleep(0.06)  # a clock expiry: the idle one is now older than max_idle_s

        second, was_warm, app = await take(pool)
        assert not was_warm
        await works(gateway, second, app)
        # The stale connection was closed (the server saw it go), and only it.
        await until(lambda: len(gateway.ended()) == 1)
        (stale,) = gateway.ended()
        assert stale not in (await gateway.end_of(first), await gateway.end_of(second))
        await settled(gateway, pool, idle=1)  # and the pool refilled
        pool.close()

    run(scenario())


@pytest.mark.parametrize("server_does", ["close", "reset", "send bytes"])
def test_an_idle_connection_the_server_touched_is_never_handed_out(
    run: Run, fabric: Fabric, server_does: str
) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        pool = WarmPool(gateway.dial, size=1)
        first, _, _ = await take(pool)
        await settled(gateway, pool, idle=1)
        first_end = await gateway.end_of(first)
        (idle_end,) = [e for e in gateway.ends if e is not first_end]

        if server_does == "close":
            idle_end.transport.close()  # close_notify: the peer listener's request timeout
        elif server_does == "reset":
            reset(idle_end.transport)
        else:
            await idle_end.send(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        await until(lambda: pool.idle_count == 0)  # dropped at once, not at the next take

        second, was_warm, app = await take(pool)
        assert not was_warm
        assert await gateway.end_of(second) is not idle_end
        await works(gateway, second, app)
        if server_does == "send bytes":
            await idle_end.wait_lost()  # the pool closed it
        pool.close()

    run(scenario())


def test_close_closes_the_idle_connections_and_stops_refilling(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        pool = WarmPool(gateway.dial, size=2)
        taken, _, app = await take(pool)
        await settled(gateway, pool, idle=2)

        pool.close()
        assert pool.idle_count == 0
        await until(lambda: len(gateway.ended()) == 2)
        assert await gateway.end_of(taken) not in gateway.ended()  # the caller's stays open
        await works(gateway, taken, app)

        # A closed pool still connects when asked, but keeps nothing warm any more.
        _, was_warm, _ = await take(pool)
        assert not was_warm
        await settled(gateway, pool, idle=0)
        assert len(gateway.ends) == 4

    run(scenario())


def test_dial_fresh_bypasses_the_idle_connections(run: Run, fabric: Fabric) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        pool = WarmPool(gateway.dial, size=1)
        await take(pool)
        await settled(gateway, pool, idle=1)
        app = Endpoint()
        fresh = await pool.dial_fresh(app)
        assert fresh.transport.get_protocol() is app
        await settled(gateway, pool, idle=1)
        assert len(gateway.ends) == 3
        pool.close()

    run(scenario())


def test_an_unreachable_gateway_fails_the_take_and_the_refill_quietly(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        gateway = await started(fabric)
        server_errors: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: server_errors.append(ctx))
        gateway.port = 1  # nothing listens there
        pool = WarmPool(gateway.dial, size=2)
        with pytest.raises(PeerUnreachable, match=r"peer b gateway at 127\.0\.0\.1:1"):
            await take(pool)
        # The background refill fails too (the take's dial and the refill's), and says nothing.
        await until(lambda: gateway.failed_dials == gateway.dials == 2)
        assert pool.idle_count == 0
        pool.close()
        await asyncio.sleep(0)
        assert server_errors == []

    run(scenario())


def test_closing_while_a_refill_is_handshaking_leaves_no_connection_behind(
    run: Run, fabric: Fabric
) -> None:
    """A Peer deleted or edited closes its pool; a refill caught mid-handshake must not live
    on as a connection nobody owns (until the other gateway's request timeout)."""

    async def scenario() -> None:
        gateway = await started(fabric)
        refill_may_dial = asyncio.Event()
        n_dials = 0

        async def dial(app: asyncio.Protocol) -> TLSLayer:
            nonlocal n_dials
            n_dials += 1
            if n_dials > 1:  # the foreground dial is always the first to get here
                await refill_may_dial.wait()
            return await gateway.dial(app)

        pool = WarmPool(dial, size=1)
        await take(pool)
        gateway.holding = True
        refill_may_dial.set()
        # The refill is connected and has said hello; its handshake now waits on b.
        await until(lambda: bool(gateway.held) and bool(gateway.held[0].held))
        (refill,) = gateway.held
        pool.close()
        refill.release()  # b answers the handshake after all

        def connection_ended() -> bool:
            failed = refill.handshake_done.done() and refill.handshake_done.exception()
            return bool(failed) or refill.raw.is_closing()

        await until(connection_ended, timeout_s=2.0)
        assert pool.idle_count == 0

    run(scenario())

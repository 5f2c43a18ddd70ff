"""A trio-style conformance check of the relay, over real loopback connections.

The same checks run on every arrangement the gateway uses, on asyncio and on uvloop:

- ``tcp-tcp``: plain TCP on both sides;
- ``tcp-tls``: a plain client, and the ``TLSLayer`` towards the service (the source gateway:
  import listener -> tunnel to a peer);
- ``tls-tcp``: the ``TLSLayer`` towards the client, plain TCP to the service (the target
  gateway: peer connection -> exported service).

The test owns both outer ends (``Endpoint``s); the relay sits between two connections it
was handed in the ``Parked`` state, as the listeners hand them over. Checked: bytes arrive
byte-identical both ways, half-close passes through and the reply still flows, an error on
one side is a reset (ECONNRESET) on the other, ``on_close`` runs once with the right counts,
what arrived while parked is replayed, a slow reader cannot make the relay buffer without
bound, and ``is_idle`` follows the byte counters.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from clusterlink.dataplane.relay import Parked, Relay, RelayResult, reset
from clusterlink.transport.dial import dial_tls
from clusterlink.transport.tls import TLSLayer
from tests.component._net import (
    LOCALHOST,
    WAIT_S,
    Endpoint,
    Fabric,
    Run,
    close_both,
    connect_tcp,
    connect_tls,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    is_reset,
    listen,
    pattern,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
    run_without_cycle_collector,
    still_alive,
    tls_server_factory,
    until,
)

pytestmark = pytest.mark.component

HIGH_WATER = 512 * 1024  # what the relay sets on both transports
MAX_READ = 256 * 1024  # one read: asyncio's and uvloop's socket reads, TLSLayer's plaintext
TLS_OVERHEAD = 8 * 1024  # record headers and tags of one read's worth of TLS records

ARRANGEMENTS = ["tcp-tcp", "tcp-tls", "tls-tcp"]


@pytest.fixture(params=ARRANGEMENTS)
def arrangement(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _SignalParked(Parked):
    """A ``Parked`` that says when its connection is there (the relay accepts subclasses)."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ready.set_result(None)


@dataclass
class Tunnel:
    client: Endpoint  # the test's client, on the relay's "up" side
    service: Endpoint  # the test's service, on the relay's "down" side
    client_parked: _SignalParked  # the relay's side of the client connection, before start
    service_parked: _SignalParked
    client_layer: TLSLayer | None  # the test client's TLS, in the tls-* arrangement
    service_layer: TLSLayer | None  # the test service's TLS, in the *-tls arrangement
    results: list[RelayResult] = field(default_factory=list)
    relay: Relay | None = None
    # The relay's TLS side of the client connection (tls-*), as the test's server made it.
    accepted_layers: list[TLSLayer] = field(default_factory=list)

    def start(
        self,
        *,
        to_client: bytes = b"",
        to_service: bytes = b"",
        labels: tuple[str, str, str] = ("", "", ""),
    ) -> Relay:
        self.relay = Relay(
            self.client_parked.transport,
            self.service_parked.transport,
            on_close=self.results.append,
            labels=labels,
        )
        self.relay.start(to_client=to_client, to_service=to_service)
        return self.relay

    async def wait_closed(self) -> RelayResult:
        """The relay's single report, once both sides are gone."""
        await until(lambda: bool(self.results))
        for _ in range(10):  # a second report would come from callbacks already queued
            await asyncio.sleep(0)
        assert len(self.results) == 1, self.results
        return self.results[0]


async def open_tunnel(
    fabric: Fabric, arrangement: str, *, service: Endpoint | None = None, start: bool = True
) -> Tunnel:
    client_kind, service_kind = arrangement.split("-")
    service = service or Endpoint()
    client = Endpoint()

    # The service, and the relay's connection to it.
    service_parked = _SignalParked()
    service_layers: list[TLSLayer] = []
    if service_kind == "tcp":
        _, service_port = await listen(lambda: service)
        await connect_tcp(service_port, service_parked)
    else:
        _, service_port = await listen(
            tls_server_factory(fabric.server(), lambda: service, service_layers)
        )
        await dial_tls(
            (LOCALHOST, service_port),
            service_parked,
            context=fabric.client(),
            server_name="b",
            connect_timeout_s=WAIT_S,
            handshake_timeout_s=WAIT_S,
            what="test service",
        )

    # The client, and the relay's accepted connection from it.
    client_parked = _SignalParked()
    client_layer = None
    front_layers: list[TLSLayer] = []
    if client_kind == "tcp":
        _, front_port = await listen(lambda: client_parked)
        await connect_tcp(front_port, client)
    else:
        _, front_port = await listen(
            tls_server_factory(fabric.server(), lambda: client_parked, front_layers)
        )
        client_layer = await connect_tls(front_port, client, fabric.client())

    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(client.made, service.made, client_parked.ready, service_parked.ready)
    tunnel = Tunnel(
        client,
        service,
        client_parked,
        service_parked,
        client_layer,
        service_layers[0] if service_layers else None,
        accepted_layers=front_layers,
    )
    if start:
        tunnel.start()
    return tunnel


# -- data -------------------------------------------------------------------------------------


def test_bytes_cross_both_ways_byte_identical(run: Run, fabric: Fabric, arrangement: str) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        up, down = pattern(3 * 1024 * 1024 + 17, 1), pattern(2 * 1024 * 1024 + 5, 2)

        async def talk(end: Endpoint, data: bytes) -> None:
            await end.send(data)
            end.transport.write_eof()

        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(talk(tunnel.client, up), talk(tunnel.service, down))
        assert await tunnel.service.read_to_eof() == up
        assert await tunnel.client.read_to_eof() == down

        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=len(up), bytes_down=len(down), error=None)
        for end in (tunnel.client, tunnel.service):
            end.transport.close()
            assert await end.wait_lost() is None  # a clean end: nobody saw a reset

    run(scenario())


def test_client_half_close_reaches_the_service_and_the_reply_still_flows(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        request, reply = pattern(100_000, 3), pattern(1_000_000, 4)
        await tunnel.client.send(request)
        tunnel.client.transport.write_eof()

        # The service sees the whole request and its end before it answers anything.
        assert await tunnel.service.read_to_eof() == request
        assert tunnel.client.received == b""
        await tunnel.service.send(reply)
        tunnel.service.transport.write_eof()

        assert await tunnel.client.read_to_eof() == reply
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=len(request), bytes_down=len(reply), error=None)

    run(scenario())


def test_service_half_close_reaches_the_client_which_may_still_send(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        banner, upload = b"220 ready; send, I will not write again\r\n", pattern(500_000, 5)
        await tunnel.service.send(banner)
        tunnel.service.transport.write_eof()

        assert await tunnel.client.read_to_eof() == banner
        await tunnel.client.send(upload)
        tunnel.client.transport.write_eof()

        assert await tunnel.service.read_to_eof() == upload
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=len(upload), bytes_down=len(banner), error=None)

    run(scenario())


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("broken", ["client", "service"])
def test_a_reset_on_one_side_is_a_reset_on_the_other(
    run: Run, fabric: Fabric, arrangement: str, broken: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        culprit, victim = tunnel.client, tunnel.service
        if broken == "service":
            culprit, victim = victim, culprit
        await culprit.send(b"ping")
        await victim.read(4)
        reset(culprit.transport)

        assert is_reset(await victim.wait_lost())
        assert not victim.eof.is_set()  # never mistaken for a clean end of stream
        result = await tunnel.wait_closed()
        assert result.error is not None and result.error.startswith(f"{broken} side: ")
        assert "ConnectionResetError" in result.error
        up, down = (4, 0) if broken == "client" else (0, 4)
        assert (result.bytes_up, result.bytes_down) == (up, down)

    run(scenario())


@pytest.mark.parametrize(
    "case",  # (the relay's direction, the side that breaks, how the error names it)
    [
        ("egress", "service", "peer b"),  # the source's tunnel to the target gateway
        ("egress", "client", "client"),
        ("ingress", "client", "peer b"),  # the target's tunnel from the source gateway
        ("ingress", "service", "service"),
    ],
    ids="-".join,
)
def test_the_reported_error_names_the_peer_gateway_when_its_side_broke(
    run: Run, fabric: Fabric, arrangement: str, case: tuple[str, str, str]
) -> None:
    direction, broken, named = case

    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement, start=False)
        tunnel.start(labels=(direction, "default/web", "b"))
        reset((tunnel.client if broken == "client" else tunnel.service).transport)

        result = await tunnel.wait_closed()
        assert result.error is not None and result.error.startswith(f"{named} side: "), result

    run(scenario())


def test_a_reset_after_a_half_close_is_still_a_reset(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        tunnel.client.transport.write_eof()  # the client has finished sending ...
        await tunnel.service.read_to_eof()
        reset(tunnel.service.transport)  # ... and the service breaks before answering
        assert is_reset(await tunnel.client.wait_lost())
        assert (await tunnel.wait_closed()).error is not None

    run(scenario())


@pytest.mark.parametrize("tls_side", ["client", "service"])
def test_a_truncated_tls_side_resets_the_plain_side(
    run: Run, fabric: Fabric, tls_side: str
) -> None:
    """TLS ended by a bare TCP FIN (no close_notify) is an error, so the plain side must not
    take it for the other having finished."""

    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, "tls-tcp" if tls_side == "client" else "tcp-tls")
        if tls_side == "client":
            assert tunnel.client_layer is not None
            truncated, victim, layer = tunnel.client, tunnel.service, tunnel.client_layer
        else:
            assert tunnel.service_layer is not None
            truncated, victim, layer = tunnel.service, tunnel.client, tunnel.service_layer
        await truncated.send(b"half a mess")
        await victim.read(11)
        layer.raw.close()  # TCP FIN under the TLS, no close_notify

        assert is_reset(await victim.wait_lost())
        assert not victim.eof.is_set()
        assert f"{tls_side} side: ConnectionResetError" in str((await tunnel.wait_closed()).error)

    run(scenario())


def test_close_from_outside_resets_both_sides_and_reports_the_reason(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        assert tunnel.relay is not None
        tunnel.relay.close("idle for 3600s")
        assert is_reset(await tunnel.client.wait_lost())
        assert is_reset(await tunnel.service.wait_lost())
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=0, bytes_down=0, error="idle for 3600s")

    run(scenario())


# -- parked connections -----------------------------------------------------------------------


async def deliver_into_parked(parked: Parked, done: Callable[[], bool]) -> None:
    """Let the parked connection read until ``done()``, as the loop may before the relay
    attaches (uvloop reads a chunk whatever ``connection_made`` asked; a TLS record may hold
    more than one read)."""
    async with asyncio.timeout(WAIT_S):
        while not done():
            parked.transport.resume_reading()  # Parked pauses again on every chunk
            await asyncio.sleep(0.001)


def test_bytes_and_eof_that_arrived_while_parked_are_replayed_in_order(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement, start=False)
        await tunnel.client.send(b"early bytes")
        tunnel.client.transport.write_eof()
        parked = tunnel.client_parked
        await deliver_into_parked(parked, lambda: parked.eof)
        assert parked.early == b"early bytes"

        # Bytes that came with the set-up (behind the CONNECT header) go first.
        tunnel.start(to_service=b"set-up bytes, then ", to_client=b"200 behind the header; ")
        assert await tunnel.service.read_to_eof() == b"set-up bytes, then early bytes"
        await tunnel.service.send(b"reply")
        tunnel.service.transport.write_eof()
        assert await tunnel.client.read_to_eof() == b"200 behind the header; reply"
        result = await tunnel.wait_closed()
        assert result == RelayResult(bytes_up=30, bytes_down=28, error=None)

    run(scenario())


def test_a_client_lost_while_parked_resets_the_service(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement, start=False)
        reset(tunnel.client.transport)
        parked = tunnel.client_parked
        await deliver_into_parked(parked, lambda: parked.is_lost)

        tunnel.start()
        assert is_reset(await tunnel.service.wait_lost())
        result = await tunnel.wait_closed()
        assert result.error is not None and result.error.startswith("client side: ")

    run(scenario())


# -- back-pressure ----------------------------------------------------------------------------


def test_a_slow_reader_stops_the_relay_reading_instead_of_buffering(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement, service=Endpoint(paused=True))
        relay = tunnel.relay
        assert relay is not None
        towards_service = tunnel.service_parked.transport  # the relay writes here
        biggest = 0

        def sample() -> bool:
            nonlocal biggest
            biggest = max(biggest, towards_service.get_write_buffer_size())
            return False

        data = pattern(48 * 1024 * 1024, 6)  # far more than loopback's socket buffers
        sender = asyncio.create_task(tunnel.client.send(data))
        sampler = asyncio.create_task(until(sample))
        try:
            # The service does not read: the relay must stop reading the client ...
            await until(lambda: not relay.up.transport.is_reading())
            # ... and then stays stopped: no more bytes move, the sender is held back.
            moved = relay.up.n_bytes
            await asyncio.sleep(0.1)
            assert relay.up.n_bytes == moved
            assert moved < len(data)
            assert not sender.done()
            assert tunnel.client.is_write_paused
        finally:
            sampler.cancel()
        limit = HIGH_WATER + MAX_READ + TLS_OVERHEAD
        assert biggest <= limit, f"relay buffered {biggest} bytes towards a slow reader"

        tunnel.service.release()
        async with asyncio.timeout(WAIT_S):
            await sender
        tunnel.client.transport.write_eof()
        assert await tunnel.service.read_to_eof() == data

    run(scenario())


# -- idleness ---------------------------------------------------------------------------------


def test_is_idle_is_true_only_when_no_byte_moved_since_the_previous_call(
    run: Run, fabric: Fabric
) -> None:
    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, "tcp-tcp")
        relay = tunnel.relay
        assert relay is not None
        assert relay.is_idle() is False  # the first sweep has nothing to compare with
        assert relay.is_idle() is True
        assert relay.is_idle() is True

        await tunnel.client.send(b"x")
        await tunnel.service.read(1)
        assert relay.is_idle() is False
        assert relay.is_idle() is True

        await tunnel.service.send(b"y")
        await tunnel.client.read(1)
        assert relay.is_idle() is False
        assert relay.is_idle() is True

    run(scenario())


# -- memory -----------------------------------------------------------------------------------


def test_a_finished_tunnel_is_freed_at_once_without_the_cycle_collector(
    run: Run, fabric: Fabric, arrangement: str
) -> None:
    """Left to the cycle collector, finished tunnels with their TLS buffers piled up by the
    hundred under load (150 MB of RSS in the soak); reference counting must free them."""

    async def scenario() -> None:
        tunnel = await open_tunnel(fabric, arrangement)
        relay = tunnel.relay
        assert relay is not None
        gone: list[weakref.ref[object]] = [weakref.ref(relay)]
        for parked in (tunnel.client_parked, tunnel.service_parked):
            layer = getattr(parked.transport, "_layer", None)  # the relay's own TLS side
            if layer is not None:
                gone.append(weakref.ref(layer))
        assert len(gone) == (1 if arrangement == "tcp-tcp" else 2)

        await tunnel.client.send(pattern(300_000, 5))
        tunnel.client.transport.write_eof()
        await tunnel.service.read_to_eof()
        await tunnel.service.send(pattern(300_000, 6))
        tunnel.service.transport.write_eof()
        await tunnel.client.read_to_eof()
        await tunnel.wait_closed()
        await close_both(tunnel.client, tunnel.service)

        del relay, layer
        tunnel.relay = None
        tunnel.accepted_layers.clear()
        tunnel.client_parked.transport = tunnel.service_parked.transport = None  # type: ignore[assignment]
        assert not still_alive(gone), "kept alive by a reference cycle"

    run_without_cycle_collector(run, scenario())

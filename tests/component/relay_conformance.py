"""The relay conformance kit: what a tunnel must do, whatever carries each of its two sides.

Modelled on trio's ``check_two_way_stream`` and ``check_half_closeable_stream``: each check is
a coroutine function that takes a ``Join`` -- something that opens a ``Tunnel``, two ends the
test owns with a ``Relay`` between them -- and plays one scenario on it. The checks know
nothing of what carries the bytes; ``_tunnels.py`` has one ``Join`` for each way a gateway
joins two connections (plain TCP, the TLS layer, a stream of a multiplexed connection), and
test_relay.py runs every check over each of them, on asyncio and on uvloop.

What every tunnel must do, one check each (``CHECKS`` names them):

- bytes cross both ways byte-identical, and the ends finish cleanly, each told once;
- half-close passes through in each direction and the other direction keeps flowing;
- a reset on one side is a reset on the other (never a clean EOF), also after a half-close,
  and the next tunnel is not affected;
- ``on_close`` reports once, with the byte counts each way and, after an error, which side
  broke (naming the peer gateway where that side is the other gateway);
- ``Relay.close`` resets both sides and reports its reason;
- what arrived before the relay started (bytes, EOF, or the loss of the connection) is
  replayed in order, after the bytes that came with the set-up;
- a service that reads nothing stops the relay reading the client instead of letting it
  buffer: the buffer stays bounded, the sender is held back, and another tunnel still flows;
- ``is_idle`` follows the byte counters;
- an end that does not keep a half-open connection (``eof_received`` returning False) closes
  it cleanly;
- a finished tunnel is freed by reference counting, without the cycle collector.

A reset reaches a plain TCP or TLS end as a real RST (``ECONNRESET``); where the end is a
stream, a reset is the stream's RESET frame, reported as a ``ConnectionResetError`` too.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from clusterlink.dataplane.relay import Relay, RelayResult, reset
from clusterlink.transport.mux import StreamTransport
from tests.component._net import (
    WAIT_S,
    Endpoint,
    close_both,
    is_reset,
    pattern,
    still_alive,
    until,
)

__all__ = [
    "CHECKS",
    "HIGH_WATER",
    "MAX_READ",
    "TLS_OVERHEAD",
    "Check",
    "Held",
    "Join",
    "Tunnel",
    "exchange",
    "is_broken",
]

HIGH_WATER = 512 * 1024  # what the relay sets on both transports
MAX_READ = 256 * 1024  # one read: asyncio's and uvloop's socket reads, TLSLayer's plaintext
TLS_OVERHEAD = 8 * 1024  # record headers and tags of one read's worth of TLS records


class Held(Protocol):
    """The relay's side of one connection, as a listener or a dial hands it over: connected,
    reading paused, nothing forwarded until the relay starts."""

    @property
    def transport(self) -> asyncio.Transport: ...

    async def until_eof(self) -> None:
        """Until the EOF the test's end sent is held on this side."""

    async def until_lost(self) -> None:
        """Until this side has seen its connection reset."""

    def parts(self) -> list[object]:
        """What this side owns (a TLS layer, a stream) that a finished tunnel must free."""

    def let_go(self) -> None:
        """Drop every reference the test's own listeners and dials keep to this side."""


@dataclass
class Tunnel:
    """The test's ``client`` and ``service``, and the relay's sides ``up`` (towards the
    client) and ``down`` (towards the service); ``start()`` puts the relay between them."""

    client: Endpoint
    service: Endpoint
    up: Held
    down: Held
    # The most the relay may queue towards a service that reads nothing: HIGH_WATER, plus
    # one read that came before the pause, plus TLS_OVERHEAD where that side is TLS.
    buffer_limit: int
    results: list[RelayResult] = field(default_factory=list)
    relay: Relay | None = None

    def start(
        self,
        *,
        to_client: bytes = b"",
        to_service: bytes = b"",
        labels: tuple[str, str, str] = ("", "", ""),
    ) -> Relay:
        self.relay = Relay(
            self.up.transport,
            self.down.transport,
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


class Join(Protocol):
    """Opens a tunnel of one kind; ``start=False`` leaves the relay out until ``start()``,
    ``service`` replaces the test's service end (e.g. one that reads nothing)."""

    async def __call__(self, *, service: Endpoint | None = None, start: bool = True) -> Tunnel: ...


Check = Callable[[Join], Coroutine[Any, Any, None]]


def is_broken(end: Endpoint, exc: BaseException | None) -> bool:
    """The end saw its connection reset: a real RST on TCP and TLS, a RESET on a stream."""
    if isinstance(end.transport, StreamTransport):
        return isinstance(exc, ConnectionResetError)
    return is_reset(exc)


async def exchange(tunnel: Tunnel, up: bytes, down: bytes) -> None:
    """``up`` and ``down`` sent at once, each followed by EOF; each arrives whole."""

    async def talk(end: Endpoint, data: bytes) -> None:
        await end.send(data)
        end.transport.write_eof()

    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(talk(tunnel.client, up), talk(tunnel.service, down))
    assert await tunnel.service.read_to_eof() == up
    assert await tunnel.client.read_to_eof() == down


async def _finish_cleanly(tunnel: Tunnel) -> None:
    """Close the test's ends: each ends without an error, told exactly once."""
    for end in (tunnel.client, tunnel.service):
        end.transport.close()
        assert await end.wait_lost() is None  # a clean end: nobody saw a reset
        assert end.n_lost == 1


# -- data and half-close ----------------------------------------------------------------------


async def check_bytes_cross_both_ways_byte_identical(join: Join) -> None:
    tunnel = await join()
    up, down = pattern(3 * 1024 * 1024 + 17, 1), pattern(2 * 1024 * 1024 + 5, 2)
    await exchange(tunnel, up, down)

    result = await tunnel.wait_closed()
    assert result == RelayResult(bytes_up=len(up), bytes_down=len(down), error=None)
    await _finish_cleanly(tunnel)


async def check_a_half_close_passes_through_and_the_other_direction_still_flows(
    join: Join, *, first: str
) -> None:
    """The ``first`` side says all it has to say and ends its direction (TCP FIN, TLS
    close_notify, END on a stream); the other side gets it all, then that end, and only then
    answers, through the direction still open."""
    tunnel = await join()
    done, other = tunnel.client, tunnel.service
    if first == "service":
        done, other = other, done
    said, answer = pattern(100_000, 3), pattern(1_500_000, 4)
    await done.send(said)
    done.transport.write_eof()

    assert await other.read_to_eof() == said
    assert done.received == b""
    assert not other.lost.done() and not done.lost.done()  # half-closed, not closed
    await other.send(answer)
    other.transport.write_eof()

    assert await done.read_to_eof() == answer
    up, down = (said, answer) if first == "client" else (answer, said)
    result = await tunnel.wait_closed()
    assert result == RelayResult(bytes_up=len(up), bytes_down=len(down), error=None)
    await _finish_cleanly(tunnel)


async def check_an_end_that_keeps_no_half_open_connection_closes_it_cleanly(join: Join) -> None:
    """As with asyncio's transports: a protocol whose ``eof_received`` returns False gets
    its connection closed, and the other end sees a clean end, not a reset."""
    tunnel = await join(service=Endpoint(keep_open_on_eof=False))
    await tunnel.client.send(b"last words")
    tunnel.client.transport.write_eof()

    assert await tunnel.service.wait_lost() is None
    assert tunnel.service.received == b"last words"
    assert await tunnel.client.read_to_eof() == b""
    tunnel.client.transport.close()
    assert await tunnel.client.wait_lost() is None
    result = await tunnel.wait_closed()
    assert result == RelayResult(bytes_up=10, bytes_down=0, error=None)


# -- errors -----------------------------------------------------------------------------------


async def check_a_reset_on_one_side_is_a_reset_on_the_other(join: Join, *, broken: str) -> None:
    tunnel = await join()
    culprit, victim = tunnel.client, tunnel.service
    if broken == "service":
        culprit, victim = victim, culprit
    await culprit.send(b"ping")
    await victim.read(4)
    reset(culprit.transport)

    assert is_broken(victim, await victim.wait_lost())
    assert not victim.eof.is_set()  # never mistaken for a clean end of stream
    assert await culprit.wait_lost() is None  # the side that aborted: no error of its own
    result = await tunnel.wait_closed()
    assert result.error is not None and result.error.startswith(f"{broken} side: ")
    assert "ConnectionResetError" in result.error
    up, down = (4, 0) if broken == "client" else (0, 4)
    assert (result.bytes_up, result.bytes_down) == (up, down)
    # Only that tunnel ended: the next one (on the same connection, for streams) carries bytes.
    await exchange(await join(), b"next", b"one")


async def check_a_reset_after_a_half_close_is_still_a_reset(join: Join) -> None:
    tunnel = await join()
    tunnel.client.transport.write_eof()  # the client has finished sending ...
    await tunnel.service.read_to_eof()
    reset(tunnel.service.transport)  # ... and the service breaks before answering
    assert is_broken(tunnel.client, await tunnel.client.wait_lost())
    assert not tunnel.client.eof.is_set()
    assert (await tunnel.wait_closed()).error is not None


async def check_the_reported_error_names_the_peer_gateway_when_its_side_broke(
    join: Join, *, direction: str, broken: str, named: str
) -> None:
    """One side of a gateway's relay is always the other gateway (the service side on
    egress, the client side on ingress): an error there must blame it, not the client or
    the service."""
    tunnel = await join(start=False)
    tunnel.start(labels=(direction, "default/web", "b"))
    reset((tunnel.client if broken == "client" else tunnel.service).transport)

    result = await tunnel.wait_closed()
    assert result.error is not None and result.error.startswith(f"{named} side: "), result


async def check_close_from_outside_resets_both_sides_and_reports_the_reason(join: Join) -> None:
    tunnel = await join()
    assert tunnel.relay is not None
    tunnel.relay.close("idle for 3600s")
    assert is_broken(tunnel.client, await tunnel.client.wait_lost())
    assert is_broken(tunnel.service, await tunnel.service.wait_lost())
    result = await tunnel.wait_closed()
    assert result == RelayResult(bytes_up=0, bytes_down=0, error="idle for 3600s")


# -- before the relay starts ------------------------------------------------------------------


async def check_bytes_and_eof_that_came_before_the_start_are_replayed_in_order(
    join: Join,
) -> None:
    tunnel = await join(start=False)
    await tunnel.client.send(b"early bytes")
    tunnel.client.transport.write_eof()
    await tunnel.up.until_eof()

    # Bytes that came with the set-up (behind the CONNECT header) go first.
    tunnel.start(to_service=b"set-up bytes, then ", to_client=b"200 behind the header; ")
    assert await tunnel.service.read_to_eof() == b"set-up bytes, then early bytes"
    await tunnel.service.send(b"reply")
    tunnel.service.transport.write_eof()
    assert await tunnel.client.read_to_eof() == b"200 behind the header; reply"
    result = await tunnel.wait_closed()
    assert result == RelayResult(bytes_up=30, bytes_down=28, error=None)


async def check_a_side_lost_before_the_start_resets_the_other(join: Join, *, lost: str) -> None:
    tunnel = await join(start=False)
    gone, held, victim = tunnel.client, tunnel.up, tunnel.service
    if lost == "service":
        gone, held, victim = tunnel.service, tunnel.down, tunnel.client
    reset(gone.transport)
    await held.until_lost()

    tunnel.start()
    assert is_broken(victim, await victim.wait_lost())
    assert not victim.eof.is_set()
    result = await tunnel.wait_closed()
    assert result.error is not None and result.error.startswith(f"{lost} side: ")


# -- back-pressure ----------------------------------------------------------------------------


async def check_a_slow_reader_stops_the_relay_reading_instead_of_buffering(join: Join) -> None:
    tunnel = await join(service=Endpoint(paused=True))
    relay = tunnel.relay
    assert relay is not None
    towards_service = tunnel.down.transport  # the relay writes here
    biggest = 0

    def sample() -> bool:
        nonlocal biggest
        biggest = max(biggest, towards_service.get_write_buffer_size())
        return False

    data = pattern(64 * 1024 * 1024, 6)  # far more than socket buffers and stream windows
    sender = asyncio.create_task(tunnel.client.send(data))
    sampler = asyncio.create_task(until(sample))
    try:
        # The service does not read: the socket or the stream's window fills, the relay's
        # buffer towards it passes the high-water mark, and the relay stops reading ...
        await until(
            lambda: (
                towards_service.get_write_buffer_size() > HIGH_WATER
                and not relay.up.transport.is_reading()
            )
        )
        # ... and stays stopped. What is checked is that nothing happens, so there is no
        # event to wait for: a stretch of time in which no byte may move.
        moved = relay.up.n_bytes
        await asyncio.sleep(0.1)  # an absence check, not a wait
        assert relay.up.n_bytes == moved < len(data)
        assert not sender.done()
        assert tunnel.client.is_write_paused
        # Meanwhile another tunnel (on the same connection, for streams) moves megabytes.
        await exchange(await join(), pattern(3 * 1024 * 1024, 7), pattern(3 * 1024 * 1024, 8))
        assert relay.up.n_bytes == moved
    finally:
        sampler.cancel()
    assert biggest <= tunnel.buffer_limit, f"relay buffered {biggest} bytes towards a slow reader"

    tunnel.service.release()
    async with asyncio.timeout(WAIT_S):
        await sender
    tunnel.client.transport.write_eof()
    assert await tunnel.service.read_to_eof() == data
    assert tunnel.service.bytes_while_paused == 0


# -- idleness ---------------------------------------------------------------------------------


async def check_is_idle_is_true_only_when_no_byte_moved_since_the_previous_call(
    join: Join,
) -> None:
    tunnel = await join()
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


# -- memory -----------------------------------------------------------------------------------


async def check_a_finished_tunnel_is_freed_at_once_without_the_cycle_collector(
    join: Join,
) -> None:
    """Left to the cycle collector, finished tunnels with their TLS buffers piled up by the
    hundred under load (150 MB of RSS in the soak); a stream and its protocol refer to each
    other too. Reference counting alone must free the relay and what its sides own."""
    gc.disable()
    try:
        tunnel = await join()
        assert tunnel.relay is not None
        parts = [tunnel.relay, *tunnel.up.parts(), *tunnel.down.parts()]
        gone: list[weakref.ref[object]] = [weakref.ref(part) for part in parts]
        del parts

        await exchange(tunnel, pattern(300_000, 5), pattern(300_000, 6))
        await tunnel.wait_closed()
        await close_both(tunnel.client, tunnel.service)

        tunnel.relay = None
        tunnel.up.let_go()
        tunnel.down.let_go()
        assert not still_alive(gone), "kept alive by a reference cycle"
    finally:
        gc.enable()


CHECKS: dict[str, Check] = {
    "bytes-both-ways": check_bytes_cross_both_ways_byte_identical,
    **{
        f"{side}-half-closes-first": functools.partial(
            check_a_half_close_passes_through_and_the_other_direction_still_flows, first=side
        )
        for side in ("client", "service")
    },
    "no-half-open-end": check_an_end_that_keeps_no_half_open_connection_closes_it_cleanly,
    **{
        f"reset-by-{side}": functools.partial(
            check_a_reset_on_one_side_is_a_reset_on_the_other, broken=side
        )
        for side in ("client", "service")
    },
    "reset-after-half-close": check_a_reset_after_a_half_close_is_still_a_reset,
    **{
        f"{direction}-{broken}-broke-names-{named.replace(' ', '-')}": functools.partial(
            check_the_reported_error_names_the_peer_gateway_when_its_side_broke,
            direction=direction,
            broken=broken,
            named=named,
        )
        for direction, broken, named in [
            ("egress", "service", "peer b"),  # the source's tunnel to the target gateway
            ("egress", "client", "client"),
            ("ingress", "client", "peer b"),  # the target's tunnel from the source gateway
            ("ingress", "service", "service"),
        ]
    },
    "close-from-outside": check_close_from_outside_resets_both_sides_and_reports_the_reason,
    "early-bytes-replayed": check_bytes_and_eof_that_came_before_the_start_are_replayed_in_order,
    **{
        f"{side}-lost-before-start": functools.partial(
            check_a_side_lost_before_the_start_resets_the_other, lost=side
        )
        for side in ("client", "service")
    },
    "slow-reader": check_a_slow_reader_stops_the_relay_reading_instead_of_buffering,
    "is-idle": check_is_idle_is_true_only_when_no_byte_moved_since_the_previous_call,
    "freed-at-once": check_a_finished_tunnel_is_freed_at_once_without_the_cycle_collector,
}

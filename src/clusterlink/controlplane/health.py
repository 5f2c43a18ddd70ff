"""Peer health: heartbeats to every Peer, and what this gateway concludes from them (DESIGN §7).

No central server: each gateway sends ``GET /healthz`` to each of its Peers every
``interval_s`` over mTLS and decides *alone* whether that peer is reachable. One heartbeat
goes to all of a peer's gateways at once and the first answer wins, so a peer stays reachable
while any of its gateways answers.

Flapping is damped by thresholds (``reachability.Reachability``, pure and clock-free, so it
is tested without sleeping): ``unreachable_after`` failures in a row turn a peer unreachable,
``reachable_after`` successes in a row turn it reachable again. A peer never heard from yet
is *unknown*; its first answer makes it reachable at once (there is nothing to damp yet), and
``unreachable_after`` failures make it unreachable.

Which of a peer's gateways failed their latest beat is kept as well: connections try the
others first, so a gateway cut off by the network costs them no connect timeout.

A Peer that dials in (``spec.dialsIn``) cannot be dialled: its heartbeat is a PING over the
link it dialled (``ping_link``), answered with the same health as ``GET /healthz``; no link
up is a failed beat, so the same thresholds make it unreachable and reachable again.

Each answer also brings the peer's labels (used by egress policies as
``peer.clusterlink.net/labels.*``), and records last-seen time and round-trip time. None of
this is written to the store on every beat: it is runtime state, served by ``status`` and
``get peer``; the heartbeat connection is kept open between beats (HTTP keep-alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import cast

from clusterlink.addresses import format_address
from clusterlink.api import Gateway, Peer
from clusterlink.controlplane.reachability import PEER_REACHABLE, PeerState, Reachability
from clusterlink.errors import ClusterLinkError, PeerUnreachable, RemoteProtocolError
from clusterlink.ids import PeerName
from clusterlink.logs import fields
from clusterlink.metrics import PeerSample
from clusterlink.protocol import NEED_DATA, Health, PeerClientConnection, Verdict
from clusterlink.transport.dial import dial_tls, expect_peer_listener

__all__ = ["PEER_REACHABLE", "HealthSettings", "PeerHealth", "PeerState", "Reachability"]

log = logging.getLogger("clusterlink.health")

_Target = tuple[tuple[Gateway, ...], bool]  # a peer's gateways, and whether it dials in
_Beat = tuple[bool, str, Health | None, float]  # answered, why, the answer, round trip (s)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSettings:
    interval_s: float = 1.0
    timeout_s: float = 1.0  # per heartbeat (connect + handshake + answer); late = failed
    unreachable_after: int = 5
    reachable_after: int = 3

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError("heartbeat interval and timeout must be positive")
        if self.unreachable_after < 1 or self.reachable_after < 1:
            raise ValueError("heartbeat thresholds must be at least 1")


class _HealthChannel(asyncio.Protocol):
    """A kept-open heartbeat connection to one gateway of a peer."""

    def __init__(self, peer: str, generation: int, what: str) -> None:
        self.conn = PeerClientConnection(peer)
        self.what = what  # "peer P gateway at H:P", for errors
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[Health] | None = None
        self.is_open = True
        self.generation = generation  # of the credentials it was dialed with

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self.answer is None or self.answer.done():
            return
        try:
            event = self.conn.next_event()
        except RemoteProtocolError as exc:
            self.answer.set_exception(exc)
            return
        if event is NEED_DATA:
            return
        if isinstance(event, Health):
            self.answer.set_result(event)
        else:  # a refusal: say it as a sentence, never as the event's repr
            assert isinstance(event, Verdict)  # a heartbeat is answered by health or refusal
            self.answer.set_exception(
                PeerUnreachable(
                    f"{self.what} answered the heartbeat with {event.status} {event.reason}: "
                    f"{event.message}"
                )
            )

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_open = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(
                PeerUnreachable(f"connection closed{f': {exc}' if exc else ''}")
            )

    async def beat(self) -> Health:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(self.conn.health_request())
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class PeerHealth:
    """Runs one heartbeat loop per Peer and keeps each peer's ``PeerState``."""

    def __init__(
        self,
        *,
        context: Callable[[], ssl.SSLContext],
        settings: HealthSettings,
        local_name: str = "this gateway",
        on_change: Callable[[str, PeerState], None] | None = None,
        on_silent: Callable[[str, Gateway], None] | None = None,
        on_answer: Callable[[PeerName, Health], None] | None = None,
        ping_link: Callable[[PeerName], Awaitable[Health]] | None = None,
    ) -> None:
        self._context = context
        self._local_name = local_name
        self.settings = settings
        self._on_change = on_change
        self._on_silent = on_silent  # a gateway failed a beat: opens waiting on it can stop
        self._on_answer = on_answer  # every answer (e.g. it asks us to dial in)
        self._ping_link = ping_link  # the heartbeat of a peer that dials in
        self.states: dict[str, PeerState] = {}
        self._generation = 0  # bumped by reconnect(): older heartbeat connections are redialed
        # Per peer: what its loop beats (gateways, or its links if it dials in), and the loop.
        self._loops: dict[str, tuple[_Target, asyncio.Task[None]]] = {}

    # -- what the data plane asks ---------------------------------------------------------

    def reconnect(self) -> None:
        """After a certificate reload: each kept-open heartbeat connection is replaced at its
        next beat, so heartbeats prove the new credentials too."""
        self._generation += 1

    def is_silent(self, peer: str) -> bool:
        """Every gateway of the peer failed its latest beat: likely gone, not yet declared
        unreachable (that takes ``unreachable_after`` beats). Its sources are tried last."""
        state = self.states.get(peer)
        loop = self._loops.get(peer)
        return state is not None and loop is not None and state.silent >= set(loop[0][0])

    def is_unreachable(self, peer: str) -> bool:
        state = self.states.get(peer)
        return state is not None and state.reachability.reachable is False

    def labels_of(self, peer: str) -> Mapping[str, str]:
        state = self.states.get(peer)
        return state.labels if state is not None else {}

    def gateways_in_order(self, peer: str, gateways: Sequence[Gateway]) -> list[Gateway]:
        """The peer's gateways to try, those that failed their latest heartbeat last (the
        order is kept otherwise): a gateway cut off by the network is not waited for."""
        state = self.states.get(peer)
        if state is None or not state.silent:
            return list(gateways)
        return sorted(gateways, key=lambda gateway: gateway in state.silent)

    def samples(self) -> list[PeerSample]:
        """Reachability and round-trip time of every peer, for metrics scrapes."""
        return [
            PeerSample(
                name,
                state.reachability.reachable,
                None if state.rtt_ms is None else state.rtt_ms / 1000.0,
            )
            for name, state in self.states.items()
        ]

    def status_of(self, peer: str) -> dict[str, object] | None:
        state = self.states.get(peer)
        return state.status() if state is not None else None

    # -- following the Peer resources -------------------------------------------------------

    def sync(self, peers: Mapping[PeerName, Peer]) -> None:
        """Start loops for new peers, restart changed ones, stop deleted ones."""
        for name in [n for n in self._loops if n not in peers]:
            self._loops.pop(name)[1].cancel()
            self.states.pop(name, None)
        for name, peer in peers.items():
            target: _Target = (tuple(peer.spec.gateways), peer.spec.dials_in)
            running = self._loops.get(name)
            if running is not None and running[0] == target:
                continue
            if running is not None:
                running[1].cancel()
            settings = self.settings
            self.states[name] = PeerState(
                Reachability(settings.unreachable_after, settings.reachable_after)
            )
            self._loops[name] = (target, asyncio.create_task(self._run(name, target)))

    async def close(self) -> None:
        tasks = [task for _, task in self._loops.values()]
        self._loops.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self, peer: str, target: _Target) -> None:
        gateways, dials_in = target
        channels: dict[Gateway, _HealthChannel] = {}
        in_flight: dict[Gateway, asyncio.Task[Health]] = {}  # at most one beat per gateway
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                if dials_in:
                    ok, reason, health, rtt_s = await self._beat_link(PeerName(peer))
                else:
                    beat = await self._beat(peer, gateways, channels, in_flight)
                    ok, reason, health, rtt_s = beat
                self._record(peer, ok, reason, health, rtt_s)
                await asyncio.sleep(max(0.0, self.settings.interval_s - (loop.time() - started)))
        finally:
            for task in list(in_flight.values()):
                task.cancel()
            for channel in channels.values():
                channel.close()

    async def _beat(
        self,
        peer: str,
        gateways: tuple[Gateway, ...],
        channels: dict[Gateway, _HealthChannel],
        in_flight: dict[Gateway, asyncio.Task[Health]],
    ) -> _Beat:
        """One heartbeat to all gateways of ``peer``; the first answer wins.

        The slower gateways' beats are not cancelled (that would cost their kept-open
        connection); each ends by itself within ``timeout_s``, or when the loop stops. A
        gateway whose beat is still running (longer than an interval) gets no second one:
        that beat stands for this round too, as two would share one half-made channel.
        """
        started = time.perf_counter()
        attempts = []
        for gw in gateways:
            task = in_flight.get(gw)
            if task is None:
                task = in_flight[gw] = asyncio.create_task(self._beat_one(peer, gw, channels))
                task.add_done_callback(partial(self._beat_ended, peer, gw, in_flight))
            attempts.append(task)
        errors: list[str] = []
        for next_done in asyncio.as_completed(attempts):
            try:
                health = await next_done
            except (ClusterLinkError, OSError) as exc:
                errors.append(str(exc))
                continue
            return self._judge(peer, health, time.perf_counter() - started, "heartbeat ok")
        return False, "; ".join(errors) or "the Peer lists no gateway", None, 0.0

    async def _beat_link(self, peer: PeerName) -> _Beat:
        """The heartbeat of a peer that dials in: a PING over the link it dialled."""
        timeout_s = self.settings.timeout_s
        if self._ping_link is None:
            return False, f"peer {peer} dials in, and this gateway takes no links", None, 0.0
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                health = await self._ping_link(peer)
        except TimeoutError:
            why = f"peer {peer} dials in; its link did not answer within {timeout_s:g}s"
            return False, why, None, 0.0
        except (ClusterLinkError, OSError) as exc:
            return False, str(exc), None, 0.0
        return self._judge(peer, health, time.perf_counter() - started, "heartbeat ok (link)")

    def _judge(self, peer: str, health: Health, rtt_s: float, ok: str) -> _Beat:
        """What an answer says: the right peer, and whether it takes our tunnels."""
        if health.name != peer:
            return False, f"answered as {health.name!r}, not {peer!r}", None, rtt_s
        if health.peered is False:
            reason = (
                f"reachable, but not peered: peer {peer} has no Peer named "
                f"{self._local_name}, so it refuses every tunnel from here"
            )
            return True, reason, health, rtt_s
        return True, ok, health, rtt_s

    async def _beat_one(
        self, peer: str, gateway: Gateway, channels: dict[Gateway, _HealthChannel]
    ) -> Health:
        timeout_s = self.settings.timeout_s
        what = f"peer {peer} gateway"
        where = format_address((gateway.host, gateway.port))
        channel = channels.get(gateway)
        try:
            async with asyncio.timeout(timeout_s):
                if (
                    channel is None
                    or not channel.is_open
                    or not channel.conn.is_reusable
                    or channel.generation != self._generation
                ):
                    if channel is not None:
                        channel.close()
                    channel = channels[gateway] = _HealthChannel(
                        peer, self._generation, f"{what} at {where}"
                    )
                    layer = await dial_tls(
                        (gateway.host, gateway.port),
                        channel,
                        context=self._context(),
                        server_name=peer,
                        connect_timeout_s=timeout_s,
                        handshake_timeout_s=timeout_s,
                        what=what,
                    )
                    expect_peer_listener(layer, where)
                return await channel.beat()
        except BaseException as exc:
            if channel is not None:
                channel.close()  # an unanswered beat leaves the channel unusable
            channels.pop(gateway, None)
            if isinstance(exc, TimeoutError):
                raise PeerUnreachable(
                    f"{what} at {where}: no answer within {timeout_s:g}s"
                ) from None
            raise

    def _beat_ended(
        self,
        peer: str,
        gateway: Gateway,
        in_flight: dict[Gateway, asyncio.Task[Health]],
        task: asyncio.Task[Health],
    ) -> None:
        """Forget the finished beat, retrieve its error (nobody else may await it) and note
        whether the gateway answered (connections try the answering ones first)."""
        if in_flight.get(gateway) is task:
            del in_flight[gateway]
        if task.cancelled():
            return
        failed = task.exception() is not None
        state = self.states.get(peer)
        if state is None:
            return
        if failed:
            state.silent.add(gateway)
            if self._on_silent is not None:
                self._on_silent(peer, gateway)
        else:
            state.silent.discard(gateway)

    def _record(
        self, peer: str, ok: bool, reason: str, health: Health | None, rtt_s: float
    ) -> None:
        state = self.states.get(peer)
        if state is None:
            return
        state.reason = reason
        if ok and health is not None:
            if self._on_answer is not None:
                self._on_answer(PeerName(peer), health)
            state.peered = health.peered
            state.labels = dict(health.labels)
            state.last_seen = datetime.now(UTC)
            state.rtt_ms = rtt_s * 1000.0
        if state.reachability.record(ok):
            state.since = datetime.now(UTC)
            word = "reachable" if state.reachability.reachable else "unreachable"
            # INFO: a peer coming and going is the fabric's weather, not this gateway's fault.
            event = fields(f"peer_{word}", peer=peer, reason=reason or None)
            log.info("peer %s is now %s: %s", peer, word, reason, extra=event)
            if self._on_change is not None:
                self._on_change(peer, state)

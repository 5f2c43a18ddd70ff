"""Reverse links, the dialling side: keeping a connection up to each peer that cannot dial us.

A gateway behind NAT, or behind a firewall that lets nothing in, is marked at its peer with
``spec.dialsIn: true``; that peer's heartbeat answers then say ``dialsIn``, and this gateway
keeps a *reverse link* to it: a connection it dials (outbound, which the firewall allows),
with ALPN ``clusterlink-mux-reverse/1``, on which the peer opens a stream for every tunnel to
our exports (``reverse_links`` is the other end). Each stream is decided by our ingress as
for any other caller, so nothing about authorization changes.

The link is kept up: a lost link is dialled again at once, then with exponential back-off
(``BACKOFF_MIN_S`` doubling up to ``BACKOFF_MAX_S``, with jitter, reset once a link has lasted
``BACKOFF_MAX_S``), trying the peer's gateways in order. A heartbeat answer from the peer
while we wait cuts the wait short, once per run of failures: a mended network is used at
once instead of after the back-off grown while it was cut. A link that stops answering PINGs
(``misses`` in a row, one per ``interval_s``) is closed and dialled again: a black-holed
connection is noticed even when TCP is not told. A refusal from the peer (a GOAWAY saying why,
e.g. it has no Peer for us that dials in) is logged with its reason and retried at the slow
pace, since a change of resources there may lift it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final

from clusterlink.addresses import format_address
from clusterlink.api import Gateway, Peer
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.errors import ClusterLinkError, PeerUnreachable
from clusterlink.ids import PeerName
from clusterlink.protocol import Health
from clusterlink.protocol.mux import REVERSE_MUX_ALPN, StreamRefused, StreamRequest
from clusterlink.transport.dial import dial_tls
from clusterlink.transport.mux import MuxSession

__all__ = ["BACKOFF_MAX_S", "BACKOFF_MIN_S", "KeepAlive", "ReverseDialer"]

log = logging.getLogger("clusterlink.reverse")

BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """How a link is watched: a PING every ``interval_s``, each answered within
    ``interval_s``; ``misses`` unanswered in a row end the link (the heartbeat settings)."""

    interval_s: float = 1.0
    misses: int = 5


class ReverseDialer:
    """One keeper task per peer that wants a link from us."""

    def __init__(
        self,
        *,
        context: Callable[[], ssl.SSLContext],
        settings: DataplaneSettings,
        keepalive: KeepAlive,
        serve: Callable[[PeerName, MuxSession, StreamRequest], None],
        refused: Callable[[PeerName, str, StreamRefused], None],
        health: Callable[[PeerName], Health],
    ) -> None:
        self._context = context
        self._settings = settings
        self._keepalive = keepalive
        self._serve = serve
        self._refused = refused
        self._health = health
        self._keepers: dict[PeerName, tuple[tuple[Gateway, ...], asyncio.Task[None]]] = {}
        self._sessions: dict[PeerName, MuxSession] = {}
        self._wake: dict[PeerName, asyncio.Event] = {}  # set: dial now, the peer answers
        self._woken: set[PeerName] = set()  # woken already in this run of failures

    def want(self, peer: PeerName, gateways: tuple[Gateway, ...]) -> None:
        """Keep a link to ``peer`` at ``gateways`` (no-op if one is kept there already)."""
        running = self._keepers.get(peer)
        if running is not None and running[0] == gateways:
            return
        if running is not None:
            running[1].cancel()
        elif gateways:
            log.info("peer %s asks this gateway to dial in: keeping a reverse link to it", peer)
        if gateways:
            self._keepers[peer] = (gateways, asyncio.create_task(self._keep(peer, gateways)))

    def unwant(self, peer: PeerName, why: str) -> None:
        """Stop keeping the link to ``peer``; its open tunnels finish (it drains)."""
        running = self._keepers.pop(peer, None)
        self._wake.pop(peer, None)
        self._woken.discard(peer)
        if running is None:
            return
        running[1].cancel()
        session = self._sessions.pop(peer, None)
        if session is not None:
            session.drain(why)
        log.info("reverse link to peer %s let go: %s", peer, why)

    def wanted(self) -> list[PeerName]:
        return sorted(self._keepers)

    def answered(self, peer: PeerName, health: Health, resource: Peer | None) -> None:
        """A heartbeat answer from ``peer`` (its Peer here: ``resource``): it says whether
        the peer wants a link from us."""
        if health.dials_in and resource is not None:
            self.want(peer, tuple(resource.spec.gateways))
            if peer not in self._sessions and peer not in self._woken and peer in self._wake:
                self._woken.add(peer)
                self._wake[peer].set()
        elif peer in self._keepers:
            self.unwant(peer, f"peer {peer} no longer asks this gateway to dial in")

    def sync(self, peers: Mapping[PeerName, Peer]) -> None:
        """After a change of Peers: a deleted one's link is let go, a changed one's dialled
        at its new gateways."""
        for peer in list(self._keepers):
            resource = peers.get(peer)
            if resource is None:
                self.unwant(peer, f"the Peer {peer} was deleted")
            else:
                self.want(peer, tuple(resource.spec.gateways))

    def retire(self) -> None:
        """New credentials: each link drains and is dialled anew with them."""
        for session in list(self._sessions.values()):
            session.drain("this gateway's credentials changed; dialling again")

    async def close(self) -> None:
        tasks = [task for _, task in self._keepers.values()]
        self._keepers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for session in self._sessions.values():
            session.close("the gateway is stopping")
        self._sessions.clear()

    # -- one peer -----------------------------------------------------------------------------

    async def _pause(self, peer: PeerName, delay: float) -> None:
        """Wait ``delay`` (with jitter), or less if the peer is heard from meanwhile."""
        wake = self._wake.setdefault(peer, asyncio.Event())
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), _jitter(delay))

    async def _keep(self, peer: PeerName, gateways: tuple[Gateway, ...]) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.0  # the first dial, and the first after a long-lived link, wait for nothing
        failures = 0
        while True:
            try:
                session, where = await self._dial(peer, gateways)
            except ClusterLinkError as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                backoff = _next(backoff)
                log.log(
                    level,
                    "reverse link to peer %s: %s; dialling again in %.1fs",
                    peer,
                    exc,
                    backoff,
                )
                await self._pause(peer, backoff)
                continue
            failures = 0
            self._sessions[peer] = session
            self._woken.discard(peer)
            started = loop.time()
            log.info("reverse link to peer %s is up (via %s)", peer, where)
            try:
                why = await self._watch(session)
            finally:
                if self._sessions.get(peer) is session:
                    del self._sessions[peer]
            lasted = loop.time() - started
            backoff = 0.0 if lasted >= BACKOFF_MAX_S else _next(backoff)
            log.warning(
                "reverse link to peer %s (via %s) ended after %.1fs: %s; dialling again in %.1fs",
                peer,
                where,
                lasted,
                why,
                backoff,
            )
            await self._pause(peer, backoff)

    async def _dial(self, peer: PeerName, gateways: tuple[Gateway, ...]) -> tuple[MuxSession, str]:
        errors: list[str] = []
        for gateway in gateways:
            where = format_address((gateway.host, gateway.port))
            session = MuxSession(
                client_side=False,
                peer_name=peer,
                settings=self._settings.mux,
                on_request=partial(self._on_stream, peer),
                on_refused=partial(self._on_refused, peer, where),
                health=partial(self._health, peer),
            )
            try:
                layer = await dial_tls(
                    (gateway.host, gateway.port),
                    session,
                    context=self._context(),
                    server_name=peer,
                    connect_timeout_s=self._settings.connect_timeout_s,
                    handshake_timeout_s=self._settings.handshake_timeout_s,
                    what=f"peer {peer} gateway",
                )
            except ClusterLinkError as exc:
                errors.append(str(exc))
                continue
            if layer.get_extra_info("alpn_protocol") != REVERSE_MUX_ALPN:
                layer.abort()
                errors.append(
                    f"peer {peer} gateway at {where} takes no reverse links (is it a peer "
                    "listener of a gateway that knows them?)"
                )
                continue
            return session, where
        raise PeerUnreachable("; ".join(errors) or f"the Peer {peer} lists no gateway")

    async def _watch(self, session: MuxSession) -> str:
        """Until the link ends: why it ended. PINGs prove it alive."""
        keepalive = self._keepalive
        misses = 0
        closed = asyncio.ensure_future(session.wait_closed())
        try:
            while not closed.done():
                ping = asyncio.ensure_future(session.ping())
                done, _ = await asyncio.wait(
                    {ping, closed}, timeout=keepalive.interval_s, return_when="FIRST_COMPLETED"
                )
                if closed in done:
                    ping.cancel()
                    break
                if ping in done and ping.exception() is None:
                    misses = 0
                    await asyncio.wait({closed}, timeout=keepalive.interval_s)
                    continue
                ping.cancel()
                misses += 1
                if misses >= keepalive.misses:
                    session.close(f"no answer to {misses} PINGs")
                    return f"no answer to {misses} PINGs in a row"
        finally:
            closed.cancel()
        if session.goaway_message:
            return f"the peer closed it: {session.goaway_message}"
        return "the connection was closed or lost"

    def _on_stream(self, peer: PeerName, session: MuxSession, event: StreamRequest) -> None:
        self._serve(peer, session, event)

    def _on_refused(
        self, peer: PeerName, where: str, _session: MuxSession, event: StreamRefused
    ) -> None:
        self._refused(peer, where, event)


def _next(backoff: float) -> float:
    return min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, backoff * 2))


def _jitter(delay: float) -> float:
    """A delay within ±20%: links cut at once (a restart of the peer) are not all redialled
    in the same instant."""
    return delay * random.uniform(0.8, 1.2)

"""Reverse links, the dialled side: connections that peers behind NAT made to this gateway.

A Peer with ``spec.dialsIn: true`` cannot be dialled: it dials us (``reverse_dialer``) with
ALPN ``clusterlink-mux-reverse/1`` and keeps the connection up. On that connection the roles
of the multiplexed mode are swapped: we are its *client* (we open a stream for each tunnel
to that peer's exports, as on a connection we dialled), it is the server (its ingress decides
each stream as for any other caller). Nothing else changes: the same OPEN, the same verdicts,
the same authorization at both ends.

Kept here: the links each such peer holds to us, which one carries the next tunnel, and the
heartbeat over them (a PING; the PONG is the peer's health, as a basic-mode heartbeat's
answer would be). A link is accepted only from a peer whose Peer here says ``dialsIn``; any
other is closed at once with a GOAWAY saying why, so the dialling side can log it.
"""

from __future__ import annotations

import logging
from typing import Final

from clusterlink.controlplane.catalog import Catalog
from clusterlink.errors import PeerUnreachable
from clusterlink.ids import PeerName
from clusterlink.protocol import Health
from clusterlink.transport.mux import MuxSession

__all__ = ["MAX_LINKS_PER_PEER", "ReverseLinks"]

MAX_LINKS_PER_PEER: Final = 8
"""One per gateway replica of the dialling peer is what it needs; the oldest beyond this go."""

log = logging.getLogger("clusterlink.reverse")


class ReverseLinks:
    """The reverse links of every dialling-in peer, and the decision to take a new one."""

    def __init__(self, *, catalog: Catalog, local_name: str) -> None:
        self._catalog = catalog
        self._local_name = local_name
        self._links: dict[PeerName, list[MuxSession]] = {}
        self._turn = 0  # round-robin among a peer's links (one per gateway replica of it)

    def refusal(self, caller: PeerName) -> str | None:
        """Why a link from ``caller`` is not taken, or None to take it."""
        peer = self._catalog.snapshot.peers.get(caller)
        if peer is None:
            return f"peer {self._local_name} has no Peer named {caller}"
        if not peer.spec.dials_in:
            return (
                f"peer {self._local_name}'s Peer {caller} does not say dialsIn: true, so it "
                "dials that peer itself and takes no link from it"
            )
        return None

    def attach(self, caller: PeerName, session: MuxSession, remote: str) -> None:
        links = [s for s in self._links.get(caller, []) if s.is_open]
        links.append(session)
        while len(links) > MAX_LINKS_PER_PEER:  # a peer cannot make us hold links without end
            links.pop(0).drain(f"more than {MAX_LINKS_PER_PEER} links from peer {caller}")
        self._links[caller] = links
        log.info("reverse link from peer %s (%s) is up: %d link(s)", caller, remote, len(links))

    def _open_links(self, peer: PeerName) -> list[MuxSession]:
        links = [s for s in self._links.get(peer, []) if s.is_open and not s.is_draining]
        if links:
            self._links[peer] = links
        else:
            self._links.pop(peer, None)
        return links

    def session(self, peer: PeerName) -> MuxSession:
        """A link to ``peer`` that can take a new stream; ``PeerUnreachable`` if none is up."""
        links = [s for s in self._open_links(peer) if s.can_open_stream]
        if not links:
            raise PeerUnreachable(
                f"peer {peer} dials in (spec.dialsIn), and no link from it is up now"
            )
        self._turn += 1
        return links[self._turn % len(links)]

    async def ping(self, peer: PeerName) -> Health:
        """The peer's health over its newest link (the caller bounds the wait)."""
        links = self._open_links(peer)
        if not links:
            raise PeerUnreachable(f"peer {peer} dials in, and no link from it is up")
        return await links[-1].ping()

    def sync(self) -> None:
        """After a change of Peers: links of peers that no longer dial in are let go (they
        drain: open tunnels finish; the GOAWAY tells the peer why)."""
        for peer in list(self._links):
            reason = self.refusal(peer)
            if reason is None:
                continue
            for session in self._links.pop(peer):
                session.drain(reason)
            log.info("reverse links from peer %s let go: %s", peer, reason)

    def fail_pending(self, peer: PeerName, reason: str) -> None:
        for session in self._links.get(peer, []):
            session.fail_pending(reason)

    def close(self) -> None:
        for links in self._links.values():
            for session in links:
                session.close("the gateway is stopping")
        self._links.clear()

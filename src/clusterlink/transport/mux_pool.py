"""Multiplexed sessions to one peer gateway: found, shared, replaced.

The source side keeps one long-lived multiplexed connection per peer gateway and opens every
tunnel to that gateway as a stream on it. A second connection is dialed only when the first
cannot take another stream (the peer's stream limit, or the peer is draining it with a
GOAWAY); a lost connection is forgotten and the next tunnel dials anew. Concurrent tunnels
that find no session wait for the *same* dial instead of each starting one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from clusterlink.transport.mux import MuxSession

__all__ = ["MuxPool"]


class MuxPool:
    def __init__(self, dial: Callable[[], Awaitable[MuxSession]]) -> None:
        self._dial = dial
        self._sessions: list[MuxSession] = []
        self._dialing: asyncio.Future[MuxSession] | None = None

    async def session(self) -> tuple[MuxSession, bool]:
        """A session that can open a stream now, and whether it was dialed for this call."""
        self._sessions = [s for s in self._sessions if s.is_open]
        for session in self._sessions:
            if session.can_open_stream:
                return session, False
        if self._dialing is None:
            self._dialing = asyncio.ensure_future(self._dial_one())
        return await asyncio.shield(self._dialing), True

    async def _dial_one(self) -> MuxSession:
        try:
            session = await self._dial()
            self._sessions.append(session)
            return session
        finally:
            self._dialing = None

    def fail_pending(self, reason: str) -> None:
        """Fail the opens waiting for a verdict on this gateway's sessions (see MuxSession)."""
        for session in self._sessions:
            session.fail_pending(reason)

    def retire(self) -> None:
        """New tunnels go to a new connection (e.g. after a certificate reload); the current
        ones drain: their open tunnels finish on them."""
        for session in self._sessions:
            session.drain()
        self._sessions.clear()

    def close(self, *, drain: bool = False) -> None:
        """No more tunnels from this pool. Its connections are closed, resetting their open
        tunnels (the gateway stops), or with ``drain`` left to finish them (a Peer changed:
        a resource change applies to new connections only)."""
        if self._dialing is not None:
            self._dialing.cancel()
        for session in self._sessions:
            if drain:
                session.drain()
            else:
                session.close()
        self._sessions.clear()

"""A basic-mode peer connection (ALPN ``clusterlink/1``) in its HTTP phase.

Heartbeats (``GET /healthz``) are answered on the spot, as often as they come; a
``CONNECT <namespace>/<export>`` goes to ``Ingress`` and, if allowed, the connection becomes
that tunnel's raw bytes (one tunnel per connection); a ``POST /link`` (a peer presenting an
invitation) goes to the listener's ``link``, whose answer ends the connection. The protocol
itself is the sans-io ``PeerServerConnection``; this module only feeds it bytes and enforces
the timeouts.

Two deadlines, never both: between requests the connection may wait ``request_timeout_s`` (a
warm connection in the source's pool), and is then closed; from the first byte of a request
its head must be complete within ``request_head_timeout_s``, else it is answered ``408`` and
closed. The head deadline is set once per request, not moved by each byte, so trickling
bytes buys nothing. Answers go out no faster than the caller reads them: while our writes are
paused, its requests are not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from clusterlink.dataplane.limits import Limit
from clusterlink.errors import RemoteProtocolError
from clusterlink.ids import PeerName
from clusterlink.protocol import (
    NEED_DATA,
    ConnectRequest,
    HealthRequest,
    LinkRequest,
    PeerServerConnection,
    Verdict,
)

if TYPE_CHECKING:
    from clusterlink.dataplane.peer_listener import PeerListener

__all__ = ["BasicSession"]


class BasicSession(asyncio.Protocol):
    """App protocol of a basic-mode peer connection during its HTTP phase (see the module)."""

    def __init__(self, listener: PeerListener, caller: PeerName, remote: str) -> None:
        self.listener = listener
        self.caller = caller
        self.remote = remote
        self.conn = PeerServerConnection()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._is_reading_head = False
        self._is_write_paused = False
        self.is_tunnel = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._await_request()

    def _await_request(self) -> None:
        self._is_reading_head = False
        self._arm(self.listener.settings.request_timeout_s, self.transport.abort)

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, callback)

    def _on_head_timeout(self) -> None:
        if self.transport.is_closing():
            return
        timeout_s = self.listener.settings.request_head_timeout_s
        message = f"the request head was not complete {timeout_s:g}s after its first byte"
        self.listener.limits.hit(
            Limit.REQUEST_HEAD_TIMEOUT,
            self.caller,
            "refused request from peer %s (%s): %s",
            self.caller,
            self.remote,
            message,
        )
        self._refuse(self.conn.send_verdict(Verdict(408, "timeout", message)))

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused already: nothing more is read
        if not self._is_reading_head:
            self._is_reading_head = True
            self._arm(self.listener.settings.request_head_timeout_s, self._on_head_timeout)
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._process()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        self._is_write_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._is_write_paused = False
        if self._task is not None or self.transport.is_closing():
            return  # a CONNECT is being decided: its tunnel resumes reading
        self._process()
        if not self._is_write_paused and self._task is None:
            self.transport.resume_reading()

    def _process(self) -> None:
        while not self._is_write_paused:
            try:
                event = self.conn.next_event()
            except RemoteProtocolError as exc:
                self.listener.log_bad_input(
                    self.caller,
                    "refused request from peer %s (%s): %s",
                    self.caller,
                    self.remote,
                    exc,
                )
                self._refuse(self.conn.send_error(exc))
                return
            if event is NEED_DATA:
                return
            if isinstance(event, HealthRequest):
                self.transport.write(self.conn.send_health(self.listener.health(self.caller)))
                self._await_request()
                continue
            if isinstance(event, ConnectRequest | LinkRequest):
                self.transport.pause_reading()  # tunnel bytes wait until the service is there
                if self._timer is not None:
                    self._timer.cancel()
                self._task = asyncio.create_task(
                    self._connect(event) if isinstance(event, ConnectRequest) else self._link(event)
                )
                return
            self.transport.close()  # CLOSED: the caller is done with this connection
            return

    def _refuse(self, data: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport.write(data)
        self.transport.close()

    def drain(self) -> None:
        """Retire: a connection waiting for its next request is closed now (its caller will
        dial again, facing our current credentials); one busy with a request finishes it."""
        if not self._is_reading_head and self._task is None and not self.is_tunnel:
            if self._timer is not None:
                self._timer.cancel()
            self.transport.close()

    async def _link(self, request: LinkRequest) -> None:
        answer = await self.listener.link(self.caller, request)
        self._task = None
        if self.transport.is_closing():  # the caller left while we decided
            return
        if isinstance(answer, Verdict):
            self._refuse(self.conn.send_verdict(answer))
            return
        self.transport.write(self.conn.send_link_answer(answer))
        self.transport.close()  # one link per connection

    async def _connect(self, request: ConnectRequest) -> None:
        outcome = await self.listener.ingress.open(self.caller, request)
        self._task = None
        if isinstance(outcome, Verdict):
            self._refuse(self.conn.send_verdict(outcome))
            return
        if self.transport.is_closing():  # the caller left while we decided
            self.listener.ingress.abandon(outcome)
            return
        self.transport.write(self.conn.send_verdict(Verdict.allow()))
        self.is_tunnel = True
        self.listener.ingress.relay(self.transport, outcome, early=self.conn.trailing_data)

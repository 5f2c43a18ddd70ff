"""The UDP port of a UDP Import: one socket, one flow per client address.

Why flows: UDP has no connections, yet authorization, load balancing, limits, records and
metrics are all per connection. The first datagram from a client address makes a flow
(``udp_flows.DatagramFlow``), and the flow goes through ``Egress`` exactly as an accepted TCP
client does (policy, a source, a tunnel, the relay). Later datagrams from that address join
it; the exported service's answers come back through the same socket to that address.

A flow holds a slot of the Import's ``--max-connections`` like a TCP client; a new client
while they are all taken has its datagram dropped (``max_flows``). A flow with no datagram
either way for ``idle_timeout_s`` ends quietly (``DatagramFlow.finish``): its tunnel closes
cleanly at both gateways and its flow record ends. Like the tunnel sweeper, one sleeper per
Import checks every half timeout; nothing is armed per datagram.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from clusterlink.addresses import format_peername
from clusterlink.dataplane.limits import Slots
from clusterlink.dataplane.relay import Parked
from clusterlink.dataplane.udp_flows import (
    UDP_QUEUE_DATAGRAMS,
    DatagramFlow,
    Drop,
    bounded_sender,
    count_too_large,
)
from clusterlink.ids import NamespacedName

__all__ = ["FlowClient", "UdpImportSocket", "bind_udp"]

log = logging.getLogger("clusterlink.egress")

Serve = Callable[["FlowClient", NamespacedName], Any]  # Egress.serve


class FlowClient(Parked):
    """A flow as ``Egress`` sees a client connection (``egress.ClientConnection``)."""

    def __init__(self, flow: DatagramFlow, slots: Slots, now: float) -> None:
        super().__init__()
        self.flow = flow
        self.accepted_at = now
        self.last_active = now
        self.task: asyncio.Task[None] | None = None
        self._slots = slots
        self._holds_slot = True

    def hand_over_slot(self) -> Slots:
        self._holds_slot = False
        return self._slots

    async def reset_when_heard(self, grace_s: float) -> None:
        """A refused flow just ends: UDP has no reset to send, the client hears nothing."""
        self.flow.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._holds_slot:
            self._holds_slot = False
            self._slots.give_back()


class UdpImportSocket(asyncio.DatagramProtocol):
    """The socket of one UDP Import and its flows (see the module)."""

    def __init__(
        self,
        key: NamespacedName,
        *,
        serve: Serve,
        slots: Slots,
        idle_timeout_s: float,
        on_drop: Callable[[Drop, int], None],
    ) -> None:
        self.key = key
        self._serve = serve
        self._slots = slots
        self._idle_timeout_s = idle_timeout_s
        self._on_drop = on_drop
        self._flows: dict[Any, FlowClient] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._serving = False
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def sockets(self) -> list[Any]:
        sock = self._transport.get_extra_info("socket") if self._transport else None
        return [sock] if sock is not None else []

    async def start_serving(self) -> None:
        """Take datagrams from now on (before: bound for an apply, dropped unread)."""
        self._serving = True
        if self._sweeper is None and self._idle_timeout_s > 0:
            self._sweeper = asyncio.create_task(self._sweep())

    def close(self) -> None:
        """Stop taking datagrams; every flow ends quietly (its tunnel closes cleanly)."""
        self._serving = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        for client in list(self._flows.values()):
            client.flow.finish()
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport has the methods but not the base class: no isinstance.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self._serving or self._transport is None:
            return
        now = asyncio.get_running_loop().time()
        client = self._flows.get(addr)
        if client is None:
            if not self._slots.take():
                self._on_drop(Drop.MAX_FLOWS, 1)
                return
            client = self._new_flow(addr, now)
        client.last_active = now
        client.flow.datagram_in(data)

    def error_received(self, exc: Exception) -> None:
        """The other flows go on (see ``count_too_large``)."""
        count_too_large(exc, self._on_drop)

    def _new_flow(self, addr: Any, now: float) -> FlowClient:
        assert self._transport is not None
        send = bounded_sender(self._transport, self._on_drop, addr)

        def send_and_touch(datagram: bytes) -> None:
            client.last_active = asyncio.get_running_loop().time()
            send(datagram)

        flow = DatagramFlow(
            send=send_and_touch,
            peername=addr,
            queue_datagrams=UDP_QUEUE_DATAGRAMS,
            on_drop=self._on_drop,
            on_end=lambda ended: self._ended(addr, ended),
        )
        client = FlowClient(flow, self._slots, now)
        self._flows[addr] = client
        flow.start(client)
        client.task = asyncio.create_task(self._serve(client, self.key))
        return client

    def _ended(self, addr: Any, flow: DatagramFlow) -> None:
        client = self._flows.get(addr)
        if client is not None and client.flow is flow:
            del self._flows[addr]

    async def _sweep(self) -> None:
        """End flows idle for the timeout; a flow still there a timeout after it was asked
        to end quietly (its tunnel never answered) is closed."""
        timeout = self._idle_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(timeout / 2)
            now = loop.time()
            for client in list(self._flows.values()):
                idle_s = now - client.last_active
                if client.flow.is_finishing and idle_s >= 2 * timeout:
                    client.flow.close()
                elif idle_s >= timeout and not client.flow.is_finishing:
                    log.info(
                        "import %s flow client=%s: idle for %gs, ended",
                        self.key,
                        format_peername(client.flow.get_extra_info("peername")),
                        timeout,
                    )
                    client.flow.finish()


async def bind_udp(
    host: str, port: int, make: Callable[[], UdpImportSocket], family: int
) -> UdpImportSocket:
    """The UDP socket of an Import, bound and not yet serving; ``OSError`` as binding has."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(make, local_addr=(host, port), family=family)
    return protocol

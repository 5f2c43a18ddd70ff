"""Import listeners: the local ports that stand for remote services.

Each Import gets one listener on ``--import-host``. A client connection is accepted with
reading paused (no client byte is read before the tunnel exists), admitted against the
listener's ``max_connections`` (over it: reset at once), and handed to ``Egress``, which does
the rest of the source side of DESIGN §5. A client holds its listener slot until it ends.
A UDP Import gets a UDP socket instead, whose client addresses become flows that take the
same path (``udp_listener``).

Binding is two-phase so that an ``apply`` stays all-or-nothing: ``prepare`` binds the sockets
an apply needs without serving on them, the caller stores the resources, then ``commit``
starts serving (and closes listeners of replaced ports) or ``abort`` closes what was bound.
A port that is taken makes ``prepare`` fail with a ``ConflictError`` before anything is
stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from clusterlink.addresses import format_address, format_peername
from clusterlink.api import Import
from clusterlink.dataplane.egress import Egress
from clusterlink.dataplane.limits import Limit, Limits, Slots
from clusterlink.dataplane.relay import Parked, reset
from clusterlink.dataplane.udp_listener import UdpImportSocket, bind_udp
from clusterlink.errors import ConflictError
from clusterlink.ids import NamespacedName, ServiceProtocol

__all__ = ["ImportListeners", "PreparedBinding"]

log = logging.getLogger("clusterlink.egress")


@dataclass(slots=True)
class _Listener:
    key: NamespacedName
    server: asyncio.Server | UdpImportSocket
    port: int
    listen: str  # "host:port" as bound
    protocol: ServiceProtocol = "TCP"

    def close(self) -> None:
        self.server.close()


@dataclass(slots=True)
class PreparedBinding:
    """Sockets bound for an apply, not yet serving. Exactly one of commit/abort follows."""

    owner: ImportListeners
    new: dict[NamespacedName, _Listener] = field(default_factory=dict)

    @property
    def listen(self) -> dict[NamespacedName, str]:
        return {key: lst.listen for key, lst in self.new.items()}

    async def commit(self) -> None:
        await self.owner._commit(self.new)

    def abort(self) -> None:
        for key, lst in self.new.items():
            lst.close()
            if key not in self.owner._listeners:  # it never served: nothing to report
                self.owner.limits.forget_listener(_listener_name(key))


class ImportListeners:
    """One listener per Import, reconciled with the resources."""

    def __init__(
        self,
        *,
        host: str,
        egress: Egress,
        limits: Limits,
        port_of: Callable[[Import], int] = lambda imp: imp.spec.listen_port,
        udp_idle_timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.egress = egress
        self.limits = limits
        # Standalone: targetPort if set, else port (0: lease one). Kubernetes mode: the
        # targetPort only (port is the Service's), and 0 means not leased yet.
        self.port_of = port_of
        self._listeners: dict[NamespacedName, _Listener] = {}
        self.udp_idle_timeout_s = udp_idle_timeout_s  # a UDP flow idle this long ends

    def listen_address(self, key: NamespacedName) -> str | None:
        lst = self._listeners.get(key)
        return lst.listen if lst else None

    async def prepare(
        self, imports: Iterable[Import], *, leased: Mapping[NamespacedName, int] | None = None
    ) -> PreparedBinding:
        """Bind what ``imports`` need that is not bound yet (port 0: a leased or free port).

        ``leased`` holds ports recorded for port-0 imports (after a restart: the same port
        again if it is free, otherwise a new one).
        """
        prepared = PreparedBinding(self)
        try:
            for imp in imports:
                key = imp.metadata.key
                current = self._listeners.get(key)
                want = self.port_of(imp)
                same_protocol = current is not None and current.protocol == imp.spec.protocol
                if current is not None and same_protocol and (want in (0, current.port)):
                    continue  # already serving where it should
                leased_port = (leased or {}).get(key, 0)
                prepared.new[key] = await self._bind(key, want, leased_port, imp.spec.protocol)
        except BaseException:
            prepared.abort()
            raise
        return prepared

    async def _bind(
        self, key: NamespacedName, port: int, leased: int, protocol: ServiceProtocol
    ) -> _Listener:
        loop = asyncio.get_running_loop()
        candidates = [port] if port else ([leased, 0] if leased else [0])
        slots = self.limits.listener(_listener_name(key))
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for i, candidate in enumerate(candidates):
            try:
                server: asyncio.Server | UdpImportSocket
                if protocol == "UDP":
                    server = await bind_udp(
                        self.host,
                        candidate,
                        lambda: UdpImportSocket(
                            key,
                            serve=self.egress.serve,
                            slots=slots,
                            idle_timeout_s=self.udp_idle_timeout_s,
                            on_drop=self.egress.count_udp_drop,
                        ),
                        family,
                    )
                else:
                    server = await loop.create_server(
                        lambda: _ImportSession(self, key, slots),
                        self.host,
                        candidate,
                        family=family,
                        reuse_address=True,
                        backlog=1024,
                        start_serving=False,
                    )
            except OSError as exc:
                if i + 1 < len(candidates):
                    continue  # the leased port was taken meanwhile: lease another
                where = format_address((self.host, candidate))
                raise ConflictError(
                    f"import {key}: cannot listen on {where}: "
                    f"{(exc.strerror or str(exc)).lower()}; choose another spec.port"
                ) from exc
            bound = server.sockets[0].getsockname()
            return _Listener(key, server, bound[1], format_address(bound), protocol)
        raise AssertionError("no candidate port")  # candidates is never empty

    async def _commit(self, new: dict[NamespacedName, _Listener]) -> None:
        for key, lst in new.items():
            old = self._listeners.pop(key, None)
            if old is not None:
                old.close()
            self._listeners[key] = lst
            await lst.server.start_serving()
            udp = " (UDP)" if lst.protocol == "UDP" else ""
            log.info("import %s listening on %s%s", key, lst.listen, udp)

    def close_removed(self, keep: Iterable[NamespacedName]) -> None:
        """Close listeners of Imports that no longer exist (existing tunnels go on)."""
        keep = set(keep)
        for key in [k for k in self._listeners if k not in keep]:
            lst = self._listeners.pop(key)
            lst.close()
            self.egress.forget(key)
            self.limits.forget_listener(_listener_name(key))
            log.info("import %s deleted: stopped listening on %s", key, lst.listen)

    async def close(self) -> None:
        for lst in self._listeners.values():
            lst.close()
        self._listeners.clear()


def _listener_name(key: NamespacedName) -> str:
    """An import listener in ``clusterlink_connections_open{listener}``."""
    return f"import:{key}"


class _ImportSession(Parked):
    """Protocol of a client connection until the relay takes it over (``egress``'s
    ``ClientConnection``).

    It holds the client's slot of its listener (``slots``) while it is the connection's
    protocol, and gives it back when the connection is lost; a relay that takes the
    connection over takes the slot with it (``hand_over_slot``).
    """

    def __init__(self, listeners: ImportListeners, key: NamespacedName, slots: Slots) -> None:
        super().__init__()
        self.listeners = listeners
        self.key = key
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.task: asyncio.Task[None] | None = None
        self._heard: asyncio.Future[None] | None = None
        self._slots = slots
        self._holds_slot = False

    def hand_over_slot(self) -> Slots:
        """The slot now belongs to the caller, who gives it back when the client is gone."""
        self._holds_slot = False
        return self._slots

    async def reset_when_heard(self, grace_s: float) -> None:
        """Reset this refused client once it has sent something (or EOF), or after ``grace_s``.

        Why wait: on a fast path (say, an egress default deny on loopback) an immediate RST
        can reach the client while its own non-blocking ``connect()`` is still being
        completed, and it then reports a confusing connect error instead of a reset. Nothing
        the client sends meanwhile goes anywhere.
        """
        if not (self.early or self.eof or self.is_lost):
            self._heard = asyncio.get_running_loop().create_future()
            self.transport.resume_reading()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await self._heard
        if not self.is_lost:
            reset(self.transport)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._hear()

    def eof_received(self) -> bool:
        self._hear()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._holds_slot:
            self._holds_slot = False
            self._slots.give_back()
        self._hear()

    def _hear(self) -> None:
        if self._heard is not None and not self._heard.done():
            self._heard.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.accepted_at = asyncio.get_running_loop().time()
        self.transport = cast(asyncio.Transport, transport)
        if not self._slots.take():
            self.listeners.limits.hit(
                Limit.MAX_CONNECTIONS,
                _listener_name(self.key),
                "import %s reset client %s: %d connections are open, the limit (--max-connections)",
                self.key,
                format_peername(transport.get_extra_info("peername")),
                self._slots.maximum,
            )
            reset(self.transport)
            return
        self._holds_slot = True
        self.task = asyncio.create_task(self.listeners.egress.serve(self, self.key))

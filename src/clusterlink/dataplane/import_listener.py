"""Import listeners: the local TCP ports that stand for remote services.

Sequence for one client connection (the source side of DESIGN §5):

    accept (reading paused: no client byte is read before the tunnel exists)
    -> the Import as it is *now* (changes apply to the next connection)
    -> sources in load-balancer order; for each: egress policy -> CONNECT via the peer's
       warm pool (its gateways that answered the latest heartbeat first) -> verdict; a
       denied, missing, refused or unreachable source is skipped
    -> the first source that answers 200 becomes the tunnel: relay client <-> peer connection
    -> none did: the client gets a TCP RST (once it has spoken, or after a short grace, see
       ``reset_when_heard``) and the log says why, per source.

Limits (``dataplane.limits``): a listener with ``max_connections`` clients already resets the
next one at once; a source whose peer has ``max_connections_per_peer`` tunnels open or
opening is skipped like an unreachable one. A client holds its listener slot, and a tunnel
its peer slot, until it ends.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, cast

from clusterlink.api import Gateway, Import, ImportSource
from clusterlink.controlplane.authz import LocalPeer, egress_decision, egress_source_attributes
from clusterlink.controlplane.catalog import Catalog, NamespacedName
from clusterlink.controlplane.loadbalancer import LoadBalancer
from clusterlink.dataplane.connector import PeerConnector, TunnelRefused
from clusterlink.dataplane.limits import Limit, Limits, Slots
from clusterlink.dataplane.relay import Parked, RelayResult, reset
from clusterlink.dataplane.tunnels import TunnelRegistry
from clusterlink.errors import ClusterLinkError, ConflictError, PeerUnreachable
from clusterlink.metrics import GatewayMetrics
from clusterlink.protocol import ExportRef
from clusterlink.transport.dial import format_address
from clusterlink.transport.mux import StreamTransport

__all__ = ["ImportListeners", "PeerView", "PreparedBinding"]

log = logging.getLogger("clusterlink.egress")


class PeerView(Protocol):
    """What the import path needs to know about remote peers at connection time."""

    def is_unreachable(self, peer: str) -> bool: ...

    def is_silent(self, peer: str) -> bool: ...

    def labels_of(self, peer: str) -> Mapping[str, str]: ...

    def gateways_in_order(self, peer: str, gateways: Sequence[Gateway]) -> list[Gateway]: ...


@dataclass(slots=True)
class _Listener:
    key: NamespacedName
    server: asyncio.Server
    port: int
    listen: str  # "host:port" as bound

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
        catalog: Catalog,
        local: LocalPeer,
        peers: PeerView,
        connector: PeerConnector,
        tunnels: TunnelRegistry,
        metrics: GatewayMetrics,
        limits: Limits,
        refuse_grace_s: float,
    ) -> None:
        self.host = host
        self.refuse_grace_s = refuse_grace_s
        self.metrics = metrics
        self.limits = limits
        self.catalog = catalog
        self.local = local
        self.peers = peers
        self.connector = connector
        self.tunnels = tunnels
        self.balancer = LoadBalancer()
        self._listeners: dict[NamespacedName, _Listener] = {}

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
                key = (imp.metadata.namespace, imp.metadata.name)
                current = self._listeners.get(key)
                want = imp.spec.port
                if current is not None and (want in (0, current.port)):
                    continue  # already serving where it should
                prepared.new[key] = await self._bind(key, want, (leased or {}).get(key, 0))
        except BaseException:
            prepared.abort()
            raise
        return prepared

    async def _bind(self, key: NamespacedName, port: int, leased: int) -> _Listener:
        loop = asyncio.get_running_loop()
        candidates = [port] if port else ([leased, 0] if leased else [0])
        slots = self.limits.listener(_listener_name(key))
        for i, candidate in enumerate(candidates):
            try:
                server = await loop.create_server(
                    lambda: _ImportSession(self, key, slots),
                    self.host,
                    candidate,
                    family=socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                    reuse_address=True,
                    backlog=1024,
                    start_serving=False,
                )
            except OSError as exc:
                if i + 1 < len(candidates):
                    continue  # the leased port was taken meanwhile: lease another
                where = format_address((self.host, candidate))
                raise ConflictError(
                    f"import {key[0]}/{key[1]}: cannot listen on {where}: "
                    f"{(exc.strerror or str(exc)).lower()}; choose another spec.port"
                ) from exc
            bound = server.sockets[0].getsockname()
            return _Listener(key, server, bound[1], format_address(bound))
        raise AssertionError("no candidate port")  # candidates is never empty

    async def _commit(self, new: dict[NamespacedName, _Listener]) -> None:
        for key, lst in new.items():
            old = self._listeners.pop(key, None)
            if old is not None:
                old.close()
            self._listeners[key] = lst
            await lst.server.start_serving()
            log.info("import %s/%s listening on %s", key[0], key[1], lst.listen)

    def close_removed(self, keep: Iterable[NamespacedName]) -> None:
        """Close listeners of Imports that no longer exist (existing tunnels go on)."""
        keep = set(keep)
        for key in [k for k in self._listeners if k not in keep]:
            lst = self._listeners.pop(key)
            lst.close()
            self.balancer.forget(key)
            self.limits.forget_listener(_listener_name(key))
            log.info("import %s/%s deleted: stopped listening on %s", key[0], key[1], lst.listen)

    async def close(self) -> None:
        for lst in self._listeners.values():
            lst.close()
        self._listeners.clear()

    # -- one client connection -------------------------------------------------------------

    async def serve(self, session: _ImportSession, key: NamespacedName) -> None:
        client = session.transport
        peername = client.get_extra_info("peername")
        client_ip = peername[0] if peername else "?"
        resource = f"{key[0]}/{key[1]}"
        what = f"import={resource} client={format_address(peername) if peername else '?'}"
        metrics = self.metrics
        snapshot = self.catalog.snapshot
        imp = snapshot.imports.get(key)
        if imp is None:
            log.info("egress refused %s: the import was deleted", what)
            metrics.connections.labels("egress", resource, "", "failed").inc()
            await session.reset_when_heard(self.refuse_grace_s)
            return
        src = egress_source_attributes(self.local, client_ip)
        failures: list[str] = []
        only_denials = True
        order = self.balancer.order(key, imp.spec.sources, imp.spec.lb_scheme, self._try_last)
        for source in order:
            target = _describe(source)
            peer = snapshot.peers.get(source.peer)
            if peer is None:
                failures.append(f"{target}: no Peer named {source.peer!r} is defined")
                only_denials = False
                continue
            decision = egress_decision(
                snapshot, imp, source, src, self.peers.labels_of(source.peer)
            )
            metrics.decisions.labels("egress", decision.action.value, decision.decided_by).inc()
            if not decision.is_allowed:
                failures.append(f"{target}: {decision}")
                continue
            ref = ExportRef(source.export_namespace, source.export_name)
            try:
                gateways = self.peers.gateways_in_order(source.peer, peer.spec.gateways)
                tunnel, early = await self._open(source.peer, gateways, ref, src, what)
            except TunnelRefused as exc:
                failures.append(f"{target}: {exc}")
                only_denials = only_denials and exc.verdict.status == 403
                continue
            except ClusterLinkError as exc:
                failures.append(f"{target}: {exc}")
                only_denials = False
                continue
            if session.is_lost:
                tunnel.abort()
                self.limits.peer_tunnels.give_back(source.peer)
                log.info("egress abandoned %s: the client left during set-up", what)
                metrics.connections.labels("egress", resource, source.peer, "abandoned").inc()
                return
            mode = "mux" if isinstance(tunnel, StreamTransport) else "basic"
            log.info("egress allowed %s source=%s mode=%s: %s", what, target, mode, decision)
            labels = ("egress", resource, source.peer)
            relay = self.tunnels.open(
                client,
                tunnel,
                self._on_close(what, target, session.hand_over_slot(), source.peer),
                labels,
                still_allowed=partial(self._still_allowed, key, source, src),
            )
            relay.start(to_client=early)
            metrics.connections.labels(*labels, "allowed").inc()
            metrics.setup_seconds.labels("egress").observe(
                asyncio.get_running_loop().time() - session.accepted_at
            )
            return
        log.info("egress refused %s: %s", what, "; ".join(failures))
        outcome = "denied" if only_denials else "failed"
        metrics.connections.labels("egress", resource, "", outcome).inc()
        await session.reset_when_heard(self.refuse_grace_s)

    async def _open(
        self,
        peer: str,
        gateways: Sequence[Gateway],
        ref: ExportRef,
        src: Mapping[str, str],
        what: str,
    ) -> tuple[asyncio.Transport, bytes]:
        """A tunnel to ``peer`` that holds one of its tunnel slots (given back if this fails;
        the tunnel's ``on_close`` gives it back otherwise)."""
        peer_tunnels = self.limits.peer_tunnels
        if not peer_tunnels.take(peer):
            why = (
                f"{peer_tunnels.maximum} tunnels to and from peer {peer} are open or opening, "
                "the limit (--max-connections-per-peer)"
            )
            self.limits.hit(Limit.MAX_CONNECTIONS_PER_PEER, peer, "egress %s: %s", what, why)
            raise PeerUnreachable(why)
        try:
            return await self.connector.open(peer, gateways, ref, src)
        except BaseException:
            peer_tunnels.give_back(peer)
            raise

    def _try_last(self, source: ImportSource) -> bool:
        """Unreachable, or silent at the latest heartbeat: its turn comes after the others."""
        return self.peers.is_unreachable(source.peer) or self.peers.is_silent(source.peer)

    def _still_allowed(
        self, key: NamespacedName, source: ImportSource, src: Mapping[str, str]
    ) -> bool:
        """Would this tunnel be opened now? (Import, source, Peer and egress policy.)"""
        snapshot = self.catalog.snapshot
        imp = snapshot.imports.get(key)
        if imp is None or source not in imp.spec.sources or source.peer not in snapshot.peers:
            return False
        labels = self.peers.labels_of(source.peer)
        return egress_decision(snapshot, imp, source, src, labels).is_allowed

    def _on_close(
        self, what: str, target: str, slots: Slots, peer: str
    ) -> Callable[[RelayResult], None]:
        """The end of a tunnel: its client's listener slot and its peer slot are free again."""
        loop = asyncio.get_running_loop()
        started = loop.time()

        def on_close(result: RelayResult) -> None:
            slots.give_back()
            self.limits.peer_tunnels.give_back(peer)
            log.info(
                "egress closed %s source=%s bytes_up=%d bytes_down=%d duration_s=%.3f%s",
                what,
                target,
                result.bytes_up,
                result.bytes_down,
                loop.time() - started,
                f" error={result.error!r}" if result.error else "",
            )

        return on_close


def _describe(source: ImportSource) -> str:
    return f"{source.peer}/{source.export_namespace}/{source.export_name}"


def _listener_name(key: NamespacedName) -> str:
    """An import listener in ``clusterlink_connections_open{listener}``."""
    return f"import:{key[0]}/{key[1]}"


class _ImportSession(Parked):
    """Protocol of a client connection until the relay takes it over.

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
            peername = transport.get_extra_info("peername")
            client = format_address(peername) if peername else "?"
            self.listeners.limits.hit(
                Limit.MAX_CONNECTIONS,
                _listener_name(self.key),
                "import %s/%s reset client %s: %d connections are open, the limit "
                "(--max-connections)",
                *self.key,
                client,
                self._slots.maximum,
            )
            reset(self.transport)
            return
        self._holds_slot = True
        self.task = asyncio.create_task(self.listeners.serve(self, self.key))

"""Egress: one client connection on an Import, from accept to relay (DESIGN §5, source side).

The sequence, once the import listener has accepted the client (reading paused: no client
byte is read before the tunnel exists):

    the Import as it is *now* (changes apply to the next connection)
    -> its sources in load-balancer order; for each, an *attempt*:
         the source's Peer exists -> egress policy -> a tunnel slot for the peer
         -> open the tunnel through the ``PeerConnector`` (the peer's gateways that answered
            the latest heartbeat first) -> the target gateway's verdict
       a denied, missing, refused or unreachable source is skipped, and the next one tried
    -> the first source that answers 200 becomes the tunnel: relay client <-> tunnel
    -> none did: the client is reset (see ``ClientConnection.reset_when_heard``).

Every attempt is logged at INFO with its outcome and counted in
``clusterlink_tunnel_attempts_total`` with its peer, so a failover leaves a trace of what it
skipped; the connection as a whole is counted once in ``clusterlink_connections_total``
(``peer``: the one that served it, or for a refused connection the one tried last). Its
refusal is INFO when only policies said no, WARNING when no source could answer (a fault).
Every line carries its facts as fields for ``--log-format json`` (``logs.fields``).

The decisions are pure calls into ``controlplane``; this module only sequences them and owns
nothing but the load balancer's rotation. Sockets are the listener's and the connector's.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from clusterlink.addresses import format_peername
from clusterlink.api import Gateway, Import, ImportSource
from clusterlink.controlplane.authz import (
    ClientIdentity,
    LocalPeer,
    egress_decision,
    egress_source_attributes,
)
from clusterlink.controlplane.catalog import Catalog, Snapshot
from clusterlink.controlplane.loadbalancer import LoadBalancer
from clusterlink.dataplane.connector import PeerConnector
from clusterlink.dataplane.limits import Limit, Limits, Slots
from clusterlink.dataplane.tunnels import TunnelInfo, TunnelRegistry
from clusterlink.dataplane.udp_flows import Drop
from clusterlink.errors import ClusterLinkError, PeerUnreachable, TunnelRefused
from clusterlink.flows import FlowRecord
from clusterlink.ids import NamespacedName, PeerName
from clusterlink.logs import fields
from clusterlink.metrics import GatewayMetrics
from clusterlink.policy import Decision
from clusterlink.protocol import PROTOCOL_ATTRIBUTE, ExportRef
from clusterlink.transport.mux import StreamTransport

__all__ = ["ClientConnection", "Egress", "PeerView"]

log = logging.getLogger("clusterlink.egress")


class PeerView(Protocol):
    """What the egress path needs to know about remote peers at connection time."""

    def is_unreachable(self, peer: PeerName) -> bool: ...

    def is_silent(self, peer: PeerName) -> bool: ...

    def labels_of(self, peer: PeerName) -> Mapping[str, str]: ...

    def gateways_in_order(self, peer: PeerName, gateways: Sequence[Gateway]) -> list[Gateway]: ...


class ClientConnection(Protocol):
    """The accepted client connection, as the import listener hands it over."""

    transport: asyncio.Transport
    early: bytearray  # what arrived while parked
    is_lost: bool
    accepted_at: float  # loop time

    def hand_over_slot(self) -> Slots: ...

    async def reset_when_heard(self, grace_s: float) -> None: ...


class Outcome(enum.Enum):
    """How one attempt at a source ended (the ``outcome`` label of the attempt metric)."""

    ALLOWED = "allowed"
    NO_PEER = "no_peer"  # the source names no Peer of this gateway
    DENIED = "denied"  # by our egress policy, or the target's ingress policy (403)
    NOT_FOUND = "not_found"  # the target has no such export (404)
    OVERLOADED = "overloaded"  # a limit, ours or the target's (503)
    UNREACHABLE = "unreachable"  # the target gateway or its service did not answer


_OUTCOME_OF_STATUS = {403: Outcome.DENIED, 404: Outcome.NOT_FOUND, 503: Outcome.OVERLOADED}


@dataclass(frozen=True, slots=True)
class _Failure:
    """An attempt that did not open a tunnel, and why (a sentence for the log)."""

    source: ImportSource
    outcome: Outcome
    reason: str
    policy: str = ""  # the policy that denied it, where ours did


@dataclass(slots=True)
class _Connection:
    """One client connection's walk through the sources of its Import."""

    snapshot: Snapshot  # the resources as they were when it arrived
    imp: Import
    src: Mapping[str, str]  # the client's attributes
    what: str  # "import=... client=...", the log lines' subject
    client: str  # the client's address, host:port
    failures: list[_Failure]


class Egress:
    """Serves the client connections of every Import listener of one gateway."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        local: LocalPeer,
        peers: PeerView,
        connector: PeerConnector,
        tunnels: TunnelRegistry,
        metrics: GatewayMetrics,
        limits: Limits,
        refuse_grace_s: float,
        identify: Callable[[str], ClientIdentity | None] = lambda _ip: None,
    ) -> None:
        self.catalog = catalog
        # Who the client at an address is, where the cluster knows (Kubernetes: its Pod).
        self.identify = identify
        self.local = local
        self.peers = peers
        self.connector = connector
        self.tunnels = tunnels
        self.metrics = metrics
        self.limits = limits
        self.refuse_grace_s = refuse_grace_s
        self.balancer = LoadBalancer()

    def count_udp_drop(self, reason: Drop, n: int) -> None:
        """Datagrams a UDP flow of an Import dropped (``clusterlink_udp_datagrams_dropped``)."""
        self.metrics.udp_dropped.labels(reason.value).inc(n)

    def forget(self, key: NamespacedName) -> None:
        """The Import was deleted: its load-balancer rotation goes with it."""
        self.balancer.forget(key)

    async def serve(self, client: ClientConnection, key: NamespacedName) -> None:
        transport = client.transport
        peername = transport.get_extra_info("peername")
        client_ip = peername[0] if peername else "?"
        client_text = format_peername(peername)
        what = f"import={key} client={client_text}"
        snapshot = self.catalog.snapshot
        imp = snapshot.imports.get(key)
        if imp is None:
            why = "the import was deleted"
            event = _fields("tunnel_refused", key, client_text, decision="failed", reason=why)
            log.info("egress refused %s: %s", what, why, extra=event)
            self.metrics.connections.labels("egress", str(key), "", "failed").inc()
            await client.reset_when_heard(self.refuse_grace_s)
            return
        src = egress_source_attributes(self.local, client_ip, self.identify(client_ip))
        if imp.spec.protocol != "TCP":  # absent means TCP to every gateway, old ones too
            src = {**src, PROTOCOL_ATTRIBUTE: imp.spec.protocol}
        walk = _Connection(snapshot, imp, src, what, client_text, [])
        order = self.balancer.order(key, imp.spec.sources, imp.spec.lb_scheme, self._try_last)
        for source in order:
            opened = await self._attempt(walk, source)
            if opened is None:
                continue
            tunnel, early, decision = opened
            if client.is_lost:
                tunnel.abort()
                self.limits.peer_tunnels.give_back(source.peer)
                why = "the client left during set-up"
                event = _fields("tunnel_abandoned", key, client_text, source, reason=why)
                log.info("egress abandoned %s: %s", what, why, extra=event)
                self._count(key, source.peer, "abandoned")
                return
            mode = "mux" if isinstance(tunnel, StreamTransport) else "basic"
            target = describe(source)
            event = _fields(
                "tunnel_opened",
                key,
                client_text,
                source,
                decision="allowed",
                policy=decision.decided_by,
            )
            log.info(
                "egress allowed %s source=%s mode=%s: %s", what, target, mode, decision, extra=event
            )
            setup_s = asyncio.get_running_loop().time() - client.accepted_at
            flow = self.tunnels.flows.add(
                FlowRecord(
                    direction="egress",
                    resource=str(key),
                    peer=source.peer,
                    client=format_peername(peername),
                    protocol=imp.spec.protocol,
                    decision="allowed",
                    policy=decision.decided_by,
                    setup_s=round(setup_s, 6),
                )
            )
            relay = self.tunnels.open(
                transport,
                tunnel,
                TunnelInfo(
                    direction="egress",
                    resource=str(key),
                    peer=source.peer,
                    what=f"{what} source={target}",
                    release=_Release(client.hand_over_slot(), self.limits, source.peer),
                    still_allowed=partial(
                        _allows, key=key, source=source, src=src, peers=self.peers
                    ),
                    flow=flow,
                    export=f"{source.export_namespace}/{source.export_name}",
                ),
            )
            relay.start(to_client=early)
            self._count(key, source.peer, "allowed")
            self.metrics.setup_seconds.labels("egress").observe(setup_s)
            return
        failures = walk.failures
        reasons = "; ".join(f"{describe(f.source)}: {f.reason}" for f in failures)
        only_denials = bool(failures) and all(f.outcome is Outcome.DENIED for f in failures)
        last_peer = failures[-1].source.peer if failures else ""
        why = reasons or "the import has no source"
        event = _fields(
            "tunnel_refused",
            key,
            client_text,
            failures[-1].source if failures else None,
            decision="denied" if only_denials else "failed",
            policy=next((f.policy for f in failures if f.policy), None),
            reason=why,
        )
        # A refusal by policy is the product working (INFO); no source that could answer is a
        # fault someone has to look at (WARNING).
        level = logging.INFO if only_denials else logging.WARNING
        log.log(level, "egress refused %s: %s", what, why, extra=event)
        self._count(key, last_peer, "denied" if only_denials else "failed")
        self.tunnels.flows.add(
            FlowRecord(
                direction="egress",
                resource=str(key),
                peer=last_peer,
                client=format_peername(peername),
                protocol=imp.spec.protocol,
                decision="denied" if only_denials else "failed",
                policy=next((f.policy for f in failures if f.policy), ""),
                reason=why,
            )
        )
        await client.reset_when_heard(self.refuse_grace_s)

    async def _attempt(
        self, walk: _Connection, source: ImportSource
    ) -> tuple[asyncio.Transport, bytes, Decision] | None:
        """Try one source: the tunnel, the bytes behind its 200 and the egress decision; or
        None, with the failure logged, counted and added to ``walk.failures``."""
        snapshot, imp = walk.snapshot, walk.imp
        peer = snapshot.peers.get(source.peer)
        if peer is None:
            reason = f"no Peer named {source.peer!r} is defined"
            self._failed(walk, _Failure(source, Outcome.NO_PEER, reason))
            return None
        labels = self.peers.labels_of(source.peer)
        decision = egress_decision(snapshot, imp, source, walk.src, labels)
        self.metrics.decisions.labels("egress", decision.action.value, decision.decided_by).inc()
        if not decision.is_allowed:
            failure = _Failure(source, Outcome.DENIED, str(decision), decision.decided_by)
            self._failed(walk, failure)
            return None
        ref = ExportRef(source.export_namespace, source.export_name)
        try:
            gateways = self.peers.gateways_in_order(source.peer, peer.spec.gateways)
            tunnel, early = await self._open(
                source.peer, gateways, ref, walk.src, walk.what, dials_in=peer.spec.dials_in
            )
        except TunnelRefused as exc:
            outcome = _OUTCOME_OF_STATUS.get(exc.status, Outcome.UNREACHABLE)
            self._failed(walk, _Failure(source, outcome, str(exc)))
            return None
        except ClusterLinkError as exc:
            outcome = Outcome.OVERLOADED if isinstance(exc, _PeerBusy) else Outcome.UNREACHABLE
            self._failed(walk, _Failure(source, outcome, str(exc)))
            return None
        self._count_attempt(imp, source.peer, Outcome.ALLOWED)
        return tunnel, early, decision

    def _failed(self, walk: _Connection, failure: _Failure) -> None:
        """Log and count a failed attempt; the walk goes on with the next source."""
        walk.failures.append(failure)
        self._count_attempt(walk.imp, failure.source.peer, failure.outcome)
        event = _fields(
            "tunnel_attempt_failed",
            walk.imp.metadata.key,
            walk.client,
            failure.source,
            decision="denied" if failure.outcome is Outcome.DENIED else "failed",
            policy=failure.policy or None,
            reason=f"{failure.outcome.value}: {failure.reason}",
        )
        log.info(
            "egress attempt %s source=%s: %s (%s)",
            walk.what,
            describe(failure.source),
            failure.outcome.value.replace("_", " "),
            failure.reason,
            extra=event,
        )

    async def _open(
        self,
        peer: PeerName,
        gateways: Sequence[Gateway],
        ref: ExportRef,
        src: Mapping[str, str],
        what: str,
        *,
        dials_in: bool,
    ) -> tuple[asyncio.Transport, bytes]:
        """A tunnel to ``peer`` that holds one of its tunnel slots (given back if this fails;
        the tunnel's ``release`` gives it back otherwise)."""
        peer_tunnels = self.limits.peer_tunnels
        if not peer_tunnels.take(peer):
            why = (
                f"{peer_tunnels.maximum} tunnels to and from peer {peer} are open or opening, "
                "the limit (--max-connections-per-peer)"
            )
            self.limits.hit(Limit.MAX_CONNECTIONS_PER_PEER, peer, "egress %s: %s", what, why)
            raise _PeerBusy(why)
        try:
            return await self.connector.open(peer, gateways, ref, src, dials_in=dials_in)
        except BaseException:
            peer_tunnels.give_back(peer)
            raise

    def _try_last(self, source: ImportSource) -> bool:
        """Unreachable, or silent at the latest heartbeat: its turn comes after the others'.

        A peer that said it has no Peer for us keeps its place: a Peer created there is
        known here only at the next heartbeat, and trying it costs one round trip, while
        passing it over would send a primary's traffic to its backup for that long.
        """
        return self.peers.is_unreachable(source.peer) or self.peers.is_silent(source.peer)

    def _count(self, key: NamespacedName, peer: str, outcome: str) -> None:
        self.metrics.connections.labels("egress", str(key), peer, outcome).inc()

    def _count_attempt(self, imp: Import, peer: str, outcome: Outcome) -> None:
        resource = str(imp.metadata.key)
        self.metrics.tunnel_attempts.labels("egress", resource, peer, outcome.value).inc()


class _PeerBusy(PeerUnreachable):
    """Our own per-peer tunnel limit is reached."""


def _allows(
    snapshot: Snapshot,
    *,
    key: NamespacedName,
    source: ImportSource,
    src: Mapping[str, str],
    peers: PeerView,
) -> bool:
    """Would this tunnel be opened now? (Import, source, Peer and egress policy.)"""
    imp = snapshot.imports.get(key)
    if imp is None or source not in imp.spec.sources or source.peer not in snapshot.peers:
        return False
    return egress_decision(snapshot, imp, source, src, peers.labels_of(source.peer)).is_allowed


@dataclass(frozen=True, slots=True)
class _Release:
    """Gives back what an egress tunnel holds: its client's listener slot and its peer slot."""

    slots: Slots
    limits: Limits
    peer: PeerName

    def __call__(self) -> None:
        self.slots.give_back()
        self.limits.peer_tunnels.give_back(self.peer)


def _fields(
    event: str,
    key: NamespacedName,
    client: str,
    source: ImportSource | None = None,
    *,
    decision: str | None = None,
    policy: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The JSON fields of an egress log line (``logs.fields``)."""
    return fields(
        event,
        direction="egress",
        import_=str(key),
        export=f"{source.export_namespace}/{source.export_name}" if source else None,
        peer=source.peer if source else None,
        client=client,
        decision=decision,
        policy=policy,
        reason=reason,
    )


def describe(source: ImportSource) -> str:
    """``peer/namespace/export``: a source as the log names it."""
    return f"{source.peer}/{source.export_namespace}/{source.export_name}"

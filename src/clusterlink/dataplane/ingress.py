"""Ingress: one request for a tunnel from another gateway, from decision to relay (DESIGN §5,
target side).

The sequence, shared by both tunnel modes (a basic-mode CONNECT, a mux OPEN):

    the caller, by the peer name of its *verified certificate*, is a defined Peer (403)
    -> the export it asks for exists (404)
    -> the ingress policy allows it (403)
    -> a tunnel slot for the caller (503, ``--max-connections-per-peer``)
    -> dial the export's service (502)
    -> the caller's listener answers 200 and the tunnel is relayed to the service

Nothing from the caller reaches the service before the ``200``. The decisions are pure calls
into ``controlplane``; this module sequences them and dials the service, nothing else (the
connections from other gateways are the peer listener's). One log line per refused or opened
tunnel (rate-limited per caller: decisions are an audit trail, so their budget is large), and
one when it ends (``tunnels``), each with its facts as fields for ``--log-format json``: INFO,
but WARNING when the service cannot be reached (a fault here, not a decision). A refused Peer
still gets its heartbeats answered: they reveal only name and labels, and tell the caller that
it is not peered here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from clusterlink.addresses import Address, format_address
from clusterlink.api import Export
from clusterlink.controlplane.authz import LocalPeer, ingress_decision
from clusterlink.controlplane.catalog import Catalog, Snapshot
from clusterlink.dataplane.limits import Limit, Limits
from clusterlink.dataplane.relay import Parked
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.dataplane.tunnels import TunnelInfo, TunnelRegistry
from clusterlink.dataplane.udp_flows import UDP_QUEUE_DATAGRAMS, Drop, dial_udp
from clusterlink.errors import ClusterLinkError, ValidationError
from clusterlink.flows import FlowRecord
from clusterlink.ids import PeerName
from clusterlink.log_throttle import LogThrottle
from clusterlink.logs import fields
from clusterlink.metrics import GatewayMetrics
from clusterlink.policy import CLIENT_IP
from clusterlink.protocol import PROTOCOL_ATTRIBUTE, ConnectRequest, ExportRef, Verdict
from clusterlink.protocol.mux import StreamRequest
from clusterlink.transport.dial import dial_tcp
from clusterlink.transport.mux import MuxSession

__all__ = ["Ingress", "OpenedTunnel", "export_address"]

log = logging.getLogger("clusterlink.ingress")

# Lines per caller and 10 s window: ingress decisions are an audit trail (see the docstring).
_DECISIONS_BURST = 100


def export_address(export: Export) -> Address:
    """The service of an Export as it names it (host and port both given)."""
    if not export.spec.host or not export.spec.port:
        raise ValidationError(
            f"export {export.metadata.key} names no host and port, and this gateway has no "
            "Kubernetes Service to look them up"
        )
    return export.spec.host, export.spec.port


@dataclass(slots=True)
class OpenedTunnel:
    """An allowed request whose service is connected: its caller answers 200 and relays."""

    service: asyncio.Transport
    caller: PeerName  # holds one of the caller's tunnel slots until the tunnel ends
    request: ConnectRequest
    what: str  # "peer=... export=... client=..."
    started: float  # loop time the request arrived
    policy: str  # the ingress policy that allowed it


class Ingress:
    """Decides and serves the tunnel requests of other gateways."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        local: LocalPeer,
        tunnels: TunnelRegistry,
        settings: DataplaneSettings,
        metrics: GatewayMetrics,
        limits: Limits,
        locate: Callable[[Export], Address] | None = None,
    ) -> None:
        self.catalog = catalog
        # Where an export's service is: its host and port as written (standalone), or what
        # its Kubernetes Service says (Kubernetes mode).
        self.locate = locate or export_address
        self.local = local
        self.tunnels = tunnels
        self.settings = settings
        self.metrics = metrics
        self.limits = limits
        self._decisions = LogThrottle(log, burst=_DECISIONS_BURST)
        self._setups: set[asyncio.Task[None]] = set()  # mux streams being decided

    async def open(self, caller: PeerName, request: ConnectRequest) -> Verdict | OpenedTunnel:
        """Decide and, if allowed, connect the service; a refusal is already logged."""
        metrics = self.metrics
        started = asyncio.get_running_loop().time()
        snapshot = self.catalog.snapshot
        ref = request.export
        resource = str(ref)
        client = request.attributes.get(CLIENT_IP, "?")
        what = f"peer={caller} export={ref} client={client}"

        def event(name: str, decision: str, policy: str = "", reason: str = "") -> dict[str, Any]:
            return fields(
                name,
                direction="ingress",
                export=resource,
                peer=caller,
                client=client,
                decision=decision,
                policy=policy or None,
                reason=reason or None,
            )

        def refused(outcome: str, verdict: Verdict, policy: str = "") -> Verdict:
            metrics.connections.labels("ingress", resource, caller, outcome).inc()
            self.tunnels.flows.add(
                FlowRecord(
                    direction="ingress",
                    resource=resource,
                    peer=caller,
                    client=client,
                    decision="denied" if verdict.status == 403 else "failed",
                    policy=policy,
                    reason=verdict.message or verdict.reason,
                )
            )
            return verdict

        if caller not in snapshot.peers:
            message = f"peer {caller} is not a Peer of {self.local.name}"
            extra = event("tunnel_refused", "denied", reason=message)
            self._log(
                caller,
                "ingress denied %s: %s is not a Peer of this gateway",
                what,
                caller,
                extra=extra,
            )
            return refused("denied", Verdict.denied(message))
        export = snapshot.exports.get(ref.key)
        if export is None:
            extra = event("tunnel_refused", "failed", reason="no such export")
            self._log(caller, "ingress refused %s: no such export", what, extra=extra)
            return refused("not_found", Verdict.not_found(f"no export {ref}"))
        if request.protocol != export.spec.protocol:
            theirs = request.protocol or request.attributes.get(PROTOCOL_ATTRIBUTE, "?")
            message = (
                f"export {ref} is {export.spec.protocol}, the import {theirs}: "
                f"set the Import's spec.protocol to {export.spec.protocol}"
            )
            extra = event("tunnel_refused", "failed", reason=message)
            self._log(caller, "ingress refused %s: %s", what, message, extra=extra)
            return refused("not_found", Verdict.not_found(message))
        decision = ingress_decision(snapshot, self.local, export, caller, request.attributes)
        metrics.decisions.labels("ingress", decision.action.value, decision.decided_by).inc()
        if not decision.is_allowed:
            extra = event("tunnel_refused", "denied", decision.decided_by, str(decision))
            self._log(caller, "ingress denied %s: %s", what, decision, extra=extra)
            message = f"denied by the ingress policy of peer {self.local.name}"
            return refused("denied", Verdict.denied(message), decision.decided_by)
        peer_tunnels = self.limits.peer_tunnels
        if not peer_tunnels.take(caller):
            message = (
                f"peer {caller} has {peer_tunnels.maximum} tunnels open or opening at "
                f"{self.local.name}, its limit (--max-connections-per-peer)"
            )
            self.limits.hit(
                Limit.MAX_CONNECTIONS_PER_PEER, caller, "ingress refused %s: %s", what, message
            )
            return refused("overloaded", Verdict.overloaded(message))

        def failed(exc: ClusterLinkError) -> Verdict:
            """The service could not be found or reached: a fault here, so WARNING."""
            peer_tunnels.give_back(caller)
            extra = event("tunnel_refused", "failed", decision.decided_by, str(exc))
            self._log(
                caller,
                "ingress failed %s (%s): %s",
                what,
                decision,
                exc,
                extra=extra,
                level=logging.WARNING,
            )
            return refused("unreachable", Verdict.unreachable(str(exc)))

        try:
            service_addr = self.locate(export)
        except ClusterLinkError as exc:
            return failed(exc)
        try:
            service: asyncio.Transport
            if export.spec.protocol == "UDP":
                service = await dial_udp(
                    service_addr,
                    Parked(),
                    queue_datagrams=UDP_QUEUE_DATAGRAMS,
                    on_drop=self.count_udp_drop,
                    what=f"service of export {ref}",
                )
            else:
                service = await dial_tcp(
                    service_addr,
                    Parked(),
                    connect_timeout_s=self.settings.connect_timeout_s,
                    what=f"service of export {ref}",
                )
        except ClusterLinkError as exc:
            return failed(exc)
        except BaseException:  # cancelled: the caller's connection is gone
            peer_tunnels.give_back(caller)
            raise
        log.info(
            "ingress allowed %s service=%s: %s",
            what,
            format_address(service_addr),
            decision,
            extra=event("tunnel_opened", "allowed", decision.decided_by),
        )
        return OpenedTunnel(service, caller, request, what, started, decision.decided_by)

    def count_udp_drop(self, reason: Drop, n: int) -> None:
        self.metrics.udp_dropped.labels(reason.value).inc(n)

    def abandon(self, opened: OpenedTunnel) -> None:
        """An opened tunnel whose caller left before it could be answered."""
        opened.service.abort()
        self.limits.peer_tunnels.give_back(opened.caller)
        why = "the caller left during set-up"
        extra = fields(
            "tunnel_abandoned",
            direction="ingress",
            export=str(opened.request.export),
            peer=opened.caller,
            client=opened.request.attributes.get(CLIENT_IP, "?"),
            reason=why,
        )
        log.info("ingress abandoned %s: %s", opened.what, why, extra=extra)

    def relay(self, tunnel: asyncio.Transport, opened: OpenedTunnel, early: bytes = b"") -> None:
        """Relay an answered tunnel to its service (``early``: the caller's bytes that came
        right behind its request), and count it."""
        caller, request = opened.caller, opened.request
        resource = str(request.export)
        elapsed = asyncio.get_running_loop().time() - opened.started
        flow = self.tunnels.flows.add(
            FlowRecord(
                direction="ingress",
                resource=resource,
                peer=caller,
                client=request.attributes.get(CLIENT_IP, "?"),
                protocol=request.protocol or "TCP",
                decision="allowed",
                policy=opened.policy,
                setup_s=round(elapsed, 6),
            )
        )
        info = TunnelInfo(
            direction="ingress",
            resource=resource,
            peer=caller,
            what=opened.what,
            release=lambda: self.limits.peer_tunnels.give_back(caller),
            still_allowed=lambda snapshot: self._allows(
                snapshot, caller, request.export, request.attributes
            ),
            flow=flow,
        )
        self.tunnels.open(tunnel, opened.service, info).start(to_service=early)
        self.metrics.connections.labels("ingress", resource, caller, "allowed").inc()
        self.metrics.setup_seconds.labels("ingress").observe(elapsed)

    # -- multiplexed mode: every OPEN of a connection is a request ----------------------------

    def serve_stream(self, caller: PeerName, session: MuxSession, event: StreamRequest) -> None:
        task = asyncio.create_task(self._stream(caller, session, event))
        self._setups.add(task)  # a strong reference until it is done
        task.add_done_callback(self._setups.discard)

    async def _stream(self, caller: PeerName, session: MuxSession, event: StreamRequest) -> None:
        outcome = await self.open(caller, event.request)
        if isinstance(outcome, Verdict):
            session.refuse(event.stream_id, outcome)
            return
        stream = session.accept(event.stream_id)
        if stream is None:  # the caller gave up meanwhile
            self.abandon(outcome)
            return
        self.relay(stream, outcome)

    def close(self) -> None:
        """Stop deciding: requests under way are dropped (their connections are closing)."""
        for task in list(self._setups):
            task.cancel()

    # -- helpers ------------------------------------------------------------------------------

    def _allows(
        self, snapshot: Snapshot, caller: PeerName, ref: ExportRef, claimed: Mapping[str, str]
    ) -> bool:
        """Would this tunnel be accepted now? (Peer, Export and ingress policy.)"""
        export = snapshot.exports.get(ref.key)
        if export is None or caller not in snapshot.peers:
            return False
        return ingress_decision(snapshot, self.local, export, caller, claimed).is_allowed

    def _log(
        self,
        caller: PeerName,
        message: str,
        *args: object,
        extra: dict[str, Any],
        level: int = logging.INFO,
    ) -> None:
        self._decisions.log(level, caller, message, *args, extra=extra)

"""The inviting side of a link: issue invitations, and decide on the peers that present them.

``invite`` (admin API) makes a token for one named peer (``invitations``: what it holds and
why) and records only digests of it. ``accept`` answers a ``POST /link`` that arrived on the
peer listener (``dataplane.basic_session`` hands it over): the caller's name comes from its
verified certificate, and a Peer for it is created only when every check has passed:

    the request names the caller -> the token decodes and its id was issued here -> secret,
    token, expiry, uses, invited name (``check_presented``) -> the Peer the caller asks for
    and the one it will create for us are both valid -> no different Peer of that name here
    -> take a use (atomic: a race for the last use has one winner) -> create the Peer
    (on failure the use is given back)

Refusals go back as a ``Verdict`` with the reason (``tampered``, ``expired``, ``used``,
``wrong-peer``, ``unknown-invitation``, ``conflict``, ``malformed``) and a sentence for the
caller's operator, and are logged here once each. Nothing is written for a refusal.

A Peer that already exists with exactly the gateways asked for is accepted again (its labels
may change): that is how a link whose other half failed is retried with a new invitation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from clusterlink.addresses import Address, format_address
from clusterlink.api import Peer
from clusterlink.certs.peerdir import GatewayCredentials
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.invitations import (
    Invitation,
    advertised,
    ca_fingerprint,
    check_presented,
    decode_token,
    encode_token,
    new_invitation,
    peer_of,
    record_of,
)
from clusterlink.controlplane.resources import ResourceService
from clusterlink.errors import (
    BadRequest,
    ClusterLinkError,
    ConflictError,
    LinkRefused,
    ValidationError,
)
from clusterlink.ids import PeerName
from clusterlink.protocol import LinkAnswer, LinkRequest, Verdict
from clusterlink.store.invitations import KEEP_EXPIRED, SQLiteInvitations

__all__ = ["InvitationDesk", "IssuedInvitation", "different_peer"]

log = logging.getLogger("clusterlink.links")


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    invitation: Invitation
    token: str


class InvitationDesk:
    """Issues this gateway's invitations and judges the links that present them."""

    def __init__(
        self,
        *,
        local: LocalPeer,
        invitations: SQLiteInvitations | None,
        resources: ResourceService,
        catalog: Catalog,
        credentials: Callable[[], GatewayCredentials],
        listen_address: Callable[[], str | None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.local = local
        self._invitations = invitations  # None: Kubernetes mode keeps none
        self._resources = resources
        self._catalog = catalog
        self._credentials = credentials
        self._listen_address = listen_address
        self._clock = clock

    async def invite(
        self, *, invited: PeerName, ttl_s: int, uses: int, gateways: tuple[Address, ...]
    ) -> IssuedInvitation:
        """A new invitation for ``invited``, dialling ``gateways`` (default: our listener)."""
        if self._invitations is None:
            raise ConflictError(
                "invitations are kept in a standalone gateway's state file; a gateway in "
                "Kubernetes mode cannot issue them: create the Peers with kubectl"
            )
        if invited == self.local.name:
            raise BadRequest(f"peer {invited} cannot invite itself", field="peer")
        now = self._clock()
        invitation = new_invitation(
            peer=PeerName(self.local.name),
            gateways=advertised(self._listen_address(), gateways),
            fabric_ca=ca_fingerprint(self._credentials().issuer),
            invited=invited,
            ttl_s=ttl_s,
            uses=uses,
            now=now,
        )
        token = encode_token(invitation)
        record = record_of(invitation, token, now=now)
        await asyncio.to_thread(self._invitations.add, record, now=now)
        log.info(
            "invitation %s issued for peer %s: %d link(s) until %s, dialling %s",
            invitation.id,
            invited,
            uses,
            invitation.expires_at.isoformat(),
            ", ".join(format_address(g) for g in invitation.gateways),
        )
        return IssuedInvitation(invitation, token)

    async def accept(self, caller: PeerName, request: LinkRequest) -> LinkAnswer | Verdict:
        """The answer to ``POST /link`` from ``caller`` (the name in its certificate)."""
        try:
            outcome = await self._accept(caller, request)
        except LinkRefused as exc:
            log.warning("refused the link of peer %s: %s", caller, exc)
            return Verdict(exc.status, exc.reason, str(exc))
        except ClusterLinkError as exc:  # the store failed: nothing was created
            log.error("could not link peer %s: %s", caller, exc)
            return Verdict(503, "unavailable", f"peer {self.local.name} cannot store it: {exc}")
        return LinkAnswer(self.local.name, self.local.labels, outcome)

    async def _accept(self, caller: PeerName, request: LinkRequest) -> str:
        if request.name != caller:
            raise LinkRefused(
                f"the request names peer {request.name!r}, but the caller's certificate "
                f"names peer {caller}",
                reason="wrong-peer",
                status=403,
            )
        invitation = decode_token(request.token)
        record = None
        if self._invitations is not None and invitation.peer == self.local.name:
            record = await asyncio.to_thread(self._invitations.get, invitation.id)
        if self._invitations is None or record is None:
            raise LinkRefused(
                f"peer {self.local.name} knows no invitation {invitation.id}: it did not issue "
                f"it, or it expired more than {KEEP_EXPIRED.days} days ago",
                reason="unknown-invitation",
                status=404,
            )
        check_presented(request.token, invitation, record, caller=caller, now=self._clock())
        try:
            peer = peer_of(caller, request.gateways, dict(request.labels))
            peer_of(self.local.name, invitation.gateways, self.local.labels)  # the caller's
        except ValidationError as exc:
            raise LinkRefused(
                f"the Peers of this link would not be valid: {exc}", reason="malformed", status=400
            ) from None
        conflict = different_peer(self._catalog.snapshot.peers.get(caller), peer)
        if conflict:
            raise LinkRefused(
                f"peer {self.local.name} already has a Peer {caller} {conflict}; nothing was "
                f"changed: delete it there (`clusterlink delete peer {caller}`) and link again",
                reason="conflict",
                status=409,
            )
        if not await asyncio.to_thread(self._invitations.use, record.id):
            raise LinkRefused(
                f"invitation {record.id} has no use left (another link took the last one)",
                reason="used",
                status=410,
            )
        try:
            outcomes = await self._resources.apply([peer])
        except BaseException:
            await asyncio.to_thread(self._invitations.give_back, record.id)
            raise
        log.info(
            "peer %s linked with invitation %s: Peer %s %s, gateways %s",
            caller,
            record.id,
            caller,
            outcomes[0].result,
            ", ".join(format_address(g) for g in request.gateways),
        )
        return outcomes[0].result


def different_peer(existing: Peer | None, wanted: Peer) -> str:
    """How ``existing`` differs from the Peer a link would create ("" if it may be updated:
    absent, or the same gateways)."""
    if existing is None or existing.spec == wanted.spec:
        return ""
    shown = ", ".join(f"{g.host}:{g.port}" for g in existing.spec.gateways)
    asked = ", ".join(f"{g.host}:{g.port}" for g in wanted.spec.gateways)
    return f"with other gateways ({shown}, not {asked})"

"""The invited side of a link: present a token to the peer that issued it, then know that peer.

``clusterlink link`` hands the token to this gateway (admin API), which does the rest:

    decode the token -> its CA is one this gateway trusts (else: another fabric, and nothing
    is dialled) -> the Peer it would create for the inviter is valid, and no different Peer
    of that name is here -> dial the inviter's gateways in turn, over mutual TLS with this
    gateway's certificate, accepting only a certificate that names the inviter and chains to
    our fabric -> ``POST /link`` (token, our name, labels, addresses) -> on ``200`` create
    the inviter's Peer with the labels it answered

Everything that can be refused here is refused before the first byte is sent, so a refusal
leaves both sides as they were. The one step that can fail after the inviter said yes is
storing our own Peer: the error says so and how to retry (a new invitation; the inviter
accepts its identical Peer again).

The request goes over the basic protocol (ALPN ``clusterlink/1``) on a connection of its own,
closed after the answer: linking is rare, and the mux sessions carry tunnels only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from clusterlink.addresses import Address, format_address
from clusterlink.certs.peerdir import GatewayCredentials
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.invitations import (
    Invitation,
    advertised,
    ca_fingerprint,
    check_fabric,
    decode_token,
    peer_of,
)
from clusterlink.controlplane.inviting import different_peer
from clusterlink.controlplane.resources import ResourceService
from clusterlink.errors import (
    CertificateError,
    ClusterLinkError,
    LinkRefused,
    PeerUnreachable,
    RemoteProtocolError,
    StoreError,
    ValidationError,
)
from clusterlink.ids import PeerName
from clusterlink.protocol import NEED_DATA, LinkAnswer, LinkRequest, PeerClientConnection, Verdict
from clusterlink.transport.dial import dial_tls, expect_peer_listener
from clusterlink.transport.tls import TLSLayer

__all__ = ["LinkTimeouts", "Linker"]

log = logging.getLogger("clusterlink.links")

# What the inviter may answer that means something to the one who runs `link`; anything
# else is passed on as "refused", with the inviter's own sentence.
_INVITER_REASONS = frozenset(
    {"expired", "used", "tampered", "wrong-peer", "unknown-invitation", "conflict"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkTimeouts:
    connect_s: float = 5.0  # per gateway address: TCP connect and TLS handshake, each
    answer_s: float = 10.0  # per gateway address: from the request to the whole answer


class Linker:
    """Links this gateway with the peers that invite it."""

    def __init__(
        self,
        *,
        local: LocalPeer,
        resources: ResourceService,
        catalog: Catalog,
        credentials: Callable[[], GatewayCredentials],
        context: Callable[[], ssl.SSLContext],
        listen_address: Callable[[], str | None],
        timeouts: LinkTimeouts = LinkTimeouts(),
    ) -> None:
        self.local = local
        self._resources = resources
        self._catalog = catalog
        self._credentials = credentials
        self._context = context  # the peer client context offering the basic protocol
        self._listen_address = listen_address
        self._timeouts = timeouts

    async def link(self, *, token: str, gateways: tuple[Address, ...]) -> dict[str, Any]:
        """Link with the peer that issued ``token``; we are dialled at ``gateways`` (default:
        our listener). Returns what was done on both sides (the admin API's answer)."""
        invitation = decode_token(token)
        self._check_before_dialling(invitation)
        addresses = advertised(self._listen_address(), gateways)
        request = LinkRequest(
            token=token.strip(),
            name=self.local.name,
            labels=self.local.labels,
            gateways=addresses,
        )
        answer = await self._ask(invitation, request)
        inviter = invitation.peer
        try:
            peer = peer_of(inviter, invitation.gateways, dict(answer.labels))
            outcome = (await self._resources.apply([peer]))[0].result
        except ClusterLinkError as exc:
            raise StoreError(
                f"peer {inviter} created its Peer {self.local.name} ({answer.outcome}), but this "
                f"gateway could not store Peer {inviter}: {exc}; to retry, ask {inviter} for a "
                f"new invitation (`clusterlink invite --name {self.local.name}` there) and link "
                f"again ({inviter} accepts its same Peer {self.local.name} again)"
            ) from exc
        log.info(
            "linked with peer %s (invitation %s): Peer %s %s here, Peer %s %s there",
            inviter,
            invitation.id,
            inviter,
            outcome,
            self.local.name,
            answer.outcome,
        )
        return {
            "outcome": outcome,
            "peer": _described(inviter, invitation.gateways, answer.labels),
            "remote": {
                **_described(self.local.name, addresses, self.local.labels),
                "outcome": answer.outcome,
            },
        }

    def _check_before_dialling(self, invitation: Invitation) -> None:
        """Everything this side can refuse, so that a refusal has changed nothing anywhere."""
        credentials = self._credentials()
        trusted = credentials.bundle.valid_at(datetime.now(UTC))
        check_fabric(
            invitation,
            trusted=frozenset(ca_fingerprint(ca) for ca in trusted),
            own=ca_fingerprint(credentials.issuer),
        )
        if invitation.peer == self.local.name:
            raise LinkRefused(
                f"this token was issued by this very peer ({self.local.name}); give it to the "
                f"site of peer {invitation.invited}, which links with it",
                reason="wrong-peer",
            )
        try:
            planned = peer_of(invitation.peer, invitation.gateways, {})
        except ValidationError as exc:
            raise LinkRefused(
                f"the token's gateways cannot be a Peer's: {exc}", reason="malformed", status=400
            ) from None
        conflict = different_peer(self._catalog.snapshot.peers.get(invitation.peer), planned)
        if conflict:
            raise LinkRefused(
                f"a Peer {invitation.peer} already exists here {conflict}; nothing was changed "
                f"on either side: delete it (`clusterlink delete peer {invitation.peer}`) and "
                "link again",
                reason="conflict",
            )

    async def _ask(self, invitation: Invitation, request: LinkRequest) -> LinkAnswer:
        """Present the token at each of the inviter's gateways in turn until one answers."""
        failures = []
        for address in invitation.gateways:
            try:
                event = await self._ask_one(invitation.peer, address, request)
            except (PeerUnreachable, CertificateError, RemoteProtocolError) as exc:
                failures.append(str(exc))
                continue
            if isinstance(event, LinkAnswer):
                return event
            reason = event.reason if event.reason in _INVITER_REASONS else "refused"
            raise LinkRefused(
                f"peer {invitation.peer} refused the link: {event.message}", reason=reason
            )
        raise LinkRefused(
            f"cannot reach peer {invitation.peer}: {'; '.join(failures)}; is its gateway "
            "running, and can this host reach the address in the token (`clusterlink invite "
            "--address`)? Nothing was changed on either side",
            reason="unreachable",
            status=502,
        )

    async def _ask_one(
        self, inviter: PeerName, address: Address, request: LinkRequest
    ) -> LinkAnswer | Verdict:
        where = format_address(address)
        call = _LinkCall(inviter)
        layer: TLSLayer | None = None
        try:
            async with asyncio.timeout(self._timeouts.connect_s + self._timeouts.answer_s):
                layer = await dial_tls(
                    address,
                    call,
                    context=self._context(),
                    server_name=inviter,
                    connect_timeout_s=self._timeouts.connect_s,
                    handshake_timeout_s=self._timeouts.connect_s,
                    what=f"peer {inviter}",
                )
                expect_peer_listener(layer, where)
                return await call.send(request)
        except TimeoutError:
            raise PeerUnreachable(
                f"peer {inviter} at {where} did not answer within "
                f"{self._timeouts.connect_s + self._timeouts.answer_s:g}s"
            ) from None
        finally:
            if layer is not None:
                layer.close()


class _LinkCall(asyncio.Protocol):
    """One ``POST /link`` and its answer, on a connection of its own."""

    def __init__(self, inviter: PeerName) -> None:
        self.conn = PeerClientConnection(inviter)
        self.transport: asyncio.Transport | None = None
        self.is_sent = False  # nothing the other side says is an answer before this
        self.answer: asyncio.Future[LinkAnswer | Verdict] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    async def send(self, request: LinkRequest) -> LinkAnswer | Verdict:
        assert self.transport is not None  # dial_tls returns after connection_made
        self.transport.write(self.conn.link_request(request))
        self.is_sent = True
        return await self.answer

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool:
        self._feed(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(
                PeerUnreachable(
                    f"the connection closed before an answer{f': {exc}' if exc else ''}"
                )
            )

    def _feed(self, data: bytes) -> None:
        if self.answer.done() or not self.is_sent:
            return
        self.conn.receive_data(data)
        try:
            event = self.conn.next_event()
        except RemoteProtocolError as exc:
            self.answer.set_exception(exc)
            return
        if event is not NEED_DATA:
            assert isinstance(event, LinkAnswer | Verdict)  # the answer to a link request
            self.answer.set_result(event)


def _described(name: str, gateways: tuple[Address, ...], labels: Any) -> dict[str, Any]:
    return {
        "name": name,
        "gateways": [format_address(g) for g in gateways],
        "labels": dict(labels),
    }


def _why(exc: Exception | None) -> str:
    return f": {exc}" if exc else ""

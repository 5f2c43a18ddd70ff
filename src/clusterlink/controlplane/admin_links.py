"""The admin API's two routes for joining sites: ``POST /v1/invitations`` and ``POST /v1/link``.

``clusterlink invite`` asks this gateway for an invitation (``inviting``); ``clusterlink link``
gives this gateway a token to present to the peer that issued it (``linking``). The bodies are
small closed objects (``InviteBody``, ``LinkBody``: the same models describe them in the
OpenAPI document), checked before anything acts on them. A refused link answers with its own
reason (``expired``, ``used``, ``tampered``, ``wrong-peer``, ``unknown-invitation``,
``other-fabric``, ``conflict``, ``refused``: ``409``; ``unreachable``: ``502``), so a script can
tell them apart without reading the sentence.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from clusterlink.addresses import Address, format_address
from clusterlink.api import Gateway
from clusterlink.api.names import PeerNameField
from clusterlink.controlplane.admin_input import parse_body
from clusterlink.controlplane.invitations import (
    MAX_GATEWAYS,
    MAX_TOKEN_CHARS,
    MAX_TTL_S,
    MAX_USES,
)
from clusterlink.controlplane.inviting import InvitationDesk
from clusterlink.controlplane.linking import Linker

__all__ = ["DEFAULT_TTL_S", "InviteBody", "LinkBody", "LinkRoutes"]

DEFAULT_TTL_S: Final = 15 * 60


class _Body(BaseModel):
    model_config = ConfigDict(
        defer_build=True,  # built on first use: a gateway starts without it
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
    )


class InviteBody(_Body):
    """``POST /v1/invitations``: whom to invite, for how long, how many times, and where
    they dial this gateway (default: its peer listener as bound)."""

    peer: PeerNameField
    ttl_s: int = Field(default=DEFAULT_TTL_S, ge=1, le=MAX_TTL_S)
    uses: int = Field(default=1, ge=1, le=MAX_USES)
    gateways: list[Gateway] = Field(default_factory=list, max_length=MAX_GATEWAYS)


class LinkBody(_Body):
    """``POST /v1/link``: the token from ``invite``, and where the inviter's side dials this
    gateway (default: its peer listener as bound)."""

    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS)
    gateways: list[Gateway] = Field(default_factory=list, max_length=MAX_GATEWAYS)


class LinkRoutes:
    """The handlers; ``routes`` is what ``AdminServer`` serves."""

    def __init__(self, desk: InvitationDesk, linker: Linker) -> None:
        self._desk = desk
        self._linker = linker

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/invitations", self.invite), web.post("/v1/link", self.link)]

    async def invite(self, request: web.Request) -> web.Response:
        body = parse_body(
            await request.read(), InviteBody, shape='{"peer": ..., "ttlS": ..., "uses": ...}'
        )
        issued = await self._desk.invite(
            invited=body.peer, ttl_s=body.ttl_s, uses=body.uses, gateways=_addresses(body)
        )
        invitation = issued.invitation
        return web.json_response(
            {
                "id": invitation.id,
                "token": issued.token,
                "peer": invitation.invited,
                "expiresAt": invitation.expires_at.isoformat().replace("+00:00", "Z"),
                "uses": invitation.uses,
                "gateways": [format_address(g) for g in invitation.gateways],
            }
        )

    async def link(self, request: web.Request) -> web.Response:
        body = parse_body(await request.read(), LinkBody, shape='{"token": ...}')
        answer = await self._linker.link(token=body.token, gateways=_addresses(body))
        return web.json_response(answer)


def _addresses(body: InviteBody | LinkBody) -> tuple[Address, ...]:
    return tuple((g.host, g.port) for g in body.gateways)

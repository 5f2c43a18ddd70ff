"""Both sides of a link as control-plane objects, with a real store and no socket: nothing is
half-created when a step fails, and the caller's name is its certificate's.

The whole flow over real gateways is tests/integration/test_joining.py; here are the steps a
well-behaved peer can never reach (a request that names someone else than its certificate) and
the failures a test cannot provoke from outside (the store failing after the checks passed).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clusterlink.api import Peer
from clusterlink.certs import create_fabric, create_peer_cert
from clusterlink.certs.peerdir import GatewayCredentials, read_gateway_credentials
from clusterlink.controlplane.authz import LocalPeer
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.inviting import InvitationDesk
from clusterlink.controlplane.linking import Linker
from clusterlink.controlplane.resources import ResourceService
from clusterlink.errors import StoreError
from clusterlink.ids import PeerName
from clusterlink.protocol import LinkAnswer, LinkRequest, Verdict
from clusterlink.store.invitations import SQLiteInvitations
from tests.unit.test_resources_apply import Binder, FailingStore

B_GATEWAYS = (("127.0.0.1", 9543),)


@dataclass
class Site:
    store: FailingStore
    resources: ResourceService
    credentials: GatewayCredentials
    local: LocalPeer


def site(base: Path, name: str, labels: dict[str, str]) -> Site:
    if not (base / "fab").exists():
        create_fabric(base, "fab")
    credentials = read_gateway_credentials(create_peer_cert(base, name, "fab"))
    store = FailingStore(base / f"{name}.db")
    resources = ResourceService(store=store, catalog=Catalog(store), binder=Binder())
    return Site(store, resources, credentials, LocalPeer(name, labels))


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Site, Site]]:
    a, b = site(tmp_path, "a", {"site": "a"}), site(tmp_path, "b", {"site": "b"})
    yield a, b
    a.store.close()
    b.store.close()


def desk_of(a: Site) -> tuple[InvitationDesk, SQLiteInvitations]:
    invitations = SQLiteInvitations(a.store)
    desk = InvitationDesk(
        local=a.local,
        invitations=invitations,
        resources=a.resources,
        catalog=a.resources.catalog,
        credentials=lambda: a.credentials,
        listen_address=lambda: "127.0.0.1:9443",
    )
    return desk, invitations


def invited(desk: InvitationDesk) -> tuple[str, str]:
    issued = asyncio.run(desk.invite(invited=PeerName("b"), ttl_s=60, uses=1, gateways=()))
    return issued.invitation.id, issued.token


def link_request(token: str, name: str = "b") -> LinkRequest:
    return LinkRequest(token=token, name=name, labels={"site": "b"}, gateways=B_GATEWAYS)


def test_a_request_that_names_another_peer_than_its_certificate_is_refused(
    sites: tuple[Site, Site],
) -> None:
    a, _ = sites
    desk, invitations = desk_of(a)
    id_, token = invited(desk)

    answer = asyncio.run(desk.accept(PeerName("b"), link_request(token, name="c")))

    assert answer == Verdict(
        403, "wrong-peer", "the request names peer 'c', but the caller's certificate names peer b"
    )
    assert a.store.list(Peer) == []
    record = invitations.get(id_)
    assert record is not None and record.used == 0


def test_a_store_failure_at_the_inviter_creates_nothing_and_gives_the_use_back(
    sites: tuple[Site, Site],
) -> None:
    a, _ = sites
    desk, invitations = desk_of(a)
    id_, token = invited(desk)
    a.store.fail_apply = True

    answer = asyncio.run(desk.accept(PeerName("b"), link_request(token)))

    assert isinstance(answer, Verdict) and (answer.status, answer.reason) == (503, "unavailable")
    a.store.fail_apply = False
    assert a.store.list(Peer) == []
    record = invitations.get(id_)
    assert record is not None and record.used == 0
    assert asyncio.run(desk.accept(PeerName("b"), link_request(token))) == LinkAnswer(
        "a", {"site": "a"}, "created"
    )


def test_the_same_peer_again_is_accepted_and_keeps_its_gateways(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    desk, _ = desk_of(a)
    first = asyncio.run(desk.accept(PeerName("b"), link_request(invited(desk)[1])))
    second = asyncio.run(desk.accept(PeerName("b"), link_request(invited(desk)[1])))

    assert isinstance(first, LinkAnswer) and first.outcome == "created"
    assert isinstance(second, LinkAnswer) and second.outcome == "unchanged"


def test_an_invitation_of_another_gateway_is_unknown_here(sites: tuple[Site, Site]) -> None:
    a, b = sites
    desk_b, _ = desk_of(b)
    issued_by_b = asyncio.run(desk_b.invite(invited=PeerName("c"), ttl_s=60, uses=1, gateways=()))
    desk_a, _ = desk_of(a)

    answer = asyncio.run(desk_a.accept(PeerName("c"), link_request(issued_by_b.token, "c")))

    assert isinstance(answer, Verdict) and (answer.status, answer.reason) == (
        404,
        "unknown-invitation",
    )


def test_a_store_failure_after_the_inviter_said_yes_says_how_to_retry(
    sites: tuple[Site, Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = sites
    desk, _ = desk_of(a)
    _, token = invited(desk)
    linker = Linker(
        local=b.local,
        resources=b.resources,
        catalog=b.resources.catalog,
        credentials=lambda: b.credentials,
        context=ssl.create_default_context,  # never used: nothing is dialled here
        listen_address=lambda: "127.0.0.1:9543",
    )

    async def inviter_says_yes(invitation: object, request: LinkRequest) -> LinkAnswer:
        answer = await desk.accept(PeerName(request.name), request)
        assert isinstance(answer, LinkAnswer)
        return answer

    monkeypatch.setattr(linker, "_ask", inviter_says_yes)
    b.store.fail_apply = True

    with pytest.raises(StoreError) as caught:
        asyncio.run(linker.link(token=token, gateways=()))

    assert str(caught.value).startswith(
        "peer a created its Peer b (created), but this gateway could not store Peer a: "
    )
    assert str(caught.value).endswith(
        "to retry, ask a for a new invitation (`clusterlink invite --name b` there) and link "
        "again (a accepts its same Peer b again)"
    )
    b.store.fail_apply = False
    assert b.store.list(Peer) == []
    assert [p.metadata.name for p in a.store.list(Peer)] == ["b"]
    _, retry = invited(desk)
    assert asyncio.run(linker.link(token=retry, gateways=()))["remote"]["outcome"] == "unchanged"
    assert [p.metadata.name for p in b.store.list(Peer)] == ["a"]


def test_expiry_is_the_inviters_clock(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    desk, _ = desk_of(a)
    _, token = invited(desk)
    later = InvitationDesk(
        local=a.local,
        invitations=SQLiteInvitations(a.store),
        resources=a.resources,
        catalog=a.resources.catalog,
        credentials=lambda: a.credentials,
        listen_address=lambda: "127.0.0.1:9443",
        clock=lambda: datetime(2100, 1, 1, tzinfo=UTC),
    )

    answer = asyncio.run(later.accept(PeerName("b"), link_request(token)))

    assert isinstance(answer, Verdict) and (answer.status, answer.reason) == (410, "expired")

"""The invitations table: beside the resources in the state file, never among them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clusterlink.api import Peer
from clusterlink.controlplane.invitations import (
    decode_token,
    encode_token,
    new_invitation,
    peer_of,
    record_of,
)
from clusterlink.ids import PeerName
from clusterlink.store import SQLiteStore
from clusterlink.store.invitations import KEEP_EXPIRED, InvitationRecord, SQLiteInvitations

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "state.db")


def issued(*, uses: int = 1, ttl_s: int = 900, now: datetime = NOW) -> tuple[str, InvitationRecord]:
    invitation = new_invitation(
        peer=PeerName("a"),
        gateways=(("127.0.0.1", 9443),),
        fabric_ca="SHA256:" + "0" * 64,
        invited=PeerName("b"),
        ttl_s=ttl_s,
        uses=uses,
        now=now,
    )
    token = encode_token(invitation)
    return token, record_of(invitation, token, now=now)


def test_a_stored_invitation_reads_back_as_it_was(store: SQLiteStore) -> None:
    invitations = SQLiteInvitations(store)
    _, record = issued(uses=3)

    invitations.add(record, now=NOW)

    assert invitations.get(record.id) == record
    assert invitations.get("nosuch") is None


def test_neither_the_secret_nor_the_token_reaches_the_file(store: SQLiteStore) -> None:
    invitations = SQLiteInvitations(store)
    token, record = issued()
    invitations.add(record, now=NOW)
    store.close()

    data = b"".join(p.read_bytes() for p in store.path.parent.glob("state.db*"))
    assert decode_token(token).secret.encode() not in data
    assert token.encode() not in data
    assert record.id.encode() in data  # the row is there, with its digests


def test_invitations_are_not_resources(store: SQLiteStore) -> None:
    invitations = SQLiteInvitations(store)
    revision = store.revision
    invitations.add(issued()[1], now=NOW)

    assert store.list(Peer) == []
    assert store.revision == revision  # no resource watcher wakes up for an invitation


def test_uses_are_taken_one_at_a_time_and_given_back(store: SQLiteStore) -> None:
    invitations = SQLiteInvitations(store)
    _, record = issued(uses=2)
    invitations.add(record, now=NOW)

    assert invitations.use(record.id)
    assert invitations.use(record.id)
    assert not invitations.use(record.id)
    invitations.give_back(record.id)
    got = invitations.get(record.id)
    assert got is not None and got.used == 1
    assert not invitations.use("nosuch")


def test_two_links_racing_for_the_last_use_have_one_winner(store: SQLiteStore) -> None:
    invitations = SQLiteInvitations(store)
    _, record = issued(uses=1)
    invitations.add(record, now=NOW)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(invitations.use(record.id)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 7 + [True]


def test_invitations_long_expired_are_forgotten_when_a_new_one_is_issued(
    store: SQLiteStore,
) -> None:
    invitations = SQLiteInvitations(store)
    _, old = issued(ttl_s=1)
    _, recent = issued(ttl_s=1, now=NOW + KEEP_EXPIRED)
    invitations.add(old, now=NOW)
    invitations.add(recent, now=NOW + KEEP_EXPIRED)

    invitations.add(issued()[1], now=NOW + KEEP_EXPIRED + timedelta(seconds=2))

    assert invitations.get(old.id) is None
    assert invitations.get(recent.id) == recent


def test_the_table_survives_a_restart_and_older_state_files_gain_it(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "state.db") as store:
        store.apply([peer_of("x", (("127.0.0.1", 1),), {})])
    with SQLiteStore(tmp_path / "state.db") as store:
        _, record = issued()
        SQLiteInvitations(store).add(record, now=NOW)
    with SQLiteStore(tmp_path / "state.db") as store:
        assert SQLiteInvitations(store).get(record.id) == record
        assert [p.metadata.name for p in store.list(Peer)] == ["x"]

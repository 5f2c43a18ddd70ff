"""Invitations this gateway issued: a table of their own in the state file, never a resource.

Why not a resource kind: an invitation is a credential in flight, not configuration. It must
not show up in ``get``, be exported with ``get -o yaml`` and applied elsewhere, be edited with
``apply``, or appear as a CRD; and its secret must never be stored. So it lives beside the
resources, in the same SQLite file (one file to back up, one fsync discipline), in a table that
no resource API reads.

What a row keeps: the invited peer, the number of links it allows and has given, its expiry,
and two SHA-256 digests: of the secret (checked in constant time against what a caller
presents) and of the whole token as issued (so any change to the token is seen). The secret
itself and the token are never written. A row that expired more than ``KEEP_EXPIRED`` ago is
deleted when the next invitation is issued, so the table does not grow without bound.

Using an invitation is one conditional ``UPDATE`` (``used < uses``), so two links racing for
the last use cannot both win; ``give_back`` returns a use whose link failed afterwards.
Kubernetes mode has no such table (its state is the Kubernetes API): invitations are a
standalone gateway's feature for now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from clusterlink.ids import PeerName
from clusterlink.store.sqlite import SQLiteStore

__all__ = ["KEEP_EXPIRED", "InvitationRecord", "SQLiteInvitations"]

KEEP_EXPIRED: Final = timedelta(days=7)
"""How long an expired invitation is kept, so that its token is refused as "expired" rather
than as unknown."""

_TABLE = """
    CREATE TABLE IF NOT EXISTS invitations (
        id            TEXT PRIMARY KEY,
        invited       TEXT NOT NULL,     -- the peer name the invitation is for
        secret_sha256 TEXT NOT NULL,     -- hex; the secret itself is never stored
        token_sha256  TEXT NOT NULL,     -- hex digest of the whole token as issued
        expires_at    TEXT NOT NULL,     -- ISO-8601 UTC, whole seconds
        uses          INTEGER NOT NULL,
        used          INTEGER NOT NULL DEFAULT 0,
        created_at    TEXT NOT NULL
    )
"""
_COLUMNS = "id, invited, secret_sha256, token_sha256, expires_at, uses, used, created_at"


@dataclass(frozen=True, slots=True)
class InvitationRecord:
    """What this gateway remembers of an invitation it issued."""

    id: str
    invited: PeerName
    secret_sha256: str
    token_sha256: str
    expires_at: datetime
    uses: int
    used: int
    created_at: datetime


class SQLiteInvitations:
    """The invitations table of a ``SQLiteStore``'s file, through the store's connection and
    lock (so its writes are as durable, and fail with the same ``StoreError``s)."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        with store._session("create the invitations table", write=True) as conn:
            conn.execute(_TABLE)

    def add(self, record: InvitationRecord, *, now: datetime) -> None:
        """Store a new invitation, and forget those expired more than ``KEEP_EXPIRED`` ago."""
        with self._store._session("store an invitation", write=True) as conn:
            conn.execute(
                "DELETE FROM invitations WHERE expires_at < ?", (_text(now - KEEP_EXPIRED),)
            )
            conn.execute(
                f"INSERT INTO invitations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.invited,
                    record.secret_sha256,
                    record.token_sha256,
                    _text(record.expires_at),
                    record.uses,
                    record.used,
                    _text(record.created_at),
                ),
            )

    def get(self, invitation_id: str) -> InvitationRecord | None:
        with self._store._session("read an invitation", write=False) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM invitations WHERE id = ?", (invitation_id,)
            ).fetchone()
        if row is None:
            return None
        id_, invited, secret, token, expires_at, uses, used, created_at = row
        return InvitationRecord(
            id=id_,
            invited=PeerName(invited),
            secret_sha256=secret,
            token_sha256=token,
            expires_at=datetime.fromisoformat(expires_at),
            uses=uses,
            used=used,
            created_at=datetime.fromisoformat(created_at),
        )

    def use(self, invitation_id: str) -> bool:
        """Take one use; False if none is left (another link took the last one)."""
        with self._store._session("use an invitation", write=True) as conn:
            cursor = conn.execute(
                "UPDATE invitations SET used = used + 1 WHERE id = ? AND used < uses",
                (invitation_id,),
            )
            return cursor.rowcount == 1

    def give_back(self, invitation_id: str) -> None:
        """Return a use taken by a link that then failed."""
        with self._store._session("give an invitation's use back", write=True) as conn:
            conn.execute(
                "UPDATE invitations SET used = used - 1 WHERE id = ? AND used > 0",
                (invitation_id,),
            )


def _text(when: datetime) -> str:
    """ISO-8601 in UTC: the text sorts as the time does, so SQL can compare it."""
    return when.astimezone(UTC).isoformat(timespec="seconds")

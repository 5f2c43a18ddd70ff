"""The default state store: one SQLite file per gateway (``state.db`` in the peer directory).

Why SQLite: transactions make ``apply`` all-or-nothing for free, the file survives restarts,
and there is no server to run. Durability is chosen over speed: WAL journal with
``synchronous=FULL``, so an ``apply`` that returned survives a crash or power loss. Writes are
rare (admin actions and status changes), so the fsync per transaction is cheap enough.

Concurrency: one connection guarded by one lock; every public method is one transaction
(``BEGIN IMMEDIATE`` for writes). The gateway is a single process; a second process on the
same file waits up to ``busy_timeout_s`` and then gets a ``StoreError``.

Failure: every ``sqlite3`` error is rolled back first and then raised as a ``StoreError`` that
names the file and says what to do (disk full, read-only, corrupt, locked). A write first
checks that the file, its journal files and their directory are writable (see
``_check_writable``: in WAL mode SQLite would not notice). The file is
created ``0600``; the documents may name internal hosts.

Not here: validation (``api`` did it before anything reaches the store) and caching (callers
that need the data path fast keep their own view and poll ``revision``).
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from clusterlink.api import (
    Resource,
    ResourceKey,
    key_of,
    kind_info,
    resource_from_dict,
    to_dict,
    with_status,
)
from clusterlink.errors import ClusterLinkError, NotFoundError, StoreError
from clusterlink.store.base import ApplyOutcome, ApplyResult

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 1

# Statements rather than one script: executescript() would commit the open transaction.
_SCHEMA = (
    """
    CREATE TABLE clusterlink_meta (
        key   TEXT PRIMARY KEY,  -- 'schema_version', 'revision'
        value INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE resources (
        kind       TEXT NOT NULL,
        namespace  TEXT NOT NULL,      -- '' for cluster-scoped kinds
        name       TEXT NOT NULL,
        document   TEXT NOT NULL,      -- canonical JSON without status
        status     TEXT,               -- JSON, written only by set_status
        revision   INTEGER NOT NULL,   -- store revision of the row's last change
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,      -- last change of the document
        PRIMARY KEY (kind, namespace, name)
    )
    """,
)
_KEY = "kind = ? AND namespace = ? AND name = ?"
_JOURNALS = ("-wal", "-shm")  # the files SQLite keeps beside the state file in WAL mode


class SQLiteStore:
    """A :class:`~clusterlink.store.base.Store` in one SQLite file; safe to share by threads."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        _create_private_file(path)
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except sqlite3.Error as exc:
            self.close()
            raise self._error(exc, "open") from exc
        except ClusterLinkError:
            self.close()
            raise

    # --- the Store protocol -------------------------------------------------------------------

    @property
    def revision(self) -> int:
        with self._session("read the revision", write=False) as conn:
            return _revision(conn)

    def get(self, key: ResourceKey) -> Resource:
        with self._session(f"read {key}", write=False) as conn:
            row = conn.execute(f"SELECT document, status FROM resources WHERE {_KEY}", _at(key))
            found = row.fetchone()
        if found is None:
            raise NotFoundError(f"{key} not found")
        return self._decode(key, *found)

    def list(self, kind: str | type[Resource], namespace: str | None = None) -> list[Resource]:
        info = kind_info(kind)
        query = "SELECT namespace, name, document, status FROM resources WHERE kind = ?"
        params: tuple[str, ...] = (info.name,)
        if namespace is not None and info.namespaced:
            query += " AND namespace = ?"
            params += (namespace,)
        with self._session(f"list {info.plural}", write=False) as conn:
            rows = conn.execute(query + " ORDER BY namespace, name", params).fetchall()
        return [
            self._decode(ResourceKey(info.name, ns, name), doc, st) for ns, name, doc, st in rows
        ]

    def apply(
        self,
        resources: Sequence[Resource],
        *,
        statuses: Mapping[ResourceKey, Mapping[str, Any]] | None = None,
    ) -> builtins.list[ApplyOutcome]:
        incoming = [(key_of(r), _encode(to_dict(r, include_status=False))) for r in resources]
        keys = {key for key, _ in incoming}
        if stray := [str(key) for key in statuses or {} if key not in keys]:
            raise ValueError(f"statuses of resources not applied: {', '.join(stray)}")
        now = _now()
        outcomes = []
        with self._session("apply resources", write=True) as conn:
            revision = _revision(conn) + 1
            for key, document in incoming:
                stored = conn.execute(f"SELECT document FROM resources WHERE {_KEY}", _at(key))
                row = stored.fetchone()
                result: ApplyResult
                if row is None:
                    conn.execute(
                        "INSERT INTO resources (kind, namespace, name, document, revision, "
                        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*_at(key), document, revision, now, now),
                    )
                    result = "created"
                elif row[0] == document:
                    result = "unchanged"
                else:
                    conn.execute(
                        "UPDATE resources SET document = ?, revision = ?, updated_at = ? "
                        f"WHERE {_KEY}",
                        (document, revision, now, *_at(key)),
                    )
                    result = "configured"
                outcomes.append(ApplyOutcome(key, result))
            changed = any(outcome.result != "unchanged" for outcome in outcomes)
            for key, status in (statuses or {}).items():
                changed = self._write_status(conn, key, status, revision) or changed
            if changed:
                _set_revision(conn, revision)
        return outcomes

    def delete(self, keys: Sequence[ResourceKey]) -> builtins.list[Resource]:
        unique = list(dict.fromkeys(keys))
        with self._session("delete resources", write=True) as conn:
            rows = [
                conn.execute(
                    f"SELECT document, status FROM resources WHERE {_KEY}", _at(key)
                ).fetchone()
                for key in unique
            ]
            missing = [str(key) for key, row in zip(unique, rows, strict=True) if row is None]
            if missing:
                also = "; nothing was deleted" if len(unique) > 1 else ""
                raise NotFoundError(f"{', '.join(missing)} not found{also}")
            deleted = [self._decode(key, *row) for key, row in zip(unique, rows, strict=True)]
            conn.executemany(f"DELETE FROM resources WHERE {_KEY}", [_at(key) for key in unique])
            if unique:
                _set_revision(conn, _revision(conn) + 1)
        return deleted

    def set_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        with self._session(f"write the status of {key}", write=True) as conn:
            revision = _revision(conn) + 1
            if self._write_status(conn, key, status, revision):
                _set_revision(conn, revision)

    def _write_status(
        self, conn: sqlite3.Connection, key: ResourceKey, status: Mapping[str, Any], revision: int
    ) -> bool:
        """Replace the stored status of ``key`` (inside the caller's transaction); whether it
        changed."""
        stored = conn.execute(f"SELECT document, status FROM resources WHERE {_KEY}", _at(key))
        row = stored.fetchone()
        if row is None:
            raise NotFoundError(f"{key} not found")
        resource = with_status(self._decode(key, row[0], None), status)
        encoded = _encode(to_dict(resource)["status"])
        if encoded == row[1]:
            return False
        conn.execute(
            f"UPDATE resources SET status = ?, revision = ? WHERE {_KEY}",
            (encoded, revision, *_at(key)),
        )
        return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------

    @contextmanager
    def _session(self, doing: str, *, write: bool) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; for writes, inside a transaction that commits only
        if the block finishes. Any failure rolls back, and sqlite3 errors become StoreError.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"cannot {doing}: the state store {self.path} is closed")
            try:
                if write:
                    self._check_writable(doing)
                    conn.execute("BEGIN IMMEDIATE")
                yield conn
                if write:
                    conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc, doing) from exc
                raise

    def _check_writable(self, doing: str) -> None:
        """Refuse a write that the files could not keep, before anything is written.

        In WAL mode SQLite writes a transaction to the journal (``-wal``) and copies it into
        the state file later, at a checkpoint, and it creates and removes its journal files
        in the state file's directory. So a read-only state file or directory does not fail
        the write itself: the change would be acknowledged while SQLite cannot finish its
        work (a read-only file is never checkpointed, its journal only grows, and the next
        start refuses the file; a read-only directory keeps SQLite from managing its
        journal files). A read-only journal fails the write, but only as "disk I/O error".
        Asking first (a few ``access`` calls; writes are rare) makes each of them one clear
        refusal.
        """
        journals = [self.path.with_name(self.path.name + suffix) for suffix in _JOURNALS]
        for path, what in (
            (self.path.parent, f"the directory of state file {self.path}"),
            (self.path, f"state file {self.path}"),
            *((j, f"{j.name}, the journal of state file {self.path},") for j in journals),
        ):
            if path.exists() and not os.access(path, os.W_OK):
                raise StoreError(
                    f"cannot {doing}: {what} is read-only; make it and its directory writable"
                )

    def _init_schema(self) -> None:
        with self._session("initialise", write=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if not tables:
                _create_schema(conn)
                return
            if "clusterlink_meta" not in tables:
                raise StoreError(
                    f"{self.path} is an SQLite database but not a ClusterLink state file; "
                    "point --state at another path"
                )
            found = conn.execute(
                "SELECT value FROM clusterlink_meta WHERE key = 'schema_version'"
            ).fetchone()
            if found is None or found[0] != SCHEMA_VERSION:
                raise StoreError(
                    f"state file {self.path} has schema version {found[0] if found else None}, "
                    f"this clusterlink reads version {SCHEMA_VERSION}; use the matching version"
                )

    def _decode(self, key: ResourceKey, document: str, status: str | None) -> Resource:
        try:
            data = json.loads(document)
            if status is not None:
                data["status"] = json.loads(status)
            return resource_from_dict(data)
        except (ValueError, ClusterLinkError) as exc:  # JSONDecodeError is a ValueError
            raise StoreError(
                f"stored {key} in {self.path} is unreadable ({exc}); delete it and apply it again"
            ) from exc

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        code = getattr(exc, "sqlite_errorname", "")
        where = f"state file {self.path}"
        if code.startswith("SQLITE_FULL"):
            return StoreError(f"cannot {doing}: the disk holding {where} is full; free space")
        if code.startswith(("SQLITE_READONLY", "SQLITE_PERM")):
            return StoreError(
                f"cannot {doing}: {where} is read-only; make it and its directory writable"
            )
        if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return StoreError(
                f"{where} is not a valid database (corrupt or not a state file); "
                "move it aside to start empty, or point --state elsewhere"
            )
        if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(
                f"cannot {doing}: {where} is locked by another process; "
                "is another gateway running on it?"
            )
        if code.startswith("SQLITE_CANTOPEN"):
            return StoreError(f"cannot open {where}; check that its directory is writable")
        return StoreError(f"cannot {doing} in {where}: {exc}")


def _create_private_file(path: Path) -> None:
    """Create the file (and its directory) owner-only before SQLite does so with the umask.

    Opening it for writing here also turns a read-only file into a clear error at start-up
    rather than at the first apply (it catches root with an immutable file, too).
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StoreError(
            f"cannot open state file {path} for writing ({exc.strerror}); "
            "make it and its directory writable, or point --state elsewhere"
        ) from exc


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.executemany(
        "INSERT INTO clusterlink_meta (key, value) VALUES (?, ?)",
        [("schema_version", SCHEMA_VERSION), ("revision", 0)],
    )


def _revision(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM clusterlink_meta WHERE key = 'revision'").fetchone()
    return int(row[0])


def _set_revision(conn: sqlite3.Connection, revision: int) -> None:
    conn.execute("UPDATE clusterlink_meta SET value = ? WHERE key = 'revision'", (revision,))


def _at(key: ResourceKey) -> tuple[str, str, str]:
    return (key.kind, key.namespace, key.name)


def _encode(data: object) -> str:
    # ASCII with escapes: any str encodes, even one SQLite's UTF-8 cannot hold (a lone
    # surrogate), so a write can never fail on the text it stores.
    return json.dumps(data, separators=(",", ":"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

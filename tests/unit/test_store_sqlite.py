"""SQLiteStore against real files: all-or-nothing writes, status ownership, durability across
reopen, and clear StoreErrors when the file or disk refuses.
"""

import fcntl
import os
import sqlite3
import stat
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from clusterlink.api import (
    Resource,
    ResourceKey,
    key_of,
    parse_documents,
    to_dict,
)
from clusterlink.errors import NotFoundError, StoreError, ValidationError
from clusterlink.store import SQLiteStore, Store

HEAD = "apiVersion: clusterlink.net/v1alpha1\n"
ALL_KINDS = "---\n".join(
    HEAD + doc
    for doc in [
        "kind: Peer\nmetadata: {name: site-b}\nspec: {gateways: [{host: b.example, port: 8443}]}\n",
        "kind: Export\nmetadata: {name: db, namespace: prod}\nspec: {host: 10.0.0.5, port: 5432}\n",
        "kind: Import\nmetadata: {name: db}\nspec: {port: 0, sources: [{peer: site-b}]}\n",
        "kind: AccessPolicy\nmetadata: {name: allow-all}\n"
        "spec: {action: allow, from: [{workloadSelector: {}}], to: [{workloadSelector: {}}]}\n",
        "kind: PrivilegedAccessPolicy\nmetadata: {name: deny-x}\nspec: {action: deny, "
        "from: [{workloadSelector: {matchLabels: {x: y}}}], to: [{workloadSelector: {}}]}\n",
    ]
)


def export(name: str, port: int = 80, namespace: str = "default") -> Resource:
    (resource,) = parse_documents(
        HEAD + f"kind: Export\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{host: svc, port: {port}}}\n"
    )
    return resource


def export_key(name: str, namespace: str = "default") -> ResourceKey:
    return ResourceKey("Export", namespace, name)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "peer" / "state.db"


@pytest.fixture
def store(path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(path) as opened:
        yield opened


def everything(store: Store) -> list[dict[str, object]]:
    kinds = ["Peer", "Export", "Import", "AccessPolicy", "PrivilegedAccessPolicy"]
    return [to_dict(r) for kind in kinds for r in store.list(kind)]


# --- basics ------------------------------------------------------------------------------------


def test_it_is_a_store(store):
    typed: Store = store
    assert typed.revision == 0


def test_every_kind_round_trips(store):
    resources = parse_documents(ALL_KINDS)
    outcomes = store.apply(resources)
    assert [o.result for o in outcomes] == ["created"] * 5
    assert [o.key for o in outcomes] == [key_of(r) for r in resources]
    for resource in resources:
        assert store.get(key_of(resource)) == resource
        assert store.list(type(resource)) == [resource]


def test_outcomes_are_created_unchanged_configured(store):
    assert [str(o) for o in store.apply([export("a"), export("b")])] == [
        "export default/a created",
        "export default/b created",
    ]
    assert store.revision == 1
    assert [o.result for o in store.apply([export("a"), export("b")])] == ["unchanged"] * 2
    assert store.revision == 1
    outcomes = store.apply([export("a"), export("b", port=81), export("c")])
    assert [o.result for o in outcomes] == ["unchanged", "configured", "created"]
    assert store.revision == 2
    assert store.get(export_key("b")).spec.port == 81


def test_apply_of_nothing_changes_nothing(store):
    assert store.apply([]) == []
    assert store.revision == 0


def test_list_is_sorted_and_filtered_by_namespace(store):
    store.apply([export("b", namespace="y"), export("a", namespace="z"), export("c")])
    store.apply([export("a", namespace="y")])
    everywhere = [(r.metadata.namespace, r.metadata.name) for r in store.list("exports")]
    assert everywhere == [("default", "c"), ("y", "a"), ("y", "b"), ("z", "a")]
    assert [r.metadata.name for r in store.list("export", "y")] == ["a", "b"]
    assert store.list("export", "nowhere") == []


def test_namespace_is_ignored_when_listing_cluster_scoped_kinds(store):
    store.apply(parse_documents(ALL_KINDS))
    assert [r.metadata.name for r in store.list("peers", "prod")] == ["site-b"]


def test_get_of_a_missing_resource_says_what_is_missing(store):
    with pytest.raises(NotFoundError, match=r"^import default/x not found$"):
        store.get(ResourceKey("Import", "default", "x"))
    with pytest.raises(NotFoundError, match=r"^peer b not found$"):
        store.get(ResourceKey.of("peer", "b"))


# --- status ------------------------------------------------------------------------------------


def test_status_is_kept_across_re_apply_and_incoming_status_is_ignored(store):
    (peer,) = parse_documents(ALL_KINDS)[:1]
    key = key_of(peer)
    store.apply([peer])
    store.set_status(key, {"reachable": True, "labels": {"env": "prod"}, "rttMs": 1.5})

    (changed,) = parse_documents(
        HEAD + "kind: Peer\nmetadata: {name: site-b}\nspec: {gateways: [{host: c, port: 1}]}\n"
        "status: {reachable: false, reason: forged}\n"
    )
    assert [o.result for o in store.apply([changed])] == ["configured"]
    got = store.get(key)
    assert got.spec == changed.spec
    assert to_dict(got)["status"] == {
        "conditions": [],
        "reachable": True,
        "labels": {"env": "prod"},
        "rttMs": 1.5,
    }


def test_status_given_at_creation_is_not_stored(store):
    (imp,) = parse_documents(
        HEAD + "kind: Import\nmetadata: {name: db}\nspec: {port: 0, sources: [{peer: b}]}\n"
        "status: {listen: '1.2.3.4:5'}\n"
    )
    store.apply([imp])
    assert store.get(key_of(imp)).status is None
    assert [o.result for o in store.apply([imp])] == ["unchanged"]


def test_set_status_replaces_and_moves_the_revision_only_on_change(store):
    store.apply([export("a")])
    key = ResourceKey.of("import", "db")
    store.apply(parse_documents(ALL_KINDS)[2:3])
    before = store.revision
    store.set_status(key, {"listen": "127.0.0.1:4000"})
    assert store.revision == before + 1
    store.set_status(key, {"listen": "127.0.0.1:4000"})
    assert store.revision == before + 1
    store.set_status(key, {"sources": [{"peer": "b", "exportName": "db", "exportNamespace": "x"}]})
    status = store.get(key).status
    assert status is not None
    assert status.listen is None
    assert status.sources[0].peer == "b"


def test_invalid_status_is_refused_and_changes_nothing(store):
    store.apply([export("a")])
    revision = store.revision
    with pytest.raises(ValidationError) as caught:
        store.set_status(export_key("a"), {"listen": "x"})
    assert caught.value.field == "status.listen"
    assert store.get(export_key("a")).status is None
    assert store.revision == revision


def test_apply_stores_the_gateways_statuses_with_the_documents_in_one_revision(store):
    imp = parse_documents(ALL_KINDS)[2]
    key = key_of(imp)
    revision = store.revision
    store.apply([imp, export("a")], statuses={key: {"listen": "127.0.0.1:4000"}})
    status = store.get(key).status
    assert status is not None and status.listen == "127.0.0.1:4000"
    assert store.revision == revision + 1
    outcomes = store.apply([imp], statuses={key: {"listen": "127.0.0.1:4000"}})
    assert [o.result for o in outcomes] == ["unchanged"]
    assert store.revision == revision + 1
    store.apply([imp], statuses={key: {"listen": "127.0.0.1:4001"}})  # a new lease only
    assert store.revision == revision + 2


def test_apply_with_an_invalid_status_stores_nothing(store):
    imp = parse_documents(ALL_KINDS)[2]
    with pytest.raises(ValidationError):
        store.apply([export("a"), imp], statuses={key_of(imp): {"listen": 5}})
    assert everything(store) == []
    assert store.revision == 0


def test_apply_refuses_statuses_of_resources_it_does_not_apply(store):
    with pytest.raises(ValueError, match="statuses of resources not applied"):
        store.apply([export("a")], statuses={export_key("b"): {}})
    assert store.list("export") == []


def test_status_of_a_missing_resource_is_not_found(store):
    with pytest.raises(NotFoundError, match="export default/a not found"):
        store.set_status(export_key("a"), {})


# --- delete ------------------------------------------------------------------------------------


def test_delete_returns_what_it_deleted(store):
    store.apply([export("a"), export("b")])
    store.set_status(ResourceKey.of("export", "a"), {})
    deleted = store.delete([export_key("a")])
    assert [key_of(r) for r in deleted] == [export_key("a")]
    assert deleted[0].status is not None
    assert [r.metadata.name for r in store.list("export")] == ["b"]
    assert store.revision == 3


def test_delete_is_all_or_nothing(store):
    store.apply([export("a"), export("b")])
    revision = store.revision
    with pytest.raises(NotFoundError) as caught:
        store.delete([export_key("a"), export_key("x"), export_key("b"), export_key("y")])
    assert str(caught.value) == (
        "export default/x, export default/y not found; nothing was deleted"
    )
    assert [r.metadata.name for r in store.list("export")] == ["a", "b"]
    assert store.revision == revision


# --- all-or-nothing apply ----------------------------------------------------------------------


def test_a_batch_with_a_bad_document_stores_nothing(store):
    text = ALL_KINDS + "---\n" + HEAD + "kind: Export\nmetadata: {name: x}\nspec: {port: -1}\n"
    with pytest.raises(ValidationError, match="document 6"):
        store.apply(parse_documents(text))
    assert everything(store) == []


def test_a_failure_inside_the_transaction_stores_nothing(store, path):
    store.apply([export("a")])
    with closing(sqlite3.connect(path)) as other:
        other.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON resources WHEN NEW.name = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"
        )
        other.commit()
    before, revision = everything(store), store.revision
    with pytest.raises(StoreError, match="simulated failure"):
        store.apply([export("a", port=9), export("new"), export("boom")])
    assert everything(store) == before
    assert store.revision == revision


def pragma(store: SQLiteStore, text: str) -> tuple[object, ...]:
    # Reaching into the connection is the only way to make SQLite itself refuse a write.
    assert store._conn is not None
    row: tuple[object, ...] = store._conn.execute(f"PRAGMA {text}").fetchone() or ()
    return row


def test_disk_full_is_a_clear_error_and_loses_nothing(store):
    store.apply([export("a")])
    before = everything(store)
    pragma(store, f"max_page_count = {pragma(store, 'page_count')[0]}")  # no room to grow
    many = [export(f"e{i}-{'x' * 200}") for i in range(200)]
    with pytest.raises(StoreError, match="is full; free space"):
        store.apply(many)
    assert everything(store) == before
    pragma(store, "max_page_count = 1073741823")
    store.apply(many)
    assert len(store.list("export")) == 201


def test_a_write_refused_as_read_only_is_a_clear_error(store):
    store.apply([export("a")])
    pragma(store, "query_only = ON")
    with pytest.raises(StoreError, match="read-only; make it and its directory writable"):
        store.apply([export("b")])
    pragma(store, "query_only = OFF")
    assert [r.metadata.name for r in store.list("export")] == ["a"]


# --- the file ----------------------------------------------------------------------------------


def test_file_and_directory_are_created_private(path):
    with SQLiteStore(path):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_state_is_durable_wal(path):
    with SQLiteStore(path) as store:
        store.apply([export("a")])
        with closing(sqlite3.connect(path)) as other:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert pragma(store, "synchronous") == (2,)  # FULL


def test_reopening_shows_the_same_state(path):
    with SQLiteStore(path) as store:
        store.apply(parse_documents(ALL_KINDS))
        store.set_status(ResourceKey.of("peer", "site-b"), {"reachable": True})
        before, revision = everything(store), store.revision
    with SQLiteStore(path) as store:
        assert everything(store) == before
        assert store.revision == revision
        store.apply([export("z")])
        assert store.revision == revision + 1


_FS_IOC_GETFLAGS = 0x80086601  # ioctl(2) numbers of chattr's flags, as in linux/fs.h
_FS_IOC_SETFLAGS = 0x40086602
_FS_IMMUTABLE_FL = 0x10


def _set_flags(path: Path, change: Callable[[int], int]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        (flags,) = struct.unpack("l", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0)))
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("l", change(flags)))
    finally:
        os.close(fd)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable for this process; root ignores modes, so it gets the immutable
    attribute (what ``chattr +i`` sets, here without starting a process)."""
    if os.geteuid() != 0:
        path.chmod(0o400)
        try:
            yield
        finally:
            path.chmod(0o600)
        return
    try:
        _set_flags(path, lambda flags: flags | _FS_IMMUTABLE_FL)
    except OSError:
        pytest.skip("this filesystem does not support the immutable attribute")
    try:
        yield
    finally:
        _set_flags(path, lambda flags: flags & ~_FS_IMMUTABLE_FL)


def test_a_read_only_state_file_is_a_clear_error_and_loses_nothing(path):
    with SQLiteStore(path) as store:
        store.apply(parse_documents(ALL_KINDS))
        before = everything(store)
    with read_only(path), pytest.raises(StoreError) as caught:
        SQLiteStore(path)
    assert f"cannot open state file {path} for writing" in str(caught.value)
    assert "make it and its directory writable" in str(caught.value)
    with SQLiteStore(path) as store:
        assert everything(store) == before


def test_a_file_that_is_not_a_database_is_refused(path):
    path.parent.mkdir()
    path.write_text("certificates, perhaps\n" * 100)
    with pytest.raises(StoreError, match="is not a valid database"):
        SQLiteStore(path)
    assert path.read_text().startswith("certificates")


def test_another_sqlite_database_is_refused(path):
    path.parent.mkdir()
    with closing(sqlite3.connect(path)) as other:
        other.execute("CREATE TABLE mine (x)")
        other.commit()
    with pytest.raises(StoreError, match="not a ClusterLink state file"):
        SQLiteStore(path)


def test_a_newer_schema_is_refused(path):
    SQLiteStore(path).close()
    with closing(sqlite3.connect(path)) as other:
        other.execute("UPDATE clusterlink_meta SET value = 99 WHERE key = 'schema_version'")
        other.commit()
    with pytest.raises(StoreError, match="schema version 99"):
        SQLiteStore(path)


def test_a_stored_document_that_no_longer_validates_is_a_store_error(store, path):
    store.apply([export("a")])
    with closing(sqlite3.connect(path)) as other:
        other.execute('UPDATE resources SET document = \'{"kind": "Export"}\'')
        other.commit()
    with pytest.raises(StoreError, match=r"stored export default/a .* is unreadable"):
        store.get(export_key("a"))


def test_a_closed_store_says_so(path):
    store = SQLiteStore(path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        store.list("export")


# --- threads -----------------------------------------------------------------------------------


def test_threads_can_share_a_store(store):
    def work(n: int) -> None:
        for i in range(20):
            store.apply([export(f"t{n}-{i}")])
            store.set_status(export_key(f"t{n}-{i}"), {})
            store.list("export")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.list("export")) == 80
    assert store.revision == 160


@pytest.mark.parametrize("which", ["state file", "journal", "directory"])
def test_state_made_read_only_under_a_running_store_refuses_every_write_clearly(path, which):
    """In WAL mode a read-only state file or directory would not fail the write (it lands in
    the journal): the store must refuse it itself, and name what is read-only."""
    target = {"state file": path, "journal": Path(f"{path}-wal"), "directory": path.parent}
    with SQLiteStore(path) as store:
        store.apply([export("a")])
        before, revision = everything(store), store.revision
        with read_only(target[which]):
            for write in (
                lambda: store.apply([export("b")]),
                lambda: store.delete([export_key("a")]),
                lambda: store.set_status(export_key("a"), {}),
            ):
                with pytest.raises(StoreError) as caught:
                    write()
                assert str(path) in str(caught.value)
                assert "is read-only; make it and its directory writable" in str(caught.value)
            assert everything(store) == before
            assert store.revision == revision
        store.apply([export("b")])
    with SQLiteStore(path) as store:
        assert [r.metadata.name for r in store.list("export")] == ["a", "b"]

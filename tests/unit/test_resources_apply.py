"""ResourceService.apply is all-or-nothing across the store and the Imports' listeners, also
when the store fails (a full disk, a read-only file): no socket, with a real SQLite store.

The binder here only records what the service asks of it; the listeners' own sockets are
tested with real gateways (tests/integration/test_faults_store.py).
"""

import asyncio
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clusterlink.api import Import, Resource, ResourceKey, parse_documents, to_dict
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.resources import ResourceService
from clusterlink.errors import StoreError
from clusterlink.ids import NamespacedName
from clusterlink.store import ApplyOutcome, SQLiteStore

HEAD = "apiVersion: clusterlink.net/v1alpha1\n"


def import_(name: str) -> Resource:
    (resource,) = parse_documents(
        HEAD + f"kind: Import\nmetadata: {{name: {name}}}\n"
        "spec: {port: 0, sources: [{peer: b}]}\n"
    )
    return resource


@dataclass
class Prepared:
    listen: dict[NamespacedName, str]
    state: str = "bound"  # bound | serving | closed

    async def commit(self) -> None:
        self.state = "serving"

    def abort(self) -> None:
        self.state = "closed"


@dataclass
class Binder:
    """Binds every Import at 127.0.0.1:40000 + n; remembers each binding's fate."""

    prepared: list[Prepared] = field(default_factory=list)

    async def prepare(
        self, imports: Iterable[Import], *, leased: Mapping[NamespacedName, int] | None = None
    ) -> Prepared:
        keys = [i.metadata.key for i in imports]
        first = 40000 + sum(len(p.listen) for p in self.prepared)
        binding = Prepared({key: f"127.0.0.1:{first + n}" for n, key in enumerate(keys)})
        self.prepared.append(binding)
        return binding

    def close_removed(self, keep: Iterable[NamespacedName]) -> None:
        pass

    def listen_address(self, key: NamespacedName) -> str | None:
        return None

    def port_of(self, imp: Import) -> int:
        return imp.spec.listen_port


class FailingStore(SQLiteStore):
    """A real store whose writes can be made to fail, as a full disk would fail them."""

    fail_apply = False
    fail_status = False

    def apply(
        self,
        resources: Sequence[Resource],
        *,
        statuses: Mapping[ResourceKey, Mapping[str, Any]] | None = None,
    ) -> list[ApplyOutcome]:
        if self.fail_apply:
            raise StoreError("cannot apply resources: the disk is full")
        return super().apply(resources, statuses=statuses)

    def set_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        if self.fail_status:
            raise StoreError(f"cannot write the status of {key}: the disk is full")
        super().set_status(key, status)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FailingStore]:
    failing = FailingStore(tmp_path / "state.db")
    yield failing
    failing.close()


def service_on(store: FailingStore) -> tuple[ResourceService, Binder]:
    binder = Binder()
    return ResourceService(store=store, catalog=Catalog(store), binder=binder), binder


def test_an_import_is_stored_with_its_leased_port_in_one_write(store: FailingStore) -> None:
    """The documents and the port they lease are one transaction: a store that could take the
    one and not the other (the disk filling in between) cannot leave an Import stored but
    not served, with its socket bound and the user told that the apply failed."""
    service, binder = service_on(store)
    store.fail_status = True  # only apply() may write

    asyncio.run(service.apply([import_("web")]))

    (stored,) = store.list("import")
    assert to_dict(stored)["status"]["listen"] == "127.0.0.1:40000"
    assert [p.state for p in binder.prepared] == ["serving"]
    assert service.catalog.snapshot.imports.keys() == {NamespacedName("default", "web")}


def test_a_failed_store_write_stores_nothing_and_closes_what_was_bound(
    store: FailingStore,
) -> None:
    service, binder = service_on(store)
    store.fail_apply = True

    with pytest.raises(StoreError, match="disk is full"):
        asyncio.run(service.apply([import_("web"), import_("api")]))

    assert store.list("import") == []
    assert [p.state for p in binder.prepared] == ["closed"]
    assert service.catalog.snapshot.imports == {}

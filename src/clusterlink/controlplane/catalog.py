"""The gateway's in-memory view of its resources: one immutable snapshot, swapped whole.

The data plane reads the current ``Snapshot`` once per new connection (dictionary lookups, a
precompiled ``PolicySet``) and never touches the store. Writers (the admin API) change the
store first and then rebuild and swap the snapshot, so a change takes effect for the next
connection without a restart, and a reader never sees half of a change.

Runtime state learned from other gateways (reachability, labels) is not here: it changes
every second and lives in ``controlplane.health``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from clusterlink.api import AccessPolicy, Export, Import, Peer, PrivilegedAccessPolicy, Resource
from clusterlink.api.resources import WorkloadSetOrSelector
from clusterlink.ids import NamespacedName, PeerName
from clusterlink.policy import Action as PolicyAction
from clusterlink.policy import Operator, Policy, PolicySet, Requirement, Selector
from clusterlink.store import Store

__all__ = ["Catalog", "Snapshot", "policy_of"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    peers: Mapping[PeerName, Peer] = field(default_factory=dict)
    exports: Mapping[NamespacedName, Export] = field(default_factory=dict)
    imports: Mapping[NamespacedName, Import] = field(default_factory=dict)
    policies: PolicySet = field(default_factory=PolicySet)
    revision: int = 0


def _selector(item: WorkloadSetOrSelector) -> Selector:
    ws = item.workload_selector
    return Selector(
        match_labels=dict(ws.match_labels),
        match_expressions=tuple(
            Requirement(e.key, Operator(e.operator), frozenset(e.values))
            for e in ws.match_expressions
        ),
    )


def policy_of(resource: AccessPolicy | PrivilegedAccessPolicy) -> Policy:
    """The policy engine's form of a policy resource."""
    privileged = isinstance(resource, PrivilegedAccessPolicy)
    return Policy(
        name=resource.metadata.name,
        namespace="" if privileged else resource.metadata.namespace,
        privileged=privileged,
        action=PolicyAction(resource.spec.action),
        from_=tuple(_selector(s) for s in resource.spec.from_),
        to=tuple(_selector(s) for s in resource.spec.to),
    )


R = TypeVar("R", bound=Resource)


def _all(store: Store, kind: type[R]) -> list[R]:
    return [r for r in store.list(kind) if isinstance(r, kind)]


def _by_name(items: Iterable[R]) -> Mapping[NamespacedName, R]:
    return MappingProxyType({r.metadata.key: r for r in items})


class Catalog:
    """Owns the current snapshot and tells subscribers when it changes."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.snapshot = Snapshot()
        self._subscribers: list[Callable[[Snapshot, Snapshot], None]] = []

    def subscribe(self, callback: Callable[[Snapshot, Snapshot], None]) -> None:
        """``callback(old, new)`` runs after every swap, in the event loop thread."""
        self._subscribers.append(callback)

    def reload(self) -> Snapshot:
        store = self._store
        policies = [policy_of(p) for p in _all(store, AccessPolicy)]
        policies += [policy_of(p) for p in _all(store, PrivilegedAccessPolicy)]
        new = Snapshot(
            peers=MappingProxyType({p.metadata.name: p for p in _all(store, Peer)}),
            exports=_by_name(_all(store, Export)),
            imports=_by_name(_all(store, Import)),
            policies=PolicySet(policies),
            revision=store.revision,
        )
        old, self.snapshot = self.snapshot, new
        for callback in self._subscribers:
            callback(old, new)
        return new

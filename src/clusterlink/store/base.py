"""The state store contract: how the control plane reads and changes a gateway's resources.

Every implementation (SQLite by default, Kubernetes later) keeps these invariants:

- ``apply`` and ``delete`` are all-or-nothing. Either every resource of the call is written
  or none is; a failure leaves the state exactly as it was. This is what makes "an invalid
  resource is never half-stored" (DESIGN.md §4) hold for batches too.
- ``status`` belongs to the gateway. ``apply`` ignores the status of incoming documents and keeps
  the stored one; only ``set_status`` and the gateway's own ``statuses`` given to ``apply``
  write it, replacing it whole.
- ``revision`` grows with every change (spec or status) and never goes back, so a caller can
  poll it cheaply to learn that something changed. Unchanged re-applies do not move it.
- Reads return fully validated resources; a stored document that no longer validates is a
  ``StoreError``, never a half-built object.

Errors: ``NotFoundError`` for missing resources, ``ValidationError`` for a bad status,
``StoreError`` for anything the storage itself refuses (disk full, read-only, corrupt).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from clusterlink.api import Resource, ResourceKey

__all__ = ["ApplyOutcome", "ApplyResult", "Store"]

ApplyResult = Literal["created", "configured", "unchanged"]


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    key: ResourceKey
    result: ApplyResult

    def __str__(self) -> str:
        return f"{self.key} {self.result}"


class Store(Protocol):
    @property
    def revision(self) -> int: ...

    def get(self, key: ResourceKey) -> Resource:
        """The resource with its status; ``NotFoundError`` ("import default/x not found")."""
        ...

    def list(self, kind: str | type[Resource], namespace: str | None = None) -> list[Resource]:
        """Resources of ``kind`` (any accepted spelling), sorted by namespace then name.

        ``namespace=None`` means all namespaces; it is ignored for cluster-scoped kinds.
        """
        ...

    def apply(
        self,
        resources: Sequence[Resource],
        *,
        statuses: Mapping[ResourceKey, Mapping[str, Any]] | None = None,
    ) -> builtins.list[ApplyOutcome]:
        """Create or update all of ``resources`` in one transaction, one outcome each.

        ``statuses`` (wire form, keys among ``resources``) replace those resources' statuses
        in the same transaction: what the gateway must record with a change (an Import's
        leased port) is then stored with it or not at all.
        """
        ...

    def delete(self, keys: Sequence[ResourceKey]) -> builtins.list[Resource]:
        """Delete all of ``keys`` and return what was deleted; if one is missing, delete none."""
        ...

    def set_status(self, key: ResourceKey, status: Mapping[str, Any]) -> None:
        """Replace the status (wire form, camelCase) of an existing resource."""
        ...

    def close(self) -> None: ...

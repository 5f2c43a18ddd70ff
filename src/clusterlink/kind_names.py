"""The names of the resource kinds: canonical names, spellings users may type, scope, plurals.

This is the part of the kind registry that needs no model, so that a command line which only
*names* a kind (``clusterlink get imports``, the admin client building a URL) can resolve it
without importing pydantic and the models, which cost more than the rest of such a run.
``clusterlink.api.kinds`` joins each entry here with its model; adding a kind is one line here
plus its model there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from clusterlink.errors import ValidationError

__all__ = ["API_VERSION", "KIND_NAMES", "KindName", "KindNames", "kind_names"]

API_VERSION: Final = "clusterlink.net/v1alpha1"  # of every kind
KindName = Literal["Peer", "Export", "Import", "AccessPolicy", "PrivilegedAccessPolicy"]


@dataclass(frozen=True, slots=True)
class KindNames:
    """How one kind is named: ``name`` in documents, ``plural`` in URLs and CRD names."""

    name: KindName
    plural: str  # lower-case
    namespaced: bool
    spellings: frozenset[str]  # lower-case forms users may type, besides the name


KIND_NAMES: Final = (
    KindNames("Peer", "peers", False, frozenset({"peers"})),
    KindNames("Export", "exports", True, frozenset({"exports"})),
    KindNames("Import", "imports", True, frozenset({"imports"})),
    KindNames(
        "AccessPolicy", "accesspolicies", True, frozenset({"accesspolicies", "policy", "policies"})
    ),
    KindNames(
        "PrivilegedAccessPolicy",
        "privilegedaccesspolicies",
        False,
        frozenset({"privilegedaccesspolicies", "privilegedpolicy", "privilegedpolicies"}),
    ),
)

_BY_SPELLING: Final = {
    spelling: kind for kind in KIND_NAMES for spelling in {kind.name.lower(), *kind.spellings}
}


def kind_names(text: str) -> KindNames:
    """The kind a user typed: singular or plural, any case; ``ValidationError`` if none."""
    kind = _BY_SPELLING.get(text.lower())
    if kind is None:
        accepted = ", ".join(k.name for k in KIND_NAMES)
        raise ValidationError(
            f"unknown kind {text!r}; accepted kinds: {accepted} "
            "(singular or plural, any case; 'policy' means AccessPolicy)",
            field="kind",
        )
    return kind

"""The kind registry: the names of each kind (``clusterlink.kind_names``) with its model; keys.

Everything that varies by kind, other than the model, lives in ``kind_names`` (which the
command line can use without importing the models); adding a kind is one line there plus its
model here. A ``ResourceKey`` is how every other part of the
gateway names a resource (store rows, admin URLs, log lines); cluster-scoped kinds always have
the namespace ``""`` in their key, whatever a user typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from clusterlink.api.resources import (
    AccessPolicy,
    Export,
    Import,
    Peer,
    PrivilegedAccessPolicy,
    Resource,
)
from clusterlink.errors import ValidationError
from clusterlink.kind_names import KIND_NAMES, KindName, kind_names

__all__ = [
    "KINDS",
    "KindInfo",
    "ResourceKey",
    "is_namespaced",
    "json_schema",
    "key_of",
    "kind_info",
    "plural",
    "resolve_kind",
]


@dataclass(frozen=True, slots=True)
class KindInfo:
    name: KindName
    model: type[Resource]
    plural: str  # lower-case, for URLs and CRD names
    namespaced: bool
    spellings: frozenset[str]  # lower-case forms accepted by resolve_kind, besides the name


_MODELS: Final[Mapping[KindName, type[Resource]]] = {
    "Peer": Peer,
    "Export": Export,
    "Import": Import,
    "AccessPolicy": AccessPolicy,
    "PrivilegedAccessPolicy": PrivilegedAccessPolicy,
}
_INFOS: Final = tuple(
    KindInfo(k.name, _MODELS[k.name], k.plural, k.namespaced, k.spellings) for k in KIND_NAMES
)

KINDS: Final[Mapping[str, type[Resource]]] = {info.name: info.model for info in _INFOS}
_BY_NAME: Final = {info.name: info for info in _INFOS}
_BY_MODEL: Final = {info.model: info for info in _INFOS}


def resolve_kind(text: str) -> type[Resource]:
    """The model for a kind as a user may type it: singular, plural, any case."""
    return kind_info(text).model


def kind_info(kind: str | type[Resource]) -> KindInfo:
    if isinstance(kind, type):
        return _BY_MODEL[kind]
    return _BY_NAME[kind_names(kind).name]


def is_namespaced(kind: str | type[Resource]) -> bool:
    return kind_info(kind).namespaced


def plural(kind: str | type[Resource]) -> str:
    return kind_info(kind).plural


def json_schema(kind: str | type[Resource]) -> dict[str, Any]:
    """The JSON schema of a kind's wire form (camelCase), for OpenAPI documents and CRDs."""
    return kind_info(kind).model.model_json_schema(by_alias=True)


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Names one resource; ``namespace`` is ``""`` exactly when the kind is cluster-scoped.

    Use :meth:`of` to build one from what a user typed; the constructor insists on the
    canonical form so that two keys for the same resource always compare equal.
    """

    kind: KindName
    namespace: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.kind!r} is not a canonical kind name; use ResourceKey.of")
        if is_namespaced(self.kind) != bool(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} does not fit kind {self.kind}")

    @classmethod
    def of(cls, kind: str | type[Resource], name: str, namespace: str = "default") -> ResourceKey:
        """Key for ``kind`` typed any accepted way; the namespace is dropped if cluster-scoped."""
        info = kind_info(kind)
        if info.namespaced and not namespace:
            raise ValidationError(f"a {info.name} needs a namespace", field="metadata.namespace")
        return cls(info.name, namespace if info.namespaced else "", name)

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind.lower()} {where}"


def key_of(resource: Resource) -> ResourceKey:
    return ResourceKey(resource.kind, resource.metadata.namespace, resource.metadata.name)

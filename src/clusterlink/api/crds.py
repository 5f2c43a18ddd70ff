"""The five CustomResourceDefinitions of Kubernetes mode, generated from the resource models.

One source of truth: the pydantic models in ``resources`` validate what a standalone gateway
is given, and the same models, turned into OpenAPI, are what the API server checks
``kubectl apply`` against. A field or rule added to a model reaches the CRDs by regenerating
them (``config/crds/`` holds a copy that a test keeps equal to this output).

Kubernetes accepts only *structural* schemas (apiextensions.k8s.io/v1): no ``$ref``, no
``anyOf``/``oneOf`` standing for "this or null", a ``type`` on every node, no
``additionalProperties: false`` (unknown fields are pruned, or refused by kubectl's strict
field validation), and the root ``metadata`` left to Kubernetes' own ObjectMeta.
:func:`structural` turns pydantic's JSON schema into that form and refuses what it cannot
say faithfully; :func:`crd` adds what only Kubernetes knows: scope, names, the status
subresource, printer columns and the CEL rule that keeps an Import's name a Service name.

What is deliberately not in the CRDs: descriptions from docstrings (they are written for
developers), defaults that only restate absence (``targetPort: 0``, ``message: ""``), and
any constraint on ``metadata`` besides the Import name's length (Kubernetes checks names
itself; a Peer name's limit of 63 characters per DNS label is left to the gateway, which
leaves such a Peer out with a logged reason, because a CEL rule over a split name would be
costed by the API server on an unbounded string and could make the CRD itself refused).
Pure: no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from clusterlink.api.kinds import KINDS, json_schema, kind_info
from clusterlink.api.resources import (
    API_VERSION,
    IMPORT_NAME_MAX,
    PEER_GATEWAYS_MESSAGE,
    KindName,
)

__all__ = [
    "CATEGORY",
    "GROUP",
    "IMPORT_NAME_RULE",
    "PEER_GATEWAYS_RULE",
    "VERSION",
    "crd",
    "crd_file_name",
    "crds",
    "structural",
]

GROUP, VERSION = API_VERSION.split("/")
CATEGORY: Final = "clusterlink"  # `kubectl get clusterlink` lists every kind
IMPORT_NAME_RULE: Final = {
    "rule": f"size(self.metadata.name) <= {IMPORT_NAME_MAX}",
    "message": (
        f"import name cannot exceed {IMPORT_NAME_MAX} characters (it names a Kubernetes Service)"
    ),
}

PEER_GATEWAYS_RULE: Final = {
    "rule": (
        "(has(self.spec.dialsIn) && self.spec.dialsIn) || "
        "(has(self.spec.gateways) && size(self.spec.gateways) > 0)"
    ),
    "message": PEER_GATEWAYS_MESSAGE,
}

# JSON-schema keywords that mean the same in Kubernetes' OpenAPI v3 subset, copied as they are.
_KEPT: Final = frozenset(
    {"type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems"}
)
# Keywords that say nothing to the API server (pydantic's titles, developer docstrings).
_DROPPED: Final = frozenset({"title", "description", "$defs"})
_NULL: Final = {"type": "null"}


def structural(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` (pydantic's JSON schema, with ``$defs``) as a structural OpenAPI v3 schema.

    ``$ref`` is inlined, ``anyOf: [X, null]`` becomes X with ``nullable: true``, ``const``
    becomes a one-value ``enum``, and a ``default`` is kept only when it differs from its
    type's zero value. ``ValueError`` for anything a structural schema cannot express (a real
    union, a recursive model, a keyword not known here, a node without a type), so a model
    change that the CRDs could not follow fails here rather than in a cluster.
    """
    return _Transform(schema.get("$defs", {})).node(schema, "")


@dataclass(frozen=True, slots=True)
class _Transform:
    defs: Mapping[str, Any]

    def node(
        self, node: Mapping[str, Any], path: str, seen: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        where = path or "(root)"
        if "$ref" in node:
            name = str(node["$ref"]).removeprefix("#/$defs/")
            if name in seen:
                raise ValueError(f"{where}: {name} refers to itself; a CRD schema cannot")
            rest = {key: value for key, value in node.items() if key != "$ref"}
            return self.node({**self.defs[name], **rest}, path, (*seen, name))
        if "anyOf" in node or "oneOf" in node:
            return self._nullable(node, path, seen)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _KEPT:
                out[key] = copy.deepcopy(value)  # shared lists would become YAML aliases
            elif key == "const":
                out["enum"] = [value]
            elif key == "default":
                if value:  # a zero default restates absence; the API server would store it
                    out["default"] = copy.deepcopy(value)
            elif key == "properties":
                if value:  # an empty model (EmptyStatus) is an object with no fields
                    out["properties"] = {
                        name: self.node(child, f"{path}.{name}", seen)
                        for name, child in value.items()
                    }
            elif key == "items":
                out["items"] = self.node(value, f"{path}[]", seen)
            elif key == "additionalProperties":
                if isinstance(value, Mapping):  # a map, e.g. labels
                    out["additionalProperties"] = self.node(value, f"{path}.*", seen)
                elif value is not False:  # `false` is what pruning does anyway
                    raise ValueError(f"{where}: free-form objects would need unknown fields kept")
            elif key == "required":
                out["required"] = list(value)
            elif key not in _DROPPED:
                raise ValueError(f"{where}: JSON-schema keyword {key!r} has no CRD equivalent")
        if "type" not in out:
            raise ValueError(f"{where}: no type; a structural schema needs one on every node")
        return {"type": out.pop("type"), **out}  # type first: what a reader looks for

    def _nullable(
        self, node: Mapping[str, Any], path: str, seen: tuple[str, ...]
    ) -> dict[str, Any]:
        options = node.get("anyOf") or node.get("oneOf") or []
        others = [option for option in options if option != _NULL]
        if len(others) != 1 or len(others) == len(options):
            raise ValueError(
                f"{path or '(root)'}: a union other than 'X or null' has no structural form"
            )
        rest = {key: value for key, value in node.items() if key not in ("anyOf", "oneOf")}
        inner = self.node({**others[0], **rest}, path, seen)
        return {"type": inner.pop("type"), "nullable": True, **inner}


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    json_path: str
    type: str = "string"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "jsonPath": self.json_path}


def _condition(condition_type: str) -> str:
    return f'.status.conditions[?(@.type=="{condition_type}")].status'


# The server prints the first match of a path only, so a list shows its first entry.
_COLUMNS: Final[Mapping[KindName, tuple[_Column, ...]]] = {
    "Peer": (
        _Column("Reachable", _condition("PeerReachable")),
        _Column("Gateways", ".spec.gateways[*].host"),
    ),
    "Export": (
        _Column("Host", ".spec.host"),
        _Column("Port", ".spec.port", "integer"),
        _Column("Valid", _condition("ExportValid")),
    ),
    "Import": (
        _Column("Port", ".spec.port", "integer"),
        _Column("Target-Port", ".spec.targetPort", "integer"),
        _Column("Sources", ".spec.sources[*].peer"),
        _Column("LB", ".spec.lbScheme"),
    ),
    "AccessPolicy": (_Column("Action", ".spec.action"),),
    "PrivilegedAccessPolicy": (_Column("Action", ".spec.action"),),
}
_AGE: Final = _Column("Age", ".metadata.creationTimestamp", "date")
# Peers live in ClusterLink's namespace (docs/kubernetes.md), so their CRD is namespaced as
# the original's, although a Peer's key in the resource model has no namespace.
_SCOPE: Final[Mapping[KindName, str]] = {
    "Peer": "Namespaced",
    "Export": "Namespaced",
    "Import": "Namespaced",
    "AccessPolicy": "Namespaced",
    "PrivilegedAccessPolicy": "Cluster",
}
_SHORT_NAMES: Final[Mapping[KindName, list[str]]] = {
    "AccessPolicy": ["ap"],
    "PrivilegedAccessPolicy": ["pap"],
}
_WITH_STATUS: Final = frozenset({"Peer", "Export", "Import"})


def crd(kind: KindName) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind`` (a plain dict, ready for YAML)."""
    info = kind_info(kind)
    schema = structural(json_schema(kind))
    properties = schema["properties"]
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = {"type": "object"}
    schema["required"] = [name for name in schema.get("required", []) if name != "metadata"]
    schema = {"description": _summary(info.model.__doc__), **schema}
    if kind == "Import":
        schema["x-kubernetes-validations"] = [dict(IMPORT_NAME_RULE)]
    if kind == "Peer":
        schema["x-kubernetes-validations"] = [dict(PEER_GATEWAYS_RULE)]
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
    }
    if kind in _WITH_STATUS:
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = [c.as_dict() for c in (*_COLUMNS[kind], _AGE)]
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": info.plural,
        "singular": kind.lower(),
        "categories": [CATEGORY],
    }
    if kind in _SHORT_NAMES:
        names["shortNames"] = list(_SHORT_NAMES[kind])
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "clusterlink"},
        },
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": _SCOPE[kind],
            "versions": [version],
        },
    }


def crds() -> list[dict[str, Any]]:
    """Every CRD, in the order of the kind registry."""
    return [crd(kind) for kind in _kinds()]


def crd_file_name(definition: Mapping[str, Any]) -> str:
    """The file a CRD is kept in, named as the original's (``clusterlink.net_imports.yaml``)."""
    spec = definition["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


def _kinds() -> list[KindName]:
    return [kind_info(name).name for name in KINDS]


def _summary(doc: str | None) -> str:
    """The first paragraph of a model's docstring, on one line: ``kubectl explain`` shows it."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.split())

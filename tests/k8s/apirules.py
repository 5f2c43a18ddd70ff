"""The Kubernetes API server's rules that the emulator (``emulator.py``) follows, as data and
pure functions: the resources served, refusals as ``Status`` objects, label and field
selectors, merge patches, and which event a watch is sent.

Apart from the emulator so that each rule reads on its own, next to the API server's
documentation it follows; ``apiserver.py`` says what they add to kmock.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kmock

__all__ = [
    "CLUSTERLINK_TYPES",
    "CORE_TYPES",
    "DEFAULT_NAMESPACES",
    "DNS_1035_LABEL",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "SERVER_FIELDS",
    "Event",
    "Obj",
    "ResourceType",
    "Scope",
    "StatusError",
    "conflict",
    "error",
    "invalid",
    "merge_patch",
    "not_found",
    "now",
    "parse_selector",
    "scope_of",
    "spec_part",
    "status_body",
]

Obj = dict[str, Any]

GROUP: Final = "clusterlink.net"
VERSION: Final = "v1alpha1"
DEFAULT_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
# Fields of metadata that only the server sets; a client's values are ignored.
SERVER_FIELDS: Final = (
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
_CORE_GROUPS: Final = frozenset({"", "coordination.k8s.io"})
DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN: Final = re.compile(rf"{DNS_LABEL.pattern}(\.{DNS_LABEL.pattern})*")
_BASIC_FIELDS: Final = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One resource the emulated API serves; what varies by kind lives here."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool  # whether it has the status subresource
    schema: Mapping[str, Any] | None = None  # OpenAPI v3 schema of the whole object
    field_labels: frozenset[str] = _BASIC_FIELDS
    name_rule: str = "subdomain"  # "subdomain", "label" (DNS-1123) or "1035" (DNS-1035 label)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def is_custom(self) -> bool:
        return self.group not in _CORE_GROUPS

    @property
    def qualified(self) -> str:
        """How the API server names the resource in messages: ``exports.clusterlink.net``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def ref(self) -> kmock.resource:
        return kmock.resource(group=self.group, version=self.version, plural=self.plural)


def _custom(plural: str, kind: str, *, namespaced: bool, has_status: bool) -> ResourceType:
    return ResourceType(GROUP, VERSION, plural, kind, namespaced, has_status)


# Scope as in docs/kubernetes.md: Peers live in ClusterLink's namespace, so the CRD is
# namespaced although a Peer's key has no namespace; PrivilegedAccessPolicies are cluster-wide.
CLUSTERLINK_TYPES: Final = (
    _custom("peers", "Peer", namespaced=True, has_status=True),
    _custom("exports", "Export", namespaced=True, has_status=True),
    _custom("imports", "Import", namespaced=True, has_status=True),
    _custom("accesspolicies", "AccessPolicy", namespaced=True, has_status=False),
    _custom(
        "privilegedaccesspolicies", "PrivilegedAccessPolicy", namespaced=False, has_status=False
    ),
)
CORE_TYPES: Final = (
    ResourceType("", "v1", "namespaces", "Namespace", False, True, name_rule="label"),
    ResourceType("", "v1", "services", "Service", True, True, name_rule="1035"),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        True,
        field_labels=_BASIC_FIELDS | {"status.podIP", "status.phase", "spec.nodeName"},
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True, False),
)


class StatusError(kmock.KubernetesError):
    """A refusal of the emulated API: HTTP ``status``, Status ``reason`` and ``message``."""

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


def error(status: int, reason: str, message: str, **details: Any) -> StatusError:
    return StatusError(status=status, reason=reason, message=message, details=details or None)


def not_found(rtype: ResourceType, name: str) -> StatusError:
    return error(
        404,
        "NotFound",
        f'{rtype.qualified} "{name}" not found',
        name=name,
        group=rtype.group,
        kind=rtype.plural,
    )


def conflict(rtype: ResourceType, name: str) -> StatusError:
    return error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        name=name,
        group=rtype.group,
        kind=rtype.plural,
    )


def invalid(rtype: ResourceType, name: str, problem: str) -> StatusError:
    return error(
        422,
        "Invalid",
        f'{rtype.kind} "{name}" is invalid: {problem}',
        name=name,
        group=rtype.group,
        kind=rtype.kind,
    )


def status_body(status: int, reason: str | None, message: str | None, details: Any) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message or "",
        "reason": reason or "",
        "code": status,
    }
    if details:
        body["details"] = details
    return body


# --- selectors --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # "!=" and "notin"


_SET_BASED: Final = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*")
_EQUALITY: Final = re.compile(r"\s*([^\s!=(),]+)\s*(==|=|!=)\s*([^\s!=(),]*)\s*")
_EXISTENCE: Final = re.compile(r"\s*(!?)\s*([^\s!=(),]+)\s*")


def parse_selector(text: str) -> list[_Requirement]:
    """A label selector as the API server reads it; a ``StatusError`` 400 if it cannot."""
    requirements: list[_Requirement] = []
    for part in _split_requirements(text):
        if match := _SET_BASED.fullmatch(part):
            values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
            requirements.append(_Requirement(match[1], match[2], values))
        elif match := _EQUALITY.fullmatch(part):
            operator = "!=" if match[2] == "!=" else "="
            requirements.append(_Requirement(match[1], operator, frozenset({match[3]})))
        elif match := _EXISTENCE.fullmatch(part):
            requirements.append(_Requirement(match[2], "!exists" if match[1] else "exists"))
        else:
            raise error(400, "BadRequest", f"unable to parse requirement: {part.strip()!r}")
    return requirements


def _split_requirements(text: str) -> Iterator[str]:
    """Comma-separated requirements; commas inside ``in (a, b)`` do not separate."""
    depth, start = 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            yield text[start:index]
            start = index + 1
    if text[start:].strip():
        yield text[start:]


def _field(obj: Obj, path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which objects a list or watch asks for."""

    rtype: ResourceType
    namespace: str | None
    labels: Sequence[_Requirement] = ()
    fields: Sequence[_Requirement] = ()

    def matches(self, obj: Obj) -> bool:
        metadata = obj.get("metadata", {})
        if self.namespace is not None and metadata.get("namespace") != self.namespace:
            return False
        labels = metadata.get("labels") or {}
        if not all(requirement.matches(labels) for requirement in self.labels):
            return False
        values = {requirement.key: _field(obj, requirement.key) for requirement in self.fields}
        return all(requirement.matches(values) for requirement in self.fields)


def scope_of(rtype: ResourceType, namespace: str | None, params: Mapping[str, str]) -> Scope:
    fields = parse_selector(params.get("fieldSelector", ""))
    for requirement in fields:
        if requirement.key not in rtype.field_labels or requirement.operator not in ("=", "!="):
            raise error(400, "BadRequest", f'field label not supported: "{requirement.key}"')
    return Scope(rtype, namespace, parse_selector(params.get("labelSelector", "")), fields)


# --- patches ----------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def spec_part(obj: Obj) -> Obj:
    """What ``generation`` counts changes of: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Event:
    revision: int
    rtype: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None  # the object before a MODIFIED or DELETED

    def as_seen_by(self, scope: Scope) -> Obj | None:
        """The event a watch of ``scope`` gets, if any: an object that starts or stops
        matching the selectors is ADDED or DELETED for that watch, as on a real server."""
        if self.rtype != scope.rtype:
            return None
        is_match = scope.matches(self.obj)
        was_match = self.old is not None and scope.matches(self.old)
        if self.type == "MODIFIED":
            kind = {(True, True): "MODIFIED", (True, False): "ADDED", (False, True): "DELETED"}
            event_type = kind.get((is_match, was_match))
        else:
            event_type = self.type if is_match else None
        if event_type is None:
            return None
        return {"type": event_type, "object": copy.deepcopy(self.obj)}

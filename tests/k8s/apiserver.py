"""An emulated Kubernetes API for tests: kmock's ``KubernetesEmulator``, made to behave like a
real API server wherever ClusterLink relies on one.

Why an emulator: no real API server (kind, envtest) can run where these tests run, and canned
responses would test our assumptions instead of the API's rules. kmock serves Kubernetes URLs
over real HTTP and keeps objects, but leaves out what an informer and a store depend on. This
subclass adds, after the API server's documented behaviour:

1. One ``metadata.resourceVersion`` counter for all kinds, moved by every write; a write that
   changes nothing keeps it (and sends no event). ``uid``, ``creationTimestamp`` and
   ``generation: 1`` on create; ``generation`` + 1 when anything but metadata and status
   changes.
2. Lists carry ``metadata.resourceVersion``, sorted by namespace then name, filtered by
   ``labelSelector`` (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and
   ``fieldSelector`` (``metadata.name``, ``metadata.namespace``; pods also ``status.podIP``,
   ``status.phase``, ``spec.nodeName``).
3. Watches: without ``resourceVersion`` (or ``"0"``) the current objects as ADDED, then the
   changes; with ``resourceVersion=N`` the changes after N, from a bounded history. An N older
   than the history gets HTTP 200 and one ERROR event holding a Status with code 410 (reason
   ``Expired``), as the API server answers (lightkube raises ``ApiError`` 410 for it). A watch
   ends cleanly after ``timeoutSeconds``, on ``expire_watches()`` and on ``stop()``. With a
   selector, an object that starts or stops matching arrives as ADDED or DELETED.
4. The status subresource: PUT or PATCH of ``.../status`` changes only ``status``; POST, PUT
   and PATCH of the object leave ``status`` alone (kinds with the subresource only).
5. Writes: POST of an existing name is 409 AlreadyExists; PUT with a stale resourceVersion, a
   PATCH whose body names one, or a DELETE precondition that fails is 409 Conflict; PUT of a
   custom object without resourceVersion is 422; DELETE answers the object as it was;
   finalizers hold a deletion (``deletionTimestamp``) until they are removed; a namespaced
   object needs its namespace to exist (404). Merge patch (RFC 7386) and JSON patch (RFC 6902);
   a strategic merge patch of a custom object is 415, as on a real server, and of a core
   object is taken as a merge patch (the same for the fields our code writes).
6. Errors are ``Status`` objects with ``Content-Type: application/json`` exactly: lightkube
   makes an ``ApiError`` only of those (kmock's own add ``; charset=utf-8``).
7. Optional validation of custom objects against an OpenAPI v3 schema per resource (422
   Invalid), e.g. a CRD's ``openAPIV3Schema`` through ``KubeAPI.register_crd``.
8. The defaults our controllers read: a Service gets ``type: ClusterIP``, a ``clusterIP``
   (kept across updates), and ports with ``protocol: TCP`` and ``targetPort`` = ``port``; a Pod
   gets ``serviceAccountName: default`` and ``status.phase: Pending``; a Namespace
   ``status.phase: Active``. ``default``, ``kube-system``, ``kube-public`` and
   ``kube-node-lease`` exist from the start.

Not emulated: authentication and authorization, server-side apply, dry runs, watch bookmarks,
pagination (``limit`` is ignored), namespace deletion cascading, pruning of unknown fields,
admission beyond the defaults above.

Threads: the emulator runs on an event loop of its own in a daemon thread, so that synchronous
tests and async tests (whose loop runs the code under test) use it alike. ``KubeAPI``'s methods
are synchronous and safe from any thread: each runs on the emulator's loop and waits for it,
so a test acts on the API as another client would, without HTTP. The objects outlive
``stop()``/``start()``, which close and reopen the HTTP server on the same port: "the API went
away and came back".
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import jsonschema_rs
import kmock
from kmock._internal.rendering import Response  # not re-exported by kmock's package

__all__ = [
    "CLUSTERLINK_TYPES",
    "CORE_TYPES",
    "DEFAULT_NAMESPACES",
    "KubeAPI",
    "KubeEmulator",
    "ResourceType",
    "StatusError",
]

Obj = dict[str, Any]
T = TypeVar("T")

GROUP: Final = "clusterlink.net"
VERSION: Final = "v1alpha1"
DEFAULT_NAMESPACES: Final = ("default", "kube-system", "kube-public", "kube-node-lease")
# Fields of metadata that only the server sets; a client's values are ignored.
_SERVER_FIELDS: Final = (
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
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL.pattern}(\.{_DNS_LABEL.pattern})*")
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


def _error(status: int, reason: str, message: str, **details: Any) -> StatusError:
    return StatusError(status=status, reason=reason, message=message, details=details or None)


def _not_found(rtype: ResourceType, name: str) -> StatusError:
    return _error(
        404,
        "NotFound",
        f'{rtype.qualified} "{name}" not found',
        name=name,
        group=rtype.group,
        kind=rtype.plural,
    )


def _conflict(rtype: ResourceType, name: str) -> StatusError:
    return _error(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        name=name,
        group=rtype.group,
        kind=rtype.plural,
    )


def _invalid(rtype: ResourceType, name: str, problem: str) -> StatusError:
    return _error(
        422,
        "Invalid",
        f'{rtype.kind} "{name}" is invalid: {problem}',
        name=name,
        group=rtype.group,
        kind=rtype.kind,
    )


def _status_body(status: int, reason: str | None, message: str | None, details: Any) -> Obj:
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


def _json_response(body: object, status: int = 200) -> aiohttp.web.Response:
    # Bytes, so that aiohttp adds no charset: lightkube compares the header to the exact string.
    return aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


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
            raise _error(400, "BadRequest", f"unable to parse requirement: {part.strip()!r}")
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
class _Scope:
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


def _scope(rtype: ResourceType, namespace: str | None, params: Mapping[str, str]) -> _Scope:
    fields = parse_selector(params.get("fieldSelector", ""))
    for requirement in fields:
        if requirement.key not in rtype.field_labels or requirement.operator not in ("=", "!="):
            raise _error(400, "BadRequest", f'field label not supported: "{requirement.key}"')
    return _Scope(rtype, namespace, parse_selector(params.get("labelSelector", "")), fields)


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


def _spec_part(obj: Obj) -> Obj:
    """What ``generation`` counts changes of: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Event:
    revision: int
    rtype: ResourceType
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None  # the object before a MODIFIED or DELETED

    def as_seen_by(self, scope: _Scope) -> Obj | None:
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


# --- the emulator -----------------------------------------------------------------------------


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's rules (see the module docstring).

    Every method runs on the emulator's event loop. The ``op_*`` methods are the API's
    operations, shared by the HTTP handlers and ``KubeAPI``; they change state without
    awaiting anything, so each is atomic on the loop. Objects are kept in kmock's
    ``objects`` array (with their history), so kmock's assertions work on them too.
    """

    history_limit: int = 1000

    _types: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _events: deque[_Event] = attrs.field(factory=deque, init=False)
    _compacted: int = attrs.field(default=0, init=False)  # events up to here are forgotten
    _wakeup: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _watch_epoch: int = attrs.field(default=0, init=False)
    _watch_gate: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _open_watches: int = attrs.field(default=0, init=False)
    _next_cluster_ip: int = attrs.field(default=1, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock names no action for PUT; route it here (the other verbs reach the _serve_*).
        self.fallback[kmock.method.PUT] << self._serve_replace
        self._watch_gate.set()

    # --- registry ---------------------------------------------------------------------------

    def register(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self.resources[rtype.ref] = kmock.ResourceInfo(
            kind=rtype.kind,
            singular=rtype.kind.lower(),
            namespaced=rtype.namespaced,
            verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
            subresources={"status"} if rtype.has_status else set(),
        )

    def find_type(self, name: str) -> ResourceType:
        """A registered type by plural, kind or ``group/version/plural``, any case."""
        wanted = name.lower()
        for rtype in self._types.values():
            spellings = {rtype.plural, rtype.kind.lower(), f"{rtype.api_version}/{rtype.plural}"}
            if wanted in spellings:
                return rtype
        raise KeyError(f"no resource {name!r} is registered")

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def open_watches(self) -> int:
        return self._open_watches

    # --- operations -------------------------------------------------------------------------

    def op_list(self, rtype: ResourceType, namespace: str | None, params: Mapping[str, str]) -> Obj:
        self._check_scope(rtype, namespace, named=False)
        scope = _scope(rtype, namespace, params)
        items = [obj for obj in self._current(rtype) if scope.matches(obj)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self._revision)},
            "items": copy.deepcopy(items),
        }

    def op_get(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        self._check_scope(rtype, namespace, named=True)
        return copy.deepcopy(self._require(rtype, namespace, name))

    def op_create(self, rtype: ResourceType, namespace: str | None, body: Any) -> Obj:
        self._check_scope(rtype, namespace, named=True)
        obj = self._check_body(rtype, body)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid(
                rtype, "", "metadata.name: Required value: name or generateName is required"
            )
        self._check_name(rtype, name)
        if rtype.namespaced:
            if metadata.get("namespace", namespace) != namespace:
                raise _error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request",
                )
            self._require_namespace(namespace)
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if self._find(rtype, namespace, name) is not None:
            raise _error(
                409,
                "AlreadyExists",
                f'{rtype.qualified} "{name}" already exists',
                name=name,
                group=rtype.group,
                kind=rtype.plural,
            )
        for server_field in _SERVER_FIELDS:
            metadata.pop(server_field, None)
        if rtype.has_status:
            obj.pop("status", None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        self._default(rtype, obj, None)
        self._validate(rtype, obj)
        return self._commit("ADDED", rtype, obj, None)

    def op_replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
    ) -> Obj:
        """PUT: the whole object (or, for ``status``, the whole status)."""
        self._check_scope(rtype, namespace, named=True)
        current = self._require(rtype, namespace, name)
        obj = self._check_body(rtype, body)
        metadata = obj.get("metadata") or {}
        if metadata.get("name", name) != name:
            raise _error(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        wanted = metadata.get("resourceVersion")
        if wanted is None and rtype.is_custom:
            raise _invalid(
                rtype,
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            )
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise _conflict(rtype, name)
        return self._update(rtype, current, self._merge_parts(rtype, current, obj, subresource))

    def op_patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        content_type: str = "application/merge-patch+json",
        subresource: str | None = None,
    ) -> Obj:
        self._check_scope(rtype, namespace, named=True)
        current = self._require(rtype, namespace, name)
        kind = content_type.split(";", maxsplit=1)[0].strip().lower()
        if kind == "application/strategic-merge-patch+json" and rtype.is_custom:
            raise _error(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json, application/merge-patch+json, "
                f"application/apply-patch+yaml (strategic merge patch of {rtype.qualified})",
            )
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise _error(400, "BadRequest", "a merge patch must be a JSON object")
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                raise _conflict(rtype, name)
            patched = merge_patch(current, patch)
        elif kind == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(current, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _invalid(rtype, name, f"the JSON patch does not apply: {exc}") from exc
        else:
            raise _error(415, "UnsupportedMediaType", f"patch type {kind!r} is not emulated")
        return self._update(rtype, current, self._merge_parts(rtype, current, patched, subresource))

    def op_delete(
        self, rtype: ResourceType, namespace: str | None, name: str, options: Any = None
    ) -> Obj:
        self._check_scope(rtype, namespace, named=True)
        current = self._require(rtype, namespace, name)
        preconditions = (options or {}).get("preconditions") or {}
        metadata = current["metadata"]
        for key in ("resourceVersion", "uid"):
            if key in preconditions and preconditions[key] != metadata[key]:
                raise _conflict(rtype, name)
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return copy.deepcopy(current)
            marked = copy.deepcopy(current)
            marked["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            return self._commit("MODIFIED", rtype, marked, current)
        self._remove(rtype, current)
        return copy.deepcopy(current)

    def expire_watches(self) -> None:
        self._watch_epoch += 1
        self._notify()

    def compact(self) -> None:
        """Forget every event so far: a watch from any older resourceVersion gets 410."""
        self._events.clear()
        self._compacted = self._revision

    def hold_watches(self, held: bool) -> None:
        if held:
            self._watch_gate.clear()
        else:
            self._watch_gate.set()

    # --- HTTP handlers (kmock's fallbacks) --------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator._handle: it would store every write its own way before our
        # handlers run. kmock's reactions (a test's own, then these fallbacks) still apply.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            body = _status_body(exc.status, exc.reason, exc.message, exc.details)
            return _json_response(body, exc.status)
        return await super()._render_error(exc)

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace, _ = self._target(request)
        return self.op_list(rtype, namespace, request.params)

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace, name = self._named_target(request)
        self._no_subresource(request)
        return self.op_get(rtype, namespace, name)

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace, _ = self._target(request)
        self._no_dry_run(request)
        created = self.op_create(rtype, namespace, _body(request))
        return Response(status=201, payload=created)

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace, name = self._named_target(request)
        self._no_dry_run(request)
        content_type = _header(request, "Content-Type") or "application/merge-patch+json"
        subresource = self._subresource(rtype, request)
        return self.op_patch(
            rtype,
            namespace,
            name,
            _body(request),
            content_type=content_type,
            subresource=subresource,
        )

    async def _serve_replace(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace, name = self._named_target(request)
        self._no_dry_run(request)
        subresource = self._subresource(rtype, request)
        return self.op_replace(rtype, namespace, name, _body(request), subresource)

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        rtype, namespace, name = self._named_target(request)
        self._no_dry_run(request)
        self._no_subresource(request)
        return self.op_delete(rtype, namespace, name, _body(request) if request.body else None)

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        # Checks that can fail come before the first chunk, so that they are HTTP errors.
        rtype, namespace, name = self._target(request)
        params = dict(request.params)
        if name is not None:  # a watch of one object, as ?fieldSelector=metadata.name=
            params["fieldSelector"] = f"metadata.name={name}"
        self._check_scope(rtype, namespace, named=False)
        scope = _scope(rtype, namespace, params)
        since = params.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise _error(400, "BadRequest", f"invalid resource version: {since!r}")
        timeout_s = float(params["timeoutSeconds"]) if "timeoutSeconds" in params else None
        yield b""  # sends the headers: the client's request returns, as with a real server
        await self._watch_gate.wait()
        async for event in self._events_for(scope, since, timeout_s):
            yield event

    async def _events_for(
        self, scope: _Scope, since: str, timeout_s: float | None
    ) -> AsyncIterator[Obj]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        epoch = self._watch_epoch
        if since in ("", "0"):
            # The objects and the cursor at one instant: writes served while these are being
            # sent come after the cursor, and so are sent next.
            cursor = self._revision
            current = [copy.deepcopy(o) for o in self._current(scope.rtype) if scope.matches(o)]
        else:
            cursor, current = int(since), []
        self._open_watches += 1
        try:
            for obj in current:
                yield {"type": "ADDED", "object": obj}
            while True:
                if cursor < self._compacted:
                    yield _expired(cursor, self._compacted)
                    return
                wakeup = self._wakeup
                for event in [e for e in self._events if e.revision > cursor]:
                    cursor = event.revision
                    if (seen := event.as_seen_by(scope)) is not None:
                        yield seen
                if epoch != self._watch_epoch:
                    return
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), remaining)
        finally:
            self._open_watches -= 1

    # --- internals --------------------------------------------------------------------------

    def _target(self, request: kmock.Request) -> tuple[ResourceType, str | None, str | None]:
        ref = request.resource
        rtype = next((t for t in self._types.values() if ref is not None and t.ref == ref), None)
        if rtype is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        return rtype, request.namespace, request.name

    def _named_target(self, request: kmock.Request) -> tuple[ResourceType, str | None, str]:
        rtype, namespace, name = self._target(request)
        if name is None:  # kmock names these actions only for URLs with a name
            raise _error(405, "MethodNotAllowed", "this request needs an object's name")
        return rtype, namespace, name

    def _subresource(self, rtype: ResourceType, request: kmock.Request) -> str | None:
        if request.subresource is None or (request.subresource == "status" and rtype.has_status):
            return request.subresource
        raise _error(404, "NotFound", "the server could not find the requested resource")

    def _no_subresource(self, request: kmock.Request) -> None:
        if request.subresource is not None:
            raise _error(
                405, "MethodNotAllowed", f"this emulator serves no {request.subresource} here"
            )

    @staticmethod
    def _no_dry_run(request: kmock.Request) -> None:
        if "dryRun" in request.params:
            raise _error(400, "BadRequest", "dryRun is not emulated")

    @staticmethod
    def _check_scope(rtype: ResourceType, namespace: str | None, *, named: bool) -> None:
        if rtype.namespaced and named and not namespace:
            raise _error(404, "NotFound", f"{rtype.qualified} are namespaced; name a namespace")
        if not rtype.namespaced and namespace:
            raise _error(404, "NotFound", f"{rtype.qualified} are cluster-scoped")

    @staticmethod
    def _check_body(rtype: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "the request body must be a JSON object")
        for key, expected in (("apiVersion", rtype.api_version), ("kind", rtype.kind)):
            given = body.get(key, expected)
            if given != expected:
                raise _error(
                    400, "BadRequest", f"{key} {given!r} does not match {expected!r} of the URL"
                )
        # apiVersion and kind first, as the API server writes them
        obj: Obj = {"apiVersion": rtype.api_version, "kind": rtype.kind}
        obj.update(copy.deepcopy(body))
        return obj

    @staticmethod
    def _check_name(rtype: ResourceType, name: str) -> None:
        rule, limit, words = {
            "label": (_DNS_LABEL, 63, "a lowercase RFC 1123 label"),
            "1035": (_DNS_1035_LABEL, 63, "a DNS-1035 label"),
        }.get(rtype.name_rule, (_DNS_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"))
        if len(name) > limit or rule.fullmatch(name) is None:
            raise _invalid(rtype, name, f'metadata.name: Invalid value: "{name}": must be {words}')

    def _validate(self, rtype: ResourceType, obj: Obj) -> None:
        if rtype.schema is None:
            return
        errors = list(jsonschema_rs.validator_for(dict(rtype.schema)).iter_errors(obj))
        if errors:
            first = errors[0]
            where = ".".join(str(part) for part in first.instance_path) or "<root>"
            raise _invalid(rtype, obj["metadata"]["name"], f"{where}: {first.message}")

    def _merge_parts(
        self, rtype: ResourceType, current: Obj, wanted: Obj, subresource: str | None
    ) -> Obj:
        """The object after a write of ``wanted``: status from the status subresource only,
        everything else from the object, server fields of metadata always kept."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in wanted:
                new["status"] = copy.deepcopy(wanted["status"])
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(wanted)
        if rtype.has_status:
            new.pop("status", None)
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        metadata = new.setdefault("metadata", {})
        for key in ("name", "namespace", *_SERVER_FIELDS):
            metadata.pop(key, None)
            if key in current["metadata"]:
                metadata[key] = current["metadata"][key]
        return new

    def _update(self, rtype: ResourceType, current: Obj, new: Obj) -> Obj:
        self._default(rtype, new, current)
        if _spec_part(new) != _spec_part(current):
            new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        if new == current:
            return copy.deepcopy(current)  # nothing changed: no new resourceVersion, no event
        self._validate(rtype, new)
        metadata = new["metadata"]
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            self._remove(rtype, current)
            return copy.deepcopy(new)
        return self._commit("MODIFIED", rtype, new, current)

    def _default(self, rtype: ResourceType, obj: Obj, current: Obj | None) -> None:
        """What admission and the API's defaulting add to the objects our code reads."""
        if rtype.kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            old_ip = ((current or {}).get("spec") or {}).get("clusterIP")
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = old_ip or self._allocate_cluster_ip()
            obj.setdefault("status", {"loadBalancer": {}})
        elif rtype.kind == "Pod":
            obj.setdefault("spec", {}).setdefault("serviceAccountName", "default")
            obj.setdefault("status", {"phase": "Pending"})
        elif rtype.kind == "Namespace":
            obj.setdefault("status", {"phase": "Active"})

    def _allocate_cluster_ip(self) -> str:
        number = self._next_cluster_ip
        self._next_cluster_ip += 1
        return f"10.96.{number // 250}.{number % 250 + 1}"

    def _require_namespace(self, namespace: str | None) -> None:
        namespaces = self.find_type("namespaces")
        if namespace is None or self._find(namespaces, None, namespace) is None:
            raise _not_found(namespaces, namespace or "")

    def _key(self, rtype: ResourceType, namespace: str | None, name: str) -> Any:
        return (rtype.ref, namespace if rtype.namespaced else None, name)

    def _find(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj | None:
        key = self._key(rtype, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        found: Obj = self.objects[key].raw
        return found

    def _require(self, rtype: ResourceType, namespace: str | None, name: str) -> Obj:
        found = self._find(rtype, namespace, name)
        if found is None:
            raise _not_found(rtype, name)
        return found

    def _current(self, rtype: ResourceType) -> list[Obj]:
        return [
            obj.raw
            for (ref, _, _), obj in self.objects.items()
            if ref == rtype.ref and not obj.deleted
        ]

    def _commit(self, event_type: str, rtype: ResourceType, obj: Obj, old: Obj | None) -> Obj:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        key = self._key(rtype, obj["metadata"].get("namespace"), obj["metadata"]["name"])
        if key in self.objects:
            self.objects[key].history.append(copy.deepcopy(obj))
        else:
            self.objects[key] = copy.deepcopy(obj)
        self._record(event_type, rtype, obj, old)
        return copy.deepcopy(obj)

    def _remove(self, rtype: ResourceType, current: Obj) -> None:
        self._revision += 1
        metadata = current["metadata"]
        self.objects[self._key(rtype, metadata.get("namespace"), metadata["name"])].delete()
        # The DELETED event carries the revision of the deletion, as the watch cache sends it.
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(self._revision)
        self._record("DELETED", rtype, gone, current)

    def _record(self, event_type: str, rtype: ResourceType, obj: Obj, old: Obj | None) -> None:
        self._events.append(_Event(self._revision, rtype, event_type, copy.deepcopy(obj), old))
        while len(self._events) > self.history_limit:
            self._compacted = self._events.popleft().revision
        self._notify()

    def _notify(self) -> None:
        """Wake every watch: each swaps in the new Event before it looks at the history."""
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()


def _expired(cursor: int, compacted: int) -> Obj:
    status = _status_body(
        410, "Expired", f"too old resource version: {cursor} ({compacted + 1})", None
    )
    return {"type": "ERROR", "object": status}


def _header(request: kmock.Request, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in request.headers.items() if key.lower() == wanted), None)


def _body(request: kmock.Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError as exc:
        raise _error(400, "BadRequest", f"the request body is not JSON: {exc}") from exc


# --- the test-facing side ---------------------------------------------------------------------


class KubeAPI:
    """An emulated API server on 127.0.0.1, with a synchronous API for tests.

    ``kind`` arguments accept a plural (``exports``), a kind (``Export``) or
    ``group/version/plural``. Every write behaves as the same request over HTTP would (status
    dropped on create of kinds with the subresource; write it with ``patch(...,
    subresource="status")``), and a refusal raises ``StatusError``.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        history_limit: int = 1000,
        types: Sequence[ResourceType] = CLUSTERLINK_TYPES + CORE_TYPES,
        namespaces: Sequence[str] = DEFAULT_NAMESPACES,
        crds: Sequence[Mapping[str, Any]] = (),
        shutdown_timeout_s: float = 2.0,
    ) -> None:
        """``crds``: CustomResourceDefinitions to serve in place of the plain ``types`` of
        their names, with their schemas enforced (``clusterlink.api.crds.crds()``)."""
        self._port = port
        self._shutdown_timeout_s = shutdown_timeout_s
        self._runner: aiohttp.web.ServerRunner | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-api", daemon=True)
        self._thread.start()
        self.emulator = self._call(self._enter(history_limit))
        for rtype in types:
            self.emulator.register(rtype)
        for crd in crds:
            self.register_crd(crd)
        for namespace in namespaces:
            self.create("namespaces", {"metadata": {"name": namespace}})

    # --- life cycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the emulated API has not been started yet")
        return self._port

    @property
    def is_serving(self) -> bool:
        return self._runner is not None

    def start(self) -> KubeAPI:
        """Serve HTTP (again): on the port of the first start, or the one given."""
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Stop serving HTTP: open watches end, new connections are refused. State is kept."""
        self._call(self._stop())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._stop())
        self._call(self.emulator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> KubeAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- objects ----------------------------------------------------------------------------

    def register(self, rtype: ResourceType) -> None:
        self._run(lambda: self.emulator.register(rtype))

    def register_crd(self, crd: Mapping[str, Any]) -> ResourceType:
        """Serve (or serve anew) the resource a CustomResourceDefinition defines, with its
        served version's ``openAPIV3Schema`` as the schema objects are validated against."""
        spec = crd["spec"]
        version = next(v for v in spec["versions"] if v.get("served", True))
        rtype = ResourceType(
            spec["group"],
            version["name"],
            spec["names"]["plural"],
            spec["names"]["kind"],
            spec.get("scope", "Namespaced") == "Namespaced",
            "status" in (version.get("subresources") or {}),
            schema=(version.get("schema") or {}).get("openAPIV3Schema"),
        )
        self.register(rtype)
        return rtype

    def create(self, kind: str, obj: Mapping[str, Any], *, namespace: str | None = None) -> Obj:
        def create() -> Obj:
            rtype = self.emulator.find_type(kind)
            where = namespace or (obj.get("metadata") or {}).get("namespace")
            if rtype.namespaced and where is None:
                where = "default"
            return self.emulator.op_create(rtype, where if rtype.namespaced else None, obj)

        return self._run(create)

    def get(self, kind: str, name: str, *, namespace: str | None = None) -> Obj:
        return self._on(kind, namespace, lambda rtype, ns: self.emulator.op_get(rtype, ns, name))

    def replace(
        self,
        kind: str,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> Obj:
        """PUT: ``obj`` must carry the resourceVersion it was read at (custom kinds)."""
        name = obj["metadata"]["name"]
        where = namespace or obj["metadata"].get("namespace")
        return self._on(
            kind,
            where,
            lambda rtype, ns: self.emulator.op_replace(rtype, ns, name, obj, subresource),
        )

    def patch(
        self,
        kind: str,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        patch_type: str = "application/merge-patch+json",
    ) -> Obj:
        return self._on(
            kind,
            namespace,
            lambda rtype, ns: self.emulator.op_patch(
                rtype, ns, name, patch, content_type=patch_type, subresource=subresource
            ),
        )

    def delete(self, kind: str, name: str, *, namespace: str | None = None) -> Obj:
        return self._on(kind, namespace, lambda rtype, ns: self.emulator.op_delete(rtype, ns, name))

    def objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        """The current objects of ``kind``, sorted by namespace then name (as a list is)."""

        def items() -> list[Obj]:
            rtype = self.emulator.find_type(kind)
            listed = self.emulator.op_list(rtype, namespace if rtype.namespaced else None, {})
            items: list[Obj] = listed["items"]
            return items

        return self._run(items)

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the latest write (of any kind)."""
        return self._run(lambda: self.emulator.revision)

    # --- faults and time --------------------------------------------------------------------

    def expire_watches(self) -> None:
        """End every open watch cleanly, as ``timeoutSeconds`` running out would."""
        self._run(self.emulator.expire_watches)

    def compact(self) -> None:
        """Drop the event history: resuming a watch from any older resourceVersion gets 410."""
        self._run(self.emulator.compact)

    @contextlib.contextmanager
    def holding_watches(self) -> Iterator[None]:
        """Watch requests that arrive inside the block wait (their headers sent) until it
        ends, then go on from their resourceVersion: a client slow to resume a watch."""
        self._run(lambda: self.emulator.hold_watches(True))
        try:
            yield
        finally:
            self._run(lambda: self.emulator.hold_watches(False))

    @property
    def open_watches(self) -> int:
        """Watches currently streaming (past the hold, if any)."""
        return self._run(lambda: self.emulator.open_watches)

    def requests(self, kind: str, action: str) -> int:
        """How many requests of ``action`` (``list``, ``watch``, ``create``, ``fetch``,
        ``update``, ``delete``) for ``kind`` were served."""

        def count() -> int:
            rtype = self.emulator.find_type(kind)
            wanted = kmock.action(action)
            return sum(
                request.resource == rtype.ref and request.action == wanted
                for request in self.emulator
            )

        return self._run(count)

    def request_log(self) -> list[tuple[str, str, str]]:
        """Every HTTP request served so far: (method, path, Content-Type or "")."""

        def log() -> list[tuple[str, str, str]]:
            return [
                (str(r.method.value), r.url.path, _header(r, "Content-Type") or "")
                for r in self.emulator
            ]

        return self._run(log)

    def fail(
        self,
        request: str,
        status: int = 500,
        reason: str = "InternalError",
        message: str = "a failure the test asked for",
    ) -> None:
        """From now on, answer requests matching ``request`` (kmock's pattern, e.g. ``"delete
        /apis/clusterlink.net/v1alpha1/namespaces/default/exports/b"``) with a Status of
        ``status``: a failure only the API could cause. The object is left as it was."""
        refusal = _error(status, reason, message)

        def react() -> None:
            self.emulator[request] << refusal

        self._run(react)

    # --- internals --------------------------------------------------------------------------

    async def _enter(self, history_limit: int) -> KubeEmulator:
        emulator = KubeEmulator(history_limit=history_limit)
        return await emulator.__aenter__()

    async def _start(self) -> None:
        if self._runner is not None:
            return
        # aiohttp's own server rather than kmock.Server: that one also patches aiohttp's
        # resolver for the whole process (for host-name interception we do not use), and a
        # restart must bind the same port.
        server = aiohttp.web.Server(self.emulator, handler_cancellation=True)
        runner = aiohttp.web.ServerRunner(server, shutdown_timeout=self._shutdown_timeout_s)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", self._port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._runner = runner

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.emulator.expire_watches()  # lets the streaming handlers finish
        await runner.cleanup()

    def _on(
        self, kind: str, namespace: str | None, operation: Callable[[ResourceType, str | None], T]
    ) -> T:
        def run() -> T:
            rtype = self.emulator.find_type(kind)
            return operation(rtype, (namespace or "default") if rtype.namespaced else None)

        return self._run(run)

    def _run(self, function: Callable[[], T]) -> T:
        async def run() -> T:
            return function()

        return self._call(run())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

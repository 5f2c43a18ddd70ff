"""kmock's ``KubernetesEmulator``, made to follow the API server's rules (``apirules.py``);
``apiserver.py`` lists what that adds to kmock and runs it.

Every method runs on the emulator's own event loop. The ``op_*`` methods are the API's
operations, shared by the HTTP handlers and the tests' synchronous API; each changes state
without awaiting anything, so each is atomic on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonschema_rs
import kmock
from kmock._internal.rendering import Response  # not re-exported by kmock's package

from clusterlink.api.crds import PEER_GATEWAYS_RULE
from tests.k8s.apirules import (
    DNS_1035_LABEL,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    SERVER_FIELDS,
    Event,
    Obj,
    ResourceType,
    Scope,
    conflict,
    error,
    invalid,
    merge_patch,
    not_found,
    now,
    scope_of,
    spec_part,
    status_body,
)

__all__ = ["KubeEmulator", "header"]


def json_response(body: object, status: int = 200) -> aiohttp.web.Response:
    # Bytes, so that aiohttp adds no charset: lightkube compares the header to the exact string.
    return aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's rules. Objects are kept in kmock's ``objects``
    array (with their history), so kmock's own assertions work on them too."""

    history_limit: int = 1000

    _types: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _events: deque[Event] = attrs.field(factory=deque, init=False)
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
        scope = scope_of(rtype, namespace, params)
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
            raise invalid(
                rtype, "", "metadata.name: Required value: name or generateName is required"
            )
        self._check_name(rtype, name)
        if rtype.namespaced:
            if metadata.get("namespace", namespace) != namespace:
                raise error(
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
            raise error(
                409,
                "AlreadyExists",
                f'{rtype.qualified} "{name}" already exists',
                name=name,
                group=rtype.group,
                kind=rtype.plural,
            )
        for server_field in SERVER_FIELDS:
            metadata.pop(server_field, None)
        if rtype.has_status:
            obj.pop("status", None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
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
            raise error(
                400, "BadRequest", "the name of the object does not match the name on the URL"
            )
        wanted = metadata.get("resourceVersion")
        if wanted is None and rtype.is_custom:
            raise invalid(
                rtype,
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            )
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise conflict(rtype, name)
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
            raise error(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json-patch+json, application/merge-patch+json, "
                f"application/apply-patch+yaml (strategic merge patch of {rtype.qualified})",
            )
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise error(400, "BadRequest", "a merge patch must be a JSON object")
            wanted = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
                raise conflict(rtype, name)
            patched = merge_patch(current, patch)
        elif kind == "application/json-patch+json":
            try:
                patched = jsonpatch.apply_patch(current, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise invalid(rtype, name, f"the JSON patch does not apply: {exc}") from exc
        else:
            raise error(415, "UnsupportedMediaType", f"patch type {kind!r} is not emulated")
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
                raise conflict(rtype, name)
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return copy.deepcopy(current)
            marked = copy.deepcopy(current)
            marked["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
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
            body = status_body(exc.status, exc.reason, exc.message, exc.details)
            return json_response(body, exc.status)
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
        content_type = header(request, "Content-Type") or "application/merge-patch+json"
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
        scope = scope_of(rtype, namespace, params)
        since = params.get("resourceVersion", "")
        if since not in ("", "0") and not since.isdigit():
            raise error(400, "BadRequest", f"invalid resource version: {since!r}")
        timeout_s = float(params["timeoutSeconds"]) if "timeoutSeconds" in params else None
        yield b""  # sends the headers: the client's request returns, as with a real server
        await self._watch_gate.wait()
        async for event in self._events_for(scope, since, timeout_s):
            yield event

    async def _events_for(
        self, scope: Scope, since: str, timeout_s: float | None
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
            raise error(404, "NotFound", "the server could not find the requested resource")
        return rtype, request.namespace, request.name

    def _named_target(self, request: kmock.Request) -> tuple[ResourceType, str | None, str]:
        rtype, namespace, name = self._target(request)
        if name is None:  # kmock names these actions only for URLs with a name
            raise error(405, "MethodNotAllowed", "this request needs an object's name")
        return rtype, namespace, name

    def _subresource(self, rtype: ResourceType, request: kmock.Request) -> str | None:
        if request.subresource is None or (request.subresource == "status" and rtype.has_status):
            return request.subresource
        raise error(404, "NotFound", "the server could not find the requested resource")

    def _no_subresource(self, request: kmock.Request) -> None:
        if request.subresource is not None:
            raise error(
                405, "MethodNotAllowed", f"this emulator serves no {request.subresource} here"
            )

    @staticmethod
    def _no_dry_run(request: kmock.Request) -> None:
        if "dryRun" in request.params:
            raise error(400, "BadRequest", "dryRun is not emulated")

    @staticmethod
    def _check_scope(rtype: ResourceType, namespace: str | None, *, named: bool) -> None:
        if rtype.namespaced and named and not namespace:
            raise error(404, "NotFound", f"{rtype.qualified} are namespaced; name a namespace")
        if not rtype.namespaced and namespace:
            raise error(404, "NotFound", f"{rtype.qualified} are cluster-scoped")

    @staticmethod
    def _check_body(rtype: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise error(400, "BadRequest", "the request body must be a JSON object")
        for key, expected in (("apiVersion", rtype.api_version), ("kind", rtype.kind)):
            given = body.get(key, expected)
            if given != expected:
                raise error(
                    400, "BadRequest", f"{key} {given!r} does not match {expected!r} of the URL"
                )
        # apiVersion and kind first, as the API server writes them
        obj: Obj = {"apiVersion": rtype.api_version, "kind": rtype.kind}
        obj.update(copy.deepcopy(body))
        return obj

    @staticmethod
    def _check_name(rtype: ResourceType, name: str) -> None:
        rule, limit, words = {
            "label": (DNS_LABEL, 63, "a lowercase RFC 1123 label"),
            "1035": (DNS_1035_LABEL, 63, "a DNS-1035 label"),
        }.get(rtype.name_rule, (DNS_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"))
        if len(name) > limit or rule.fullmatch(name) is None:
            raise invalid(rtype, name, f'metadata.name: Invalid value: "{name}": must be {words}')

    def _validate(self, rtype: ResourceType, obj: Obj) -> None:
        if rtype.schema is None:
            return
        errors = list(jsonschema_rs.validator_for(dict(rtype.schema)).iter_errors(obj))
        if errors:
            first = errors[0]
            where = ".".join(str(part) for part in first.instance_path) or "<root>"
            raise invalid(rtype, obj["metadata"]["name"], f"{where}: {first.message}")
        for rule in rtype.schema.get("x-kubernetes-validations") or []:
            if not _holds(rule["rule"], obj):
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                raise invalid(rtype, obj["metadata"]["name"], f"<root>: Invalid value: {message}")

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
        for key in ("name", "namespace", *SERVER_FIELDS):
            metadata.pop(key, None)
            if key in current["metadata"]:
                metadata[key] = current["metadata"][key]
        return new

    def _update(self, rtype: ResourceType, current: Obj, new: Obj) -> Obj:
        self._default(rtype, new, current)
        if spec_part(new) != spec_part(current):
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
            raise not_found(namespaces, namespace or "")

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
            raise not_found(rtype, name)
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
        self._events.append(Event(self._revision, rtype, event_type, copy.deepcopy(obj), old))
        while len(self._events) > self.history_limit:
            self._compacted = self._events.popleft().revision
        self._notify()

    def _notify(self) -> None:
        """Wake every watch: each swaps in the new Event before it looks at the history."""
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()


def _expired(cursor: int, compacted: int) -> Obj:
    status = status_body(
        410, "Expired", f"too old resource version: {cursor} ({compacted + 1})", None
    )
    return {"type": "ERROR", "object": status}


def header(request: kmock.Request, name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in request.headers.items() if key.lower() == wanted), None)


def _body(request: kmock.Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError as exc:
        raise error(400, "BadRequest", f"the request body is not JSON: {exc}") from exc


# The shapes of CEL rule our CRDs use (``size(self.metadata.name) <= N``, and the Peer's rule
# that it has gateways or dials in). CEL itself cannot run here; a rule of any other shape is a
# test setup error, not silently passed.
_NAME_SIZE_RULE = re.compile(r"size\(self\.metadata\.name\)\s*<=\s*(\d+)")


def _peer_is_reachable(obj: Obj) -> bool:
    spec = obj.get("spec") or {}
    return spec.get("dialsIn") is True or bool(spec.get("gateways"))


_WHOLE_RULES: dict[str, Callable[[Obj], bool]] = {
    PEER_GATEWAYS_RULE["rule"]: _peer_is_reachable,
}


def _holds(rule: str, obj: Obj) -> bool:
    whole = _WHOLE_RULES.get(rule)
    if whole is not None:
        return whole(obj)
    found = _NAME_SIZE_RULE.fullmatch(rule.strip())
    if found is None:
        raise AssertionError(f"the emulated API cannot evaluate the CEL rule {rule!r}")
    return len(obj["metadata"]["name"]) <= int(found.group(1))

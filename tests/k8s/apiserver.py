"""An emulated Kubernetes API for tests: kmock's ``KubernetesEmulator``, made to behave like a
real API server wherever ClusterLink relies on one.

Why an emulator: no real API server (kind, envtest) can run where these tests run, and canned
responses would test our assumptions instead of the API's rules. kmock serves Kubernetes URLs
over real HTTP and keeps objects, but leaves out what an informer and a store depend on. Its
subclass ``KubeEmulator`` (``emulator.py``, with the rules as data and pure functions in
``apirules.py``) adds, after the API server's documented behaviour:

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
import threading
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp.web
import kmock

from tests.k8s.apirules import (
    CLUSTERLINK_TYPES,
    CORE_TYPES,
    DEFAULT_NAMESPACES,
    Obj,
    ResourceType,
    StatusError,
    error,
    merge_patch,
)
from tests.k8s.emulator import KubeEmulator, header

__all__ = [
    "CLUSTERLINK_TYPES",
    "CORE_TYPES",
    "DEFAULT_NAMESPACES",
    "KubeAPI",
    "KubeEmulator",
    "ResourceType",
    "StatusError",
    "merge_patch",
]

T = TypeVar("T")


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
                (str(r.method.value), r.url.path, header(r, "Content-Type") or "")
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
        refusal = error(status, reason, message)

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

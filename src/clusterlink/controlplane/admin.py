"""The admin API: the CLI's only way into a running gateway (docs/admin-api.md).

mTLS on ``--admin-listen``: the TLS layer admits only certificates of this fabric (a client
without one, or with one of another fabric, fails the handshake), and every request, to any
path, is then checked for *this peer's admin identity* (``urn:clusterlink:admin:<peer>``): a
gateway certificate or another peer's admin certificate gets ``403``. There is no way to turn
authentication off. Each refusal, handshake or ``403``, is logged through a ``RefusalLog``, so a
client retrying in a loop cannot flood the log.

The TLS handshake is ours (``transport.tls.TLSLayer`` under aiohttp), not asyncio's: asyncio
drops a failed server handshake silently, and an operator needs to see why a client was refused.

The routes that join sites (``invite``, ``link``) live in ``admin_links``, the flow records in
``admin_flows``, ``explain`` in ``admin_explain``; the rest are here.

Errors leave as JSON ``{reason, message, field?}`` with the status of docs/admin-api.md, for
unknown routes and methods too; a ``ClusterLinkError`` is mapped in one place (``_errors``),
anything else is a bug and answers ``500`` with a log line. Requests are checked by
``admin_input`` before anything acts on them. Documents leave with their *runtime* status
merged in: a Peer's reachability from the heartbeats, an Import's listening address from the
data plane and its conditions (``import_conditions``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final

from aiohttp import web

from clusterlink import __version__
from clusterlink.addresses import format_address
from clusterlink.api import Import, ImportStatus, Peer, Resource, ResourceKey, to_dict, with_status
from clusterlink.certs import admin_peer_of, peer_name_of
from clusterlink.controlplane.admin_explain import ExplainRoutes
from clusterlink.controlplane.admin_flows import FlowRoutes
from clusterlink.controlplane.admin_input import (
    parse_close_tunnels,
    parse_documents_body,
    parse_dry_run,
    parse_key,
    parse_kind,
    parse_namespace,
)
from clusterlink.controlplane.admin_links import LinkRoutes
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.health import PeerHealth
from clusterlink.controlplane.http_serving import serve_app
from clusterlink.controlplane.import_conditions import ImportConditions
from clusterlink.controlplane.refusals import RefusalLog, describe_handshake_failure
from clusterlink.controlplane.resources import ResourceService
from clusterlink.errors import (
    AlreadyExistsError,
    BadRequest,
    ClusterLinkError,
    ConflictError,
    LinkRefused,
    NotFoundError,
    StoreError,
    ValidationError,
)
from clusterlink.store import Store
from clusterlink.transport.tls import TLSLayer

__all__ = ["MAX_BODY_BYTES", "AdminServer"]

log = logging.getLogger("clusterlink.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
"""The largest request body (an apply of thousands of documents fits easily)."""


def _error(
    status: int,
    reason: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, Any] = {"reason": reason, "message": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


class _MutualTLSSite(web.BaseSite):
    """An aiohttp site whose connections are ``TLSLayer``s made by ``accept``."""

    def __init__(
        self, runner: web.BaseRunner, sock: socket.socket, accept: Callable[[], TLSLayer]
    ) -> None:
        super().__init__(runner)
        self._sock = sock
        self._accept = accept

    @property
    def name(self) -> str:
        return "https://" + format_address(self._sock.getsockname()[:2])

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, sock=self._sock)


class AdminServer:
    def __init__(
        self,
        *,
        local_name: str,
        context: Callable[[], ssl.SSLContext],
        store: Store,
        catalog: Catalog,
        resources: ResourceService,
        health: PeerHealth,
        gateway_info: Callable[[], Mapping[str, Any]],
        close_revoked_tunnels: Callable[[], int],
        links: LinkRoutes,
        flows: FlowRoutes,
        explain: ExplainRoutes,
        handshake_timeout_s: float = 5.0,
    ) -> None:
        self.local_name = local_name
        self._context = context
        self.store = store
        self.catalog = catalog
        self.resources = resources
        self.health = health
        self.gateway_info = gateway_info
        self.close_revoked_tunnels = close_revoked_tunnels
        self.handshake_timeout_s = handshake_timeout_s
        self.refusals = RefusalLog(log)
        self.import_conditions = ImportConditions()
        self._runner: web.AppRunner | None = None
        self.app = web.Application(
            middlewares=[self._errors, self._authenticate], client_max_size=MAX_BODY_BYTES
        )
        self.app.add_routes(
            [
                web.get("/v1/status", self.status),
                web.post("/v1/apply", self.apply),
                web.post("/v1/delete", self.delete_documents),
                web.get("/v1/resources/{kind}", self.list),
                web.get("/v1/resources/{kind}/{name}", self.get),
                web.delete("/v1/resources/{kind}/{name}", self.delete),
                web.get("/v1/openapi.json", self.openapi),
                *links.routes(),
                *flows.routes(),
                *explain.routes(),
            ]
        )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.import_conditions.update(self.catalog.snapshot)
        self.catalog.subscribe(lambda _old, new: self.import_conditions.update(new))

        def site(runner: web.BaseRunner, sock: socket.socket) -> web.BaseSite:
            return _MutualTLSSite(runner, sock, self._accept)

        self._runner, bound = await serve_app(self.app, host, port, site=site)
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- connections ------------------------------------------------------------------------

    def _accept(self) -> TLSLayer:
        """A new connection: our TLS handshake first, then aiohttp's request handler."""
        assert self._runner is not None and self._runner.server is not None
        layer = TLSLayer(
            self._context(),
            self._runner.server(),
            server_side=True,
            handshake_timeout_s=self.handshake_timeout_s,
        )
        layer.handshake_done.add_done_callback(partial(self._on_handshake, layer))
        return layer

    def _on_handshake(self, layer: TLSLayer, done: asyncio.Future[None]) -> None:
        exc = None if done.cancelled() else done.exception()
        if exc is None:
            return
        peername = layer.raw.get_extra_info("peername") if layer.raw is not None else None
        host, client = _client_of(peername)
        refusal = describe_handshake_failure(exc, peer=self.local_name)
        if refusal is None:
            log.debug("admin API connection from %s ended in the TLS handshake: %s", client, exc)
            return
        kind, reason = refusal
        line = f"admin API refused a TLS handshake from {client}: {reason}"
        self.refusals.refused(host, kind, line)

    # -- middlewares ------------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        admin_of = admin_peer_of(cert)
        if admin_of == self.local_name:
            return await handler(request)
        local, use = self.local_name, f"use {self.local_name}'s admin/cert.pem"
        if admin_of is not None:
            what = f"the admin certificate of peer {admin_of!r}"
            message = f"{what} cannot administer peer {local!r}; {use}"
        else:
            gateway = peer_name_of(cert)
            what = (
                "a certificate that names no admin of this fabric"
                if gateway is None
                else f"the gateway certificate of peer {gateway!r}"
            )
            message = f"a certificate cannot administer peer {local!r}: this is {what}; {use}"
        host, client = _client_of(transport.get_extra_info("peername") if transport else None)
        line = f"admin API refused {what} from {client}: {_request_line(request)}"
        self.refusals.refused(host, f"forbidden: {what}", line)
        return _error(403, "forbidden", message)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_error(request, exc)
        except BadRequest as exc:
            return _error(400, "malformed", str(exc), exc.field)
        except LinkRefused as exc:
            return _error(exc.status, exc.reason, str(exc))
        except ValidationError as exc:
            return _error(422, "invalid", str(exc), exc.field)
        except NotFoundError as exc:
            return _error(404, "not-found", str(exc))
        except (ConflictError, AlreadyExistsError) as exc:
            return _error(409, "conflict", str(exc))
        except StoreError as exc:
            log.error("state store failure: %s", exc)
            return _error(503, "store-unavailable", str(exc))
        except ClusterLinkError as exc:
            return _error(400, "malformed", str(exc))
        except Exception:
            log.exception("admin API bug while serving %s", _request_line(request))
            return _error(500, "internal", "internal error in the gateway; see its log")

    # -- handlers ---------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        snapshot = self.catalog.snapshot
        peers = []
        for name, peer in snapshot.peers.items():
            runtime = self.health.status_of(name) or {}
            gateways = [f"{g.host}:{g.port}" for g in peer.spec.gateways]
            row = {"name": name, "gateways": gateways, "dialsIn": peer.spec.dials_in}
            peers.append({**row, **runtime})
        exports = [
            {
                "namespace": key.namespace,
                "name": key.name,
                "host": e.spec.host,
                "port": e.spec.port,
                "protocol": e.spec.protocol,
            }
            for key, e in snapshot.exports.items()
        ]
        imports = [
            {
                "namespace": key.namespace,
                "name": key.name,
                "port": i.spec.port,
                "protocol": i.spec.protocol,
                "listen": self.resources.binder.listen_address(key),
                "lbScheme": i.spec.lb_scheme,
                "sources": [s.model_dump(by_alias=True) for s in i.spec.sources],
                "conditions": self.import_conditions.of(key),
            }
            for key, i in snapshot.imports.items()
        ]
        return web.json_response(
            {
                "gateway": dict(self.gateway_info()),
                "peers": peers,
                "exports": exports,
                "imports": imports,
            }
        )

    async def apply(self, request: web.Request) -> web.Response:
        close_tunnels, dry_run = _write_flags(request)
        resources = parse_documents_body(await request.read())
        if dry_run:
            previewed = await self.resources.preview_apply(resources)
            results = [_result(o.key, o.result) for o in previewed]
            return web.json_response({"results": results, "dryRun": True})
        outcomes = await self.resources.apply(resources)
        answer: dict[str, Any] = {"results": [_result(o.key, o.result) for o in outcomes]}
        return web.json_response(self._maybe_close_tunnels(close_tunnels, answer))

    def _maybe_close_tunnels(self, close_tunnels: bool, answer: dict[str, Any]) -> dict[str, Any]:
        """``?closeTunnels=true``: also reset open tunnels the new state no longer allows."""
        if close_tunnels:
            answer["tunnelsClosed"] = self.close_revoked_tunnels()
        return answer

    async def delete_documents(self, request: web.Request) -> web.Response:
        flags = _write_flags(request)
        resources = parse_documents_body(await request.read())
        return await self._delete([_key_of(r) for r in resources], *flags)

    async def delete(self, request: web.Request) -> web.Response:
        return await self._delete([_key(request)], *_write_flags(request))

    async def _delete(
        self, keys: list[ResourceKey], close_tunnels: bool, dry_run: bool
    ) -> web.Response:
        if dry_run:
            found = await self.resources.preview_delete(keys)
            results = [_result(_key_of(r), "deleted") for r in found]
            return web.json_response({"results": results, "dryRun": True})
        deleted = await self.resources.delete(keys)
        answer: dict[str, Any] = {"results": [_result(_key_of(r), "deleted") for r in deleted]}
        return web.json_response(self._maybe_close_tunnels(close_tunnels, answer))

    async def list(self, request: web.Request) -> web.Response:
        kind = parse_kind(request.match_info["kind"])
        namespace = parse_namespace(request.query.get("namespace"))
        items = [self._document(r) for r in self.store.list(kind, namespace)]
        return web.json_response({"items": items})

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._document(self.store.get(_key(request))))

    async def openapi(self, request: web.Request) -> web.Response:
        from clusterlink.controlplane.openapi import openapi_document  # seldom asked for

        return web.json_response(openapi_document(__version__))

    def _document(self, resource: Resource) -> dict[str, Any]:
        """The stored document with the runtime status merged in."""
        if isinstance(resource, Peer):
            runtime = self.health.status_of(resource.metadata.name)
            if runtime is not None:
                resource = with_status(resource, runtime)
        elif isinstance(resource, Import):
            key = resource.metadata.key
            sources = [
                {
                    **s.model_dump(by_alias=True),
                    "reachable": _reachable(self.health.status_of(s.peer)),
                }
                for s in resource.spec.sources
            ]
            listen = self.resources.binder.listen_address(key)
            # Conditions the leader wrote (Kubernetes mode) stay; this gateway's own judgement
            # is added for the types it has.
            stored = [
                c.model_dump(by_alias=True) for c in (resource.status or _NO_STATUS).conditions
            ]
            judged = self.import_conditions.of(key)
            kept = [c for c in stored if c["type"] not in {j["type"] for j in judged}]
            conditions = [*kept, *judged]
            resource = with_status(
                resource, {"listen": listen, "sources": sources, "conditions": conditions}
            )
        return to_dict(resource)


_NO_STATUS = ImportStatus()


def _reachable(status: Mapping[str, Any] | None) -> bool | None:
    return None if status is None else status.get("reachable")


def _result(key: ResourceKey, outcome: str) -> dict[str, str]:
    return {"kind": key.kind, "namespace": key.namespace, "name": key.name, "outcome": outcome}


def _write_flags(request: web.Request) -> tuple[bool, bool]:
    """``closeTunnels`` and ``dryRun`` of a write, checked before its body is read.

    ``dryRun=true`` validates everything and answers what would change, changing nothing
    (and closing no tunnel)."""
    query = request.query
    return parse_close_tunnels(query.get("closeTunnels")), parse_dry_run(query.get("dryRun"))


def _key_of(resource: Resource) -> ResourceKey:
    return ResourceKey(resource.kind, resource.metadata.namespace, resource.metadata.name)


def _key(request: web.Request) -> ResourceKey:
    match = request.match_info
    return parse_key(match["kind"], match["name"], request.query.get("namespace"))


def _request_line(request: web.Request) -> str:
    """Method and path for a log line, the path as sent (percent-encoded, so pure ASCII): a
    hostile path can neither break a line nor the log's UTF-8."""
    return f"{request.method} {request.rel_url.raw_path}"


def _client_of(peername: Any) -> tuple[str, str]:
    """(host, "host:port") of a connection's peer address, for refusal logs."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        return str(peername[0]), format_address(peername[:2])
    return "?", "an unknown address"


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large) as our JSON errors."""
    what = f"{request.method} {request.path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _error(
            405,
            "method-not-allowed",
            f"{what}: method not allowed; {request.path} takes {allowed}",
            headers={"Allow": allowed},
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return _error(
            413,
            "too-large",
            f"{what}: the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB; "
            "apply the documents in several smaller requests",
        )
    if exc.status == 404:
        return _error(
            404, "not-found", f"{what}: no such route; GET /v1/openapi.json lists the routes"
        )
    return _error(exc.status, "malformed", f"{what}: {exc.reason}")

"""The admin API: the CLI's only way into a running gateway (docs/admin-api.md).

mTLS on ``--admin-listen``: the TLS layer admits only certificates of this fabric, and every
request is then checked for *this peer's admin identity* (``urn:clusterlink:admin:<peer>``);
a peer certificate or another peer's admin certificate gets ``403``. There is no way to turn
authentication off.

Errors leave as JSON ``{reason, message, field?}`` with the status of docs/admin-api.md; a
``ClusterLinkError`` is mapped in one place (``_errors``), anything else is a bug and answers
``500`` with a log line. Documents leave with their *runtime* status merged in: a Peer's
reachability from the heartbeats, an Import's listening address from the data plane.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from clusterlink import __version__
from clusterlink.api import (
    Import,
    Peer,
    Resource,
    ResourceKey,
    kind_info,
    plural,
    to_dict,
    with_status,
)
from clusterlink.api.kinds import KINDS
from clusterlink.certs import admin_peer_of
from clusterlink.controlplane.catalog import Catalog
from clusterlink.controlplane.health import PeerHealth
from clusterlink.controlplane.openapi import openapi_document
from clusterlink.controlplane.resources import ResourceService, parse_request_documents
from clusterlink.errors import (
    AlreadyExistsError,
    ClusterLinkError,
    ConflictError,
    NotFoundError,
    ProtocolError,
    StoreError,
    ValidationError,
)
from clusterlink.store import Store

__all__ = ["AdminServer"]

log = logging.getLogger("clusterlink.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BY_PLURAL = {plural(kind): kind for kind in KINDS}


def _error(status: int, reason: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"reason": reason, "message": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


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
    ) -> None:
        self.local_name = local_name
        self._context = context
        self.store = store
        self.catalog = catalog
        self.resources = resources
        self.health = health
        self.gateway_info = gateway_info
        self.close_revoked_tunnels = close_revoked_tunnels
        self._runner: web.AppRunner | None = None
        self.app = web.Application(
            middlewares=[self._errors, self._authenticate], client_max_size=8 * 1024 * 1024
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
            ]
        )

    async def start(self, host: str, port: int) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=self._context())
        await site.start()
        return sock.getsockname()[:2]  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- middlewares ------------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        cert = transport.get_extra_info("peercert") if transport is not None else None
        admin_of = admin_peer_of(cert)
        if admin_of != self.local_name:
            who = f"the admin certificate of peer {admin_of!r}" if admin_of else "a certificate"
            log.warning("admin API refused %s from %s", who, request.remote)
            return _error(
                403,
                "forbidden",
                f"{who} cannot administer peer {self.local_name!r}; "
                f"use {self.local_name}'s admin/cert.pem",
            )
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            reason = "not-found" if exc.status == 404 else "malformed"
            return _error(exc.status, reason, f"{request.method} {request.path}: {exc.reason}")
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
            log.exception("admin API bug while serving %s %s", request.method, request.path)
            return _error(500, "internal", "internal error in the gateway; see its log")

    # -- handlers ---------------------------------------------------------------------------

    async def status(self, request: web.Request) -> web.Response:
        snapshot = self.catalog.snapshot
        peers = []
        for name, peer in snapshot.peers.items():
            runtime = self.health.status_of(name) or {}
            gateways = [f"{g.host}:{g.port}" for g in peer.spec.gateways]
            peers.append({"name": name, "gateways": gateways, **runtime})
        exports = [
            {"namespace": ns, "name": name, "host": e.spec.host, "port": e.spec.port}
            for (ns, name), e in snapshot.exports.items()
        ]
        imports = [
            {
                "namespace": ns,
                "name": name,
                "port": i.spec.port,
                "listen": self.resources.binder.listen_address((ns, name)),
                "lbScheme": i.spec.lb_scheme,
                "sources": [s.model_dump(by_alias=True) for s in i.spec.sources],
            }
            for (ns, name), i in snapshot.imports.items()
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
        resources = parse_request_documents((await _json_body(request)).get("documents"))
        outcomes = await self.resources.apply(resources)
        answer: dict[str, Any] = {"results": [_result(o.key, o.result) for o in outcomes]}
        return web.json_response(self._maybe_close_tunnels(request, answer))

    def _maybe_close_tunnels(self, request: web.Request, answer: dict[str, Any]) -> dict[str, Any]:
        """``?closeTunnels=true``: also reset open tunnels the new state no longer allows."""
        if request.query.get("closeTunnels", "").lower() in ("1", "true", "yes"):
            answer["tunnelsClosed"] = self.close_revoked_tunnels()
        return answer

    async def delete_documents(self, request: web.Request) -> web.Response:
        resources = parse_request_documents((await _json_body(request)).get("documents"))
        keys = [ResourceKey(r.kind, r.metadata.namespace, r.metadata.name) for r in resources]
        return await self._delete(request, keys)

    async def delete(self, request: web.Request) -> web.Response:
        return await self._delete(request, [_key(request)])

    async def _delete(self, request: web.Request, keys: list[ResourceKey]) -> web.Response:
        deleted = await self.resources.delete(keys)
        keys_deleted = [ResourceKey(r.kind, r.metadata.namespace, r.metadata.name) for r in deleted]
        answer: dict[str, Any] = {"results": [_result(k, "deleted") for k in keys_deleted]}
        return web.json_response(self._maybe_close_tunnels(request, answer))

    async def list(self, request: web.Request) -> web.Response:
        kind = _kind(request)
        namespace = request.query.get("namespace") or None
        items = [self._document(r) for r in self.store.list(kind, namespace)]
        return web.json_response({"items": items})

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._document(self.store.get(_key(request))))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document(__version__))

    def _document(self, resource: Resource) -> dict[str, Any]:
        """The stored document with the runtime status merged in."""
        if isinstance(resource, Peer):
            runtime = self.health.status_of(resource.metadata.name)
            if runtime is not None:
                resource = with_status(resource, runtime)
        elif isinstance(resource, Import):
            key = (resource.metadata.namespace, resource.metadata.name)
            sources = [
                {
                    **s.model_dump(by_alias=True),
                    "reachable": _reachable(self.health.status_of(s.peer)),
                }
                for s in resource.spec.sources
            ]
            listen = self.resources.binder.listen_address(key)
            resource = with_status(resource, {"listen": listen, "sources": sources})
        return to_dict(resource)


def _reachable(status: Mapping[str, Any] | None) -> bool | None:
    return None if status is None else status.get("reachable")


def _result(key: ResourceKey, outcome: str) -> dict[str, str]:
    return {"kind": key.kind, "namespace": key.namespace, "name": key.name, "outcome": outcome}


def _kind(request: web.Request) -> str:
    text = request.match_info["kind"]
    kind = _BY_PLURAL.get(text)
    if kind is None:
        kind = kind_info(text).name  # accepts other spellings; ValidationError if unknown
    return kind


def _key(request: web.Request) -> ResourceKey:
    namespace = request.query.get("namespace") or "default"
    return ResourceKey.of(_kind(request), request.match_info["name"], namespace)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError("request body must be a JSON object")
    return body

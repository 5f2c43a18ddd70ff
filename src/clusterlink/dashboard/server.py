"""The dashboard's web server: the page, and the gateway's state as JSON for it to draw.

Routes: ``GET /`` (the page), ``GET /static/<file>`` (its script and style), ``GET
/api/status`` (the admin API's ``/v1/status``) and ``GET /api/flows`` (its recent tunnel
records, or an empty list from a gateway that keeps none). Nothing else, and nothing that
writes: the admin client is used for reads only. A failed read answers 502 with the reason,
which the page shows instead of stale data.

The admin client is synchronous (httpx); its calls run in a worker thread, one at a time, so
a slow gateway cannot pile requests up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from importlib import resources
from typing import Any, Final

from aiohttp import web

from clusterlink.client import AdminClient
from clusterlink.errors import ClusterLinkError, NotFoundError

__all__ = ["STATIC_FILES", "make_app"]

log = logging.getLogger("clusterlink.dashboard")

STATIC_FILES: Final = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}


def _static(name: str) -> bytes:
    return (resources.files("clusterlink.dashboard") / "static" / name).read_bytes()


def make_app(client: AdminClient) -> web.Application:
    """The dashboard for the gateway ``client`` talks to."""
    lock = asyncio.Lock()

    async def read(call: Callable[[], Any]) -> web.Response:
        async with lock:
            try:
                data = await asyncio.to_thread(call)
            except ClusterLinkError as exc:
                return web.json_response({"error": str(exc)}, status=502)
        return web.json_response(data)

    async def index(_request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=STATIC_FILES[name])

    async def status(_request: web.Request) -> web.Response:
        return await read(client.status)

    async def flows(_request: web.Request) -> web.Response:
        def recent() -> Any:
            try:
                return client.flows()
            except NotFoundError:  # a gateway of a version that keeps no flow records
                return {"items": []}

        return await read(recent)

    app = web.Application()
    app.add_routes(
        [
            web.get("/", index),
            web.get("/static/{name}", static),
            web.get("/api/status", status),
            web.get("/api/flows", flows),
        ]
    )
    return app

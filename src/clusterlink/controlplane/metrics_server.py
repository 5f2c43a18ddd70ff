"""``--metrics-listen``: the Prometheus text endpoint, plain HTTP, read-only.

Plain HTTP because that is what Prometheus scrapes by default; it serves counters only, no
resource or secret, and is off unless asked for. ``GET /metrics`` (and ``/`` for a quick
look with curl).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from clusterlink.controlplane.http_serving import serve_app
from clusterlink.metrics import GatewayMetrics

__all__ = ["MetricsServer"]


class MetricsServer:
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def _scrape(self, request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> tuple[str, int]:
        app = web.Application()
        app.add_routes([web.get("/metrics", self._scrape), web.get("/", self._scrape)])
        self._runner, bound = await serve_app(app, host, port)
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

"""The admin API's ``GET /v1/flows``: the recent tunnel records (``flows.FlowLog``).

Query: ``after`` (the last record id the caller has seen; 0 or absent: from the oldest kept)
and ``limit`` (at most that many, the newest; 1-1000, default 1000). The answer is
``{"items": [...], "open": N, "last": ID}``: records oldest first, how many tunnels are open
among them, and the id to pass as ``after`` next time (``flows --follow`` and the dashboard
poll so, and never miss or repeat one while the ring still has it).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from clusterlink.errors import BadRequest
from clusterlink.flows import FlowLog

__all__ = ["MAX_LIMIT", "FlowRoutes"]

MAX_LIMIT: Final = 1000


class FlowRoutes:
    def __init__(self, flows: FlowLog) -> None:
        self._flows = flows

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/flows", self.flows)]

    async def flows(self, request: web.Request) -> web.Response:
        after = _number(request.query.get("after"), "after", low=0, default=0)
        limit = _number(request.query.get("limit"), "limit", low=1, default=MAX_LIMIT)
        if limit > MAX_LIMIT:
            raise BadRequest(f"limit must be at most {MAX_LIMIT}, got {limit}", field="limit")
        items = self._flows.since(after, limit=limit)
        last = items[-1]["id"] if items else after
        return web.json_response({"items": items, "open": self._flows.open_count(), "last": last})


def _number(text: str | None, field: str, *, low: int, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) < low:
        raise BadRequest(
            f"{field} must be a whole number of at least {low}, got {text!r}", field=field
        )
    return int(text)

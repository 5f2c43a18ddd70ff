"""The set of open tunnels: their end, the idle sweeper, revocation, shutdown, counting.

Both directions open their tunnels here with a ``TunnelInfo``, so what happens when a tunnel
ends is written once: its slots are given back, its bytes counted, and one log line says
``<direction> closed <what> bytes_up=... bytes_down=... duration_s=...`` (``bytes_up`` is
always client -> service). Whether the current resources still allow a tunnel is asked only
on request (``close_revoked``), through the ``still_allowed`` check its opener gave.

Idle detection follows mitmproxy's watchdog idea, made cheaper still: the relay's hot path
only adds to byte counters, and one sweeper task per gateway looks at every tunnel once per
``idle_timeout_s / 2``; a tunnel whose counters did not move across two sweeps in a row has
been idle for the whole timeout and is reset (and counted as an ``idle_timeout`` limit hit).
No timer is armed, moved or cancelled per chunk or per tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from clusterlink.controlplane.catalog import Catalog, Snapshot
from clusterlink.dataplane.limits import Limit
from clusterlink.dataplane.relay import Relay, RelayResult
from clusterlink.flows import FlowLog, FlowRecord
from clusterlink.logs import fields
from clusterlink.metrics import GatewayMetrics, TunnelSample

__all__ = ["TunnelInfo", "TunnelRegistry"]

log = logging.getLogger("clusterlink.tunnels")
_LOGS = {
    "egress": logging.getLogger("clusterlink.egress"),
    "ingress": logging.getLogger("clusterlink.ingress"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TunnelInfo:
    """What a tunnel is, for its metrics, its closing log line and its revocation."""

    direction: Literal["egress", "ingress"]
    resource: str  # the Import (egress) or Export (ingress), ``namespace/name``
    peer: str  # the other gateway's peer name
    what: str  # the log lines' subject: "import=... client=... source=..." or "peer=..."
    release: Callable[[], None]  # gives back the slots the tunnel holds
    still_allowed: Callable[[Snapshot], bool]  # would the current resources open it now?
    flow: FlowRecord | None = None  # its record in the flow log, finished when it ends
    export: str = ""  # egress: the export the tunnel reaches, ``namespace/name``


class TunnelRegistry:
    def __init__(
        self,
        *,
        idle_timeout_s: float,
        metrics: GatewayMetrics,
        catalog: Catalog,
        flows: FlowLog | None = None,
    ) -> None:
        self.flows = flows or FlowLog()
        # Each open relay with the check that says whether the current resources still
        # allow it (run only on request, see ``close_revoked``).
        self._relays: dict[Relay, Callable[[Snapshot], bool]] = {}
        self._metrics = metrics
        self._catalog = catalog
        self._idle_timeout_s = idle_timeout_s
        self._sweeper: asyncio.Task[None] | None = None
        self.n_closed = 0  # tunnels ended since the gateway started

    def __len__(self) -> int:
        return len(self._relays)

    def open(
        self, client: asyncio.Transport, service: asyncio.Transport, info: TunnelInfo
    ) -> Relay:
        """Relay between two transports (``client`` is the side that opened the tunnel),
        tracked here until it ends."""
        labels = (info.direction, info.resource, info.peer)
        started = asyncio.get_running_loop().time()

        def closed(result: RelayResult) -> None:
            self._relays.pop(relay, None)
            self.n_closed += 1
            info.release()
            self._metrics.tunnel_closed(labels, result.bytes_up, result.bytes_down)
            duration_s = asyncio.get_running_loop().time() - started
            if info.flow is not None:
                info.flow.finish(
                    bytes_up=result.bytes_up,
                    bytes_down=result.bytes_down,
                    duration_s=duration_s,
                    reason=result.error or "",
                )
                self.flows.finished(info.flow)
            _LOGS[info.direction].info(
                "%s closed %s bytes_up=%d bytes_down=%d duration_s=%.3f%s",
                info.direction,
                info.what,
                result.bytes_up,
                result.bytes_down,
                duration_s,
                f" error={result.error!r}" if result.error else "",
                extra=_closed_fields(info, result, duration_s),
            )

        relay = Relay(client, service, on_close=closed, labels=labels)
        self._relays[relay] = info.still_allowed
        return relay

    def close_revoked(self) -> int:
        """Reset the open tunnels that the current resources no longer allow; how many.

        By default a change of policy or Peer applies to *new* connections only; this is what
        ``apply/delete --close-tunnels`` asks for on top.
        """
        snapshot = self._catalog.snapshot
        revoked = [r for r, allowed in list(self._relays.items()) if not allowed(snapshot)]
        for relay in revoked:
            relay.close("revoked: no longer allowed by this gateway's resources")
        if revoked:
            log.info("closed %d tunnel(s) no longer allowed", len(revoked))
        return len(revoked)

    def samples(self) -> list[TunnelSample]:
        """Byte counts of the open tunnels, read at metrics scrape time."""
        return [TunnelSample(r.labels, r.up.n_bytes, r.down.n_bytes) for r in list(self._relays)]

    def start_sweeper(self) -> None:
        if self._idle_timeout_s > 0 and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        # ``is_idle`` is true when nothing moved since the previous sweep, i.e. for half the
        # timeout; two such sweeps in a row mean a whole timeout without a byte. The reset thus
        # comes between 1 and 1.5 timeouts after the last byte, never before.
        interval = self._idle_timeout_s / 2
        idle_before: set[Relay] = set()
        while True:
            await asyncio.sleep(interval)
            idle_now = {r for r in list(self._relays) if r.is_idle()}
            for relay in idle_now & idle_before:
                relay.close(f"idle for {self._idle_timeout_s:g}s")
                self._metrics.limit_hits.labels(Limit.IDLE_TIMEOUT.value).inc()
            idle_before = idle_now

    async def close(self) -> None:
        """Stop the sweeper and reset every open tunnel (gateway shutdown)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for relay in list(self._relays):
            relay.close("gateway shutting down")


def _closed_fields(info: TunnelInfo, result: RelayResult, duration_s: float) -> dict[str, Any]:
    """The JSON fields of a tunnel's closing line (``logs.fields``)."""
    is_egress = info.direction == "egress"
    return fields(
        "tunnel_closed",
        direction=info.direction,
        import_=info.resource if is_egress else None,
        export=(info.export or None) if is_egress else info.resource,
        peer=info.peer,
        client=info.flow.client if info.flow is not None else None,
        bytes_up=result.bytes_up,
        bytes_down=result.bytes_down,
        duration_s=duration_s,
        reason=result.error or None,
    )

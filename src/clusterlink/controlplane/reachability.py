"""What one gateway knows of one peer's health: the damped reachability and the status.

Pure state, apart from the heartbeat loop that feeds it (``health``): ``Reachability`` is
the threshold machine (``unreachable_after`` failures in a row turn a peer unreachable,
``reachable_after`` successes reachable again; the first answer decides at once), clock-free
so that it is tested as a table; ``PeerState`` is everything served as the Peer's status,
including the ``PeerReachable`` condition written in Kubernetes mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from clusterlink.api import Gateway

__all__ = ["PEER_REACHABLE", "PeerState", "Reachability"]

PEER_REACHABLE = "PeerReachable"


@dataclass(slots=True)
class Reachability:
    """The threshold state machine for one peer: feed it results, read ``reachable``."""

    unreachable_after: int
    reachable_after: int
    reachable: bool | None = None  # None: never decided yet
    successes: int = 0
    failures: int = 0

    def record(self, ok: bool) -> bool:
        """Count one heartbeat; returns True if ``reachable`` changed."""
        before = self.reachable
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.reachable is None or self.successes >= self.reachable_after:
                self.reachable = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.unreachable_after:
                self.reachable = False
        return self.reachable != before


@dataclass(slots=True)
class PeerState:
    """What this gateway knows of one peer right now (served as the Peer's status)."""

    reachability: Reachability
    reason: str = "no heartbeat yet"
    labels: dict[str, str] = field(default_factory=dict)
    last_seen: datetime | None = None
    rtt_ms: float | None = None
    silent: set[Gateway] = field(default_factory=set)  # its latest beat failed
    peered: bool | None = None  # whether it has a Peer for us (None: it did not say)
    since: datetime = field(default_factory=lambda: datetime.now(UTC))  # reachable changed

    def condition(self) -> dict[str, str]:
        """``PeerReachable``, as the original writes it (reason ``Heartbeat``), for tools
        that read conditions (``kubectl wait --for=condition=PeerReachable``)."""
        reachable = self.reachability.reachable
        return {
            "type": PEER_REACHABLE,
            "status": "Unknown" if reachable is None else str(reachable),
            "reason": "Heartbeat" if reachable is not None else "NoHeartbeatYet",
            "message": self.reason,
            "lastTransitionTime": self.since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def status(self) -> dict[str, object]:
        return {
            "conditions": [self.condition()],
            "reachable": self.reachability.reachable,
            "peered": self.peered,
            "reason": self.reason,
            "labels": dict(self.labels),
            "lastSeen": self.last_seen.isoformat().replace("+00:00", "Z")
            if self.last_seen
            else None,
            "rttMs": None if self.rtt_ms is None else round(self.rtt_ms, 3),
        }

"""Flow records: every tunnel this gateway opened or refused, kept for the operator.

One record per connection attempt that reached a decision: when it started (and ended),
which way (egress: a local client to a remote export; ingress: a remote peer to a local
export), the Import or Export, the peer, the client, the decision and the policy that made it,
the bytes both ways, the set-up latency, and why it ended or was refused. They answer
``clusterlink flows`` and feed the dashboard; the log has the same facts line by line.

A bounded ring (``capacity`` records, the oldest dropped first) with a sequence number per
record, so that a follower (``flows --follow``, the dashboard) asks for what came after the
last one it saw and never misses or repeats one while the ring has it. Optionally every
finished record is also appended as one JSON line to a file (``--flow-log FILE``).

Cheap on the data path: a record is made when a tunnel opens or is refused and finished when
it closes; nothing is done per chunk. Pure apart from the optional file.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["Decision", "FlowLog", "FlowRecord"]

log = logging.getLogger("clusterlink.flows")

Decision = Literal["allowed", "denied", "failed"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True, kw_only=True)
class FlowRecord:
    """One tunnel (or refused attempt) as the operator sees it."""

    seq: int = 0  # set by the log
    direction: Literal["egress", "ingress"]
    resource: str  # the Import (egress) or Export (ingress), namespace/name
    peer: str
    client: str  # the client's address as the source gateway saw it
    decision: Decision
    policy: str  # the policy that decided, "default deny", or "" where none did
    reason: str = ""  # why it was refused, or how it ended badly
    protocol: str = "TCP"
    started_at: str = field(default_factory=_now)
    ended_at: str | None = None
    setup_s: float | None = None
    duration_s: float | None = None
    bytes_up: int = 0
    bytes_down: int = 0

    def finish(
        self, *, bytes_up: int, bytes_down: int, duration_s: float, reason: str = ""
    ) -> None:
        self.ended_at = _now()
        self.bytes_up, self.bytes_down = bytes_up, bytes_down
        self.duration_s = round(duration_s, 6)
        if reason:
            self.reason = reason

    def wire(self) -> dict[str, Any]:
        """The record as the admin API and the JSON-lines file give it (camelCase)."""
        return {
            "id": self.seq,
            "direction": self.direction,
            "resource": self.resource,
            "peer": self.peer,
            "client": self.client,
            "protocol": self.protocol,
            "decision": self.decision,
            "policy": self.policy,
            "reason": self.reason,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "setupS": self.setup_s,
            "durationS": self.duration_s,
            "bytesUp": self.bytes_up,
            "bytesDown": self.bytes_down,
        }


class FlowLog:
    """The ring of recent records (see the module docstring)."""

    def __init__(self, *, capacity: int = 1000, export_path: Path | None = None) -> None:
        if capacity < 1:
            raise ValueError("the flow log needs room for at least one record")
        self._records: deque[FlowRecord] = deque(maxlen=capacity)
        self._seq = itertools.count(1)
        self._export_path = export_path
        self._export_failed = False

    def add(self, record: FlowRecord) -> FlowRecord:
        record.seq = next(self._seq)
        if record.decision != "allowed":  # a refusal is finished as it is made
            record.ended_at = record.started_at
        self._records.append(record)
        if record.decision != "allowed":
            self._export(record)
        return record

    def finished(self, record: FlowRecord) -> None:
        """A tunnel ended (its record was finished): export it if asked to."""
        self._export(record)

    def since(self, after: int = 0, *, limit: int | None = None) -> list[dict[str, Any]]:
        """The records after sequence number ``after``, oldest first (at most ``limit``, the
        newest ones)."""
        found = [record.wire() for record in self._records if record.seq > after]
        return found[-limit:] if limit else found

    def open_count(self) -> int:
        return sum(1 for r in self._records if r.decision == "allowed" and r.ended_at is None)

    def _export(self, record: FlowRecord) -> None:
        if self._export_path is None:
            return
        try:
            with self._export_path.open("a") as out:
                out.write(json.dumps(record.wire(), separators=(",", ":")) + "\n")
        except OSError as exc:
            if not self._export_failed:  # one line, not one per record
                self._export_failed = True
                log.warning("cannot append flow records to %s: %s", self._export_path, exc)
            return
        self._export_failed = False

"""Conditions of Imports: what this gateway can tell from its own resources about whether an
Import can work, in the Kubernetes condition shape (``api.Condition``).

``ImportSourcesValid``: every source of the Import names a Peer of this gateway. An Import
whose source names no Peer is still accepted, because the Peer may come later (another apply,
or later in the same file: the order of documents must not matter). But until it exists no
connection can go to that source, and nothing else would say why, so the condition is
``False`` with reason ``PeerNotFound`` and a message naming each such source; it turns
``True`` the moment the Peer is applied, and back if it is deleted.

What this refuses to do: judge reachability (it changes every second; it is in
``status.sources[].reachable`` from the heartbeats) or write to the store (conditions are
runtime state, like ``status.listen``).

Invariants: conditions are judged on every catalog swap, not when read, so
``lastTransitionTime`` is when ``status`` really changed, as far as this run of the gateway
knows (after a restart it is the start); a change of ``reason`` or ``message`` alone keeps it,
as in Kubernetes. The judgement itself (``judge_sources``) is a pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from clusterlink.api import Import
from clusterlink.controlplane.catalog import Snapshot
from clusterlink.ids import NamespacedName

__all__ = ["SOURCES_VALID", "ImportConditions", "Judgement", "judge_sources"]

SOURCES_VALID: Final = "ImportSourcesValid"


@dataclass(frozen=True, slots=True)
class Judgement:
    """A condition's state without its time."""

    status: Literal["True", "False"]
    reason: str
    message: str


def judge_sources(imp: Import, peers: Collection[str]) -> Judgement:
    """``ImportSourcesValid`` of ``imp`` when this gateway has the Peers named ``peers``."""
    missing = dict.fromkeys(s.peer for s in imp.spec.sources if s.peer not in peers)
    if not missing:
        return Judgement("True", "PeersFound", "every source names a Peer of this gateway")
    message = "; ".join(f"source {peer}: no Peer named {peer}" for peer in missing)
    return Judgement("False", "PeerNotFound", message)


class ImportConditions:
    """The conditions of every Import of the latest snapshot given to ``update``."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._judged: dict[NamespacedName, tuple[Judgement, str]] = {}

    def update(self, new: Snapshot) -> None:
        """Judge every Import of ``new`` again; Imports no longer there are forgotten."""
        now = _rfc3339(self._clock())
        judged = {}
        for key, imp in new.imports.items():
            judgement = judge_sources(imp, new.peers)
            before = self._judged.get(key)
            kept = before is not None and before[0].status == judgement.status
            judged[key] = (judgement, before[1] if before and kept else now)
        self._judged = judged

    def of(self, key: NamespacedName) -> list[dict[str, str]]:
        """The wire form of the Import's conditions (none for an Import not known yet)."""
        found = self._judged.get(key)
        if found is None:
            return []
        judgement, since = found
        return [
            {
                "type": SOURCES_VALID,
                "status": judgement.status,
                "reason": judgement.reason,
                "message": judgement.message,
                "lastTransitionTime": since,
            }
        ]


def _rfc3339(when: datetime) -> str:
    """Seconds and ``Z``, as Kubernetes writes ``metav1.Time``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""Status conditions in the Kubernetes shape, set the way ``meta.SetStatusCondition`` does.

A condition is ``{type, status, reason, message, lastTransitionTime}``. Setting one keeps its
``lastTransitionTime`` unless its ``status`` changes (a new reason or message alone is not a
transition), and leaves the other types alone. ``set_condition`` says whether anything
changed, so that a writer patches a status only when there is something new to say: a
reconcile that finds everything as it was writes nothing.

The condition types of Kubernetes mode, after the original (reasons in brackets):
``PeerReachable`` (Heartbeat), ``ExportValid`` (Verified / Error), ``ImportTargetPortValid``
(Leased / Error), ``ImportServiceValid`` (Valid / Error). Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Literal

__all__ = [
    "EXPORT_VALID",
    "IMPORT_SERVICE_VALID",
    "IMPORT_TARGET_PORT_VALID",
    "condition",
    "find_condition",
    "rfc3339",
    "set_condition",
]

EXPORT_VALID: Final = "ExportValid"
IMPORT_TARGET_PORT_VALID: Final = "ImportTargetPortValid"
IMPORT_SERVICE_VALID: Final = "ImportServiceValid"

Condition = dict[str, str]


def rfc3339(when: datetime) -> str:
    """Seconds and ``Z``, as Kubernetes writes ``metav1.Time``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, ok: bool, reason: str, message: str = "", *, now: datetime) -> Condition:
    status: Literal["True", "False"] = "True" if ok else "False"
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now),
    }


def find_condition(conditions: Sequence[Mapping[str, str]], type_: str) -> Mapping[str, str] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def set_condition(
    conditions: Sequence[Mapping[str, str]], new: Condition
) -> tuple[list[Condition], bool]:
    """``conditions`` with ``new`` set, and whether that changed anything."""
    result = [dict(c) for c in conditions]
    for index, old in enumerate(result):
        if old.get("type") != new["type"]:
            continue
        merged = dict(new)
        if old.get("status") == new["status"] and "lastTransitionTime" in old:
            merged["lastTransitionTime"] = old["lastTransitionTime"]
        changed = merged != old
        result[index] = merged
        return result, changed
    result.append(dict(new))
    return result, True

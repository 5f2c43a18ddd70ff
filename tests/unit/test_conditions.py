"""Setting status conditions as Kubernetes does (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from clusterlink.controlplane.conditions import (
    EXPORT_VALID,
    IMPORT_SERVICE_VALID,
    condition,
    find_condition,
    set_condition,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 12, 5, 0, tzinfo=UTC)


def test_a_new_condition_is_added_with_its_time() -> None:
    conditions, changed = set_condition([], condition(EXPORT_VALID, True, "Verified", now=T0))
    assert changed
    assert conditions == [
        {
            "type": "ExportValid",
            "status": "True",
            "reason": "Verified",
            "message": "",
            "lastTransitionTime": "2026-01-01T12:00:00Z",
        }
    ]


def test_setting_the_same_again_changes_nothing_and_keeps_the_time() -> None:
    first, _ = set_condition([], condition(EXPORT_VALID, False, "Error", "no service", now=T0))
    again, changed = set_condition(
        first, condition(EXPORT_VALID, False, "Error", "no service", now=T1)
    )
    assert not changed
    assert again == first


def test_a_new_message_is_a_change_but_not_a_transition() -> None:
    first, _ = set_condition([], condition(EXPORT_VALID, False, "Error", "a", now=T0))
    second, changed = set_condition(first, condition(EXPORT_VALID, False, "Error", "b", now=T1))
    assert changed
    found = find_condition(second, EXPORT_VALID)
    assert found is not None
    assert (found["message"], found["lastTransitionTime"]) == ("b", "2026-01-01T12:00:00Z")


def test_a_new_status_is_a_transition_and_other_types_stay() -> None:
    first, _ = set_condition([], condition(IMPORT_SERVICE_VALID, True, "Valid", now=T0))
    first, _ = set_condition(first, condition(EXPORT_VALID, False, "Error", now=T0))
    second, changed = set_condition(first, condition(EXPORT_VALID, True, "Verified", now=T1))
    assert changed
    assert [c["type"] for c in second] == ["ImportServiceValid", "ExportValid"]
    assert second[1]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert second[0] == first[0]

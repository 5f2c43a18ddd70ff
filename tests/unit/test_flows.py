"""The flow log: a bounded ring of tunnel records with sequence numbers (pure, one file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clusterlink.flows import FlowLog, FlowRecord


def record(decision: str = "allowed", resource: str = "default/web") -> FlowRecord:
    return FlowRecord(
        direction="egress",
        resource=resource,
        peer="b",
        client="127.0.0.1:5000",
        decision=decision,  # type: ignore[arg-type]
        policy="default/allow-all" if decision == "allowed" else "default deny",
    )


def test_records_come_back_oldest_first_after_a_sequence_number() -> None:
    flows = FlowLog()
    first, second, third = (flows.add(record(resource=f"default/{n}")) for n in "xyz")
    assert [f["resource"] for f in flows.since()] == ["default/x", "default/y", "default/z"]
    assert [f["id"] for f in flows.since(first.seq)] == [second.seq, third.seq]
    assert flows.since(third.seq) == []
    assert [f["id"] for f in flows.since(limit=1)] == [third.seq]


def test_the_ring_drops_the_oldest_and_a_follower_sees_the_gap_by_number() -> None:
    flows = FlowLog(capacity=2)
    ids = [flows.add(record()).seq for _ in range(3)]
    assert [f["id"] for f in flows.since()] == ids[1:]


def test_a_finished_tunnel_has_its_end_bytes_and_duration_and_open_ones_are_counted() -> None:
    flows = FlowLog()
    tunnel = flows.add(record())
    flows.add(record("denied"))
    assert flows.open_count() == 1
    tunnel.finish(bytes_up=10, bytes_down=20, duration_s=0.5)
    flows.finished(tunnel)
    (done, denied) = flows.since()
    assert (done["bytesUp"], done["bytesDown"], done["durationS"]) == (10, 20, 0.5)
    assert done["endedAt"] is not None
    assert denied["decision"] == "denied" and denied["policy"] == "default deny"
    assert denied["endedAt"] == denied["startedAt"]  # a refusal ends as it is made
    assert flows.open_count() == 0


def test_finished_and_refused_records_go_to_the_export_file_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "flows.jsonl"
    flows = FlowLog(export_path=path)
    tunnel = flows.add(record())
    flows.add(record("denied"))
    tunnel.finish(bytes_up=1, bytes_down=2, duration_s=0.1)
    flows.finished(tunnel)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["decision"], line["endedAt"] is not None) for line in lines] == [
        ("denied", True),
        ("allowed", True),
    ]


def test_an_export_file_that_cannot_be_written_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flows = FlowLog(export_path=tmp_path / "missing-dir" / "flows.jsonl")
    for _ in range(3):
        flows.add(record("denied"))
    warnings = [r for r in caplog.records if "cannot append flow records" in r.getMessage()]
    assert len(warnings) == 1
    assert len(flows.since()) == 3  # the ring keeps them all the same

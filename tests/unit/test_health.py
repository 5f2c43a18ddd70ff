"""Peer health without a socket: the threshold state machine and the status it serves.

``Reachability`` is pure and clock-free, so its thresholds are a table: feed results, read
the state after each one. ``PeerState.status()`` is what `status` and `get peer -o json`
show. Heartbeats for real, against a peer listener on loopback, are in
tests/component/test_health.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clusterlink.api import Peer, resource_from_dict, to_dict, with_status
from clusterlink.controlplane.health import HealthSettings, PeerState, Reachability

LOCALHOST = "127.0.0.1"  # an address in a model: nothing connects to it here

# -- Reachability: the thresholds table -------------------------------------------------------

# "+" an answered heartbeat, "-" a failed one; after each: "?" unknown, "R" reachable,
# "U" unreachable. Thresholds as in DESIGN §7: 5 failures -> unreachable, 3 successes -> back.
THRESHOLDS = [
    pytest.param(beats, expected, id=why)
    for why, beats, expected in [
        ("an unknown peer's first answer makes it reachable at once", "+", "R"),
        ("answers keep it reachable", "+++", "RRR"),
        ("five failures make an unknown peer unreachable", "-----", "????U"),
        ("five failures make a reachable peer unreachable", "+-----", "RRRRRU"),
        ("an answer among failures starts the count again", "+----+-----", "RRRRRRRRRRU"),
        ("an unknown peer answering after failures is reachable at once", "----+", "????R"),
        ("three answers bring an unreachable peer back", "-----+++", "????UUUR"),
        ("a failure among answers starts the count again", "-----++-+++", "????UUUUUUR"),
        ("failures keep it unreachable", "-------", "????UUU"),
        ("back, then five failures again", "-----+++-----", "????UUURRRRRU"),
    ]
]
_STATE = {None: "?", True: "R", False: "U"}


@pytest.mark.parametrize(("beats", "expected"), THRESHOLDS)
def test_reachability_thresholds(beats: str, expected: str) -> None:
    reachability = Reachability(unreachable_after=5, reachable_after=3)
    seen = ""
    for beat in beats:
        before = reachability.reachable
        changed = reachability.record(beat == "+")
        seen += _STATE[reachability.reachable]
        # ``record`` says whether the state changed, exactly when it did.
        assert changed == (reachability.reachable != before)
    assert seen == expected


def test_thresholds_of_one_follow_every_beat() -> None:
    reachability = Reachability(unreachable_after=1, reachable_after=1)
    states = []
    for ok in (True, False, True, True, False):
        reachability.record(ok)
        states.append(reachability.reachable)
    assert states == [True, False, True, True, False]


@pytest.mark.parametrize(
    "settings",
    [
        {"interval_s": 0},
        {"timeout_s": -1},
        {"unreachable_after": 0},
        {"reachable_after": 0},
    ],
)
def test_health_settings_refuse_values_that_cannot_work(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        HealthSettings(**settings)


# -- PeerState.status(): what `status` and `get peer -o json` show -----------------------------


def peer(name: str, *ports: int) -> Peer:
    """A Peer whose gateways are loopback ``ports`` (the component tests listen there)."""
    resource = resource_from_dict(
        {
            "apiVersion": "clusterlink.net/v1alpha1",
            "kind": "Peer",
            "metadata": {"name": name},
            "spec": {"gateways": [{"host": LOCALHOST, "port": p} for p in ports]},
        }
    )
    assert isinstance(resource, Peer)
    return resource


def test_status_of_a_peer_never_heard_from() -> None:
    state = PeerState(Reachability(5, 3), since=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    assert state.status() == {
        "conditions": [
            {
                "type": "PeerReachable",
                "status": "Unknown",
                "reason": "NoHeartbeatYet",
                "message": "no heartbeat yet",
                "lastTransitionTime": "2024-05-01T12:00:00Z",
            }
        ],
        "reachable": None,
        "peered": None,
        "reason": "no heartbeat yet",
        "labels": {},
        "lastSeen": None,
        "rttMs": None,
    }


def test_status_of_a_peer_heard_from_is_a_valid_peer_status() -> None:
    state = PeerState(Reachability(5, 3))
    state.reachability.record(True)
    state.reason = "heartbeat ok"
    state.labels = {"env": "prod"}
    state.last_seen = datetime(2024, 5, 1, 12, 30, 5, 250000, tzinfo=UTC)
    state.rtt_ms = 1.234567
    state.peered = True
    state.since = datetime(2024, 5, 1, 12, 30, 4, tzinfo=UTC)
    status = state.status()
    assert status == {
        "conditions": [
            {
                "type": "PeerReachable",
                "status": "True",
                "reason": "Heartbeat",
                "message": "heartbeat ok",
                "lastTransitionTime": "2024-05-01T12:30:04Z",
            }
        ],
        "reachable": True,
        "peered": True,
        "reason": "heartbeat ok",
        "labels": {"env": "prod"},
        "lastSeen": "2024-05-01T12:30:05.250000Z",
        "rttMs": 1.235,
    }
    # The served labels are a copy: whoever renders them cannot change the state.
    assert isinstance(status["labels"], dict)
    status["labels"]["env"] = "changed"
    assert state.labels == {"env": "prod"}
    # And the dict is exactly a Peer's status in the resource model (camelCase included).
    shown = to_dict(with_status(peer("b", 8443), state.status()))
    assert shown["status"] == state.status()

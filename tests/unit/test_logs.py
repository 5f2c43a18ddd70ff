"""The two log formats: JSON lines with the event's facts as fields, text lines as sentences."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from clusterlink.dataplane.limits import Limit, Limits
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.logs import FIELD_NAMES, fields, setup_logging
from clusterlink.metrics import GatewayMetrics

Setup = Callable[[str], io.StringIO]


@pytest.fixture
def setup() -> Iterator[Setup]:
    """``setup(fmt)``: the gateway's logging, its stream kept; the root logger restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger("clusterlink").level

    def set_up(fmt: str) -> io.StringIO:
        setup_logging("info", fmt)
        out = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(out)
        return out

    yield set_up
    root.handlers[:], level, ours = saved
    root.setLevel(level)
    logging.getLogger("clusterlink").setLevel(ours)


def test_a_json_line_carries_the_fields_in_order_and_the_message(setup: Setup) -> None:
    stderr = setup("json")
    extra = fields(
        "tunnel_closed",
        direction="egress",
        import_="default/web",
        peer="b",
        bytes_up=5,
        bytes_down=7,
        duration_s=0.12345678,
    )
    logging.getLogger("clusterlink.egress").info("egress closed %s", "web", extra=extra)
    line = json.loads(stderr.getvalue())
    assert list(line) == [
        "time",
        "level",
        "logger",
        "event",
        "direction",
        "import",
        "peer",
        "bytes_up",
        "bytes_down",
        "duration_s",
        "message",
    ]
    assert line["level"] == "info" and line["logger"] == "egress"
    assert (line["import"], line["bytes_down"], line["duration_s"]) == ("default/web", 7, 0.123457)
    assert line["message"] == "egress closed web"


def test_only_the_known_fields_reach_a_json_line(setup: Setup) -> None:
    stderr = setup("json")
    extra = {"clusterlink_fields": {"event": "x", "token": "s3cret"}, "key": "pem"}
    logging.getLogger("clusterlink.links").info("invitation issued", extra=extra)
    line = json.loads(stderr.getvalue())
    assert "s3cret" not in stderr.getvalue() and "pem" not in stderr.getvalue()
    assert set(line) <= {"time", "level", "logger", "message", *FIELD_NAMES}


def test_a_text_line_stays_a_sentence(setup: Setup) -> None:
    stderr = setup("text")
    extra = fields("peer_unreachable", peer="b", reason="no answer")
    logging.getLogger("clusterlink.health").info("peer b is now unreachable", extra=extra)
    text = stderr.getvalue()
    assert text.endswith(" INFO    health    peer b is now unreachable\n"), text


def test_a_limit_hit_is_a_warning_naming_the_limit(setup: Setup) -> None:
    stderr = setup("json")
    limits = Limits(DataplaneSettings(), GatewayMetrics())
    limits.hit(Limit.MAX_CONNECTIONS, "10.0.0.9", "reset %s: too many", "10.0.0.9:1234")
    line = json.loads(stderr.getvalue())
    assert (line["level"], line["event"], line["reason"]) == (
        "warning",
        "limit_hit",
        "max_connections",
    )
    assert line["message"] == "reset 10.0.0.9:1234: too many"

"""The counters behind the data plane's limits, the rate limit of their log lines, and the
settings and flags that set them: pure code, an injected clock, no sockets."""

from __future__ import annotations

import logging

import pytest

from clusterlink.cli.gateway import gateway_run
from clusterlink.dataplane.limits import PEER_LISTENER, Limit, Limits, PeerTunnels, Slots
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.log_throttle import LogThrottle
from clusterlink.metrics import GatewayMetrics

# -- LogThrottle ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def clock_fixture() -> Clock:
    return Clock()


def throttle(clock: Clock, **kwargs: int) -> LogThrottle:
    return LogThrottle(logging.getLogger("test.throttle"), clock=clock, window_s=10.0, **kwargs)


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_source_gets_its_burst_per_window_and_the_rest_is_counted_on_the_next_line(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    logs = throttle(clock, burst=2)
    with caplog.at_level(logging.INFO, "test.throttle"):
        went_out = [logs.log(logging.INFO, "10.0.0.1", "bad input %d", n) for n in range(5)]
        clock.now += 10.0
        logs.log(logging.INFO, "10.0.0.1", "bad input %d", 5)

    assert went_out == [True, True, False, False, False]
    assert messages(caplog) == [
        "bad input 0",
        "bad input 1",
        "bad input 5 (3 similar line(s) from 10.0.0.1 held back)",
    ]


def test_sources_have_budgets_of_their_own(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    logs = throttle(clock, burst=1)
    with caplog.at_level(logging.INFO, "test.throttle"):
        for source in ("a", "b", "a", "b", "c"):
            logs.log(logging.INFO, source, "from %s", source)

    assert messages(caplog) == ["from a", "from b", "from c"]


def test_a_source_name_with_a_percent_sign_cannot_break_the_line(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    logs = throttle(clock, burst=1)
    with caplog.at_level(logging.INFO, "test.throttle"):
        logs.log(logging.INFO, "fe80::1%eth0", "x")
        logs.log(logging.INFO, "fe80::1%eth0", "x")
        clock.now += 10
        logs.log(logging.INFO, "fe80::1%eth0", "x")

    assert messages(caplog)[-1] == "x (1 similar line(s) from fe80::1%eth0 held back)"


def test_a_disabled_level_costs_no_budget(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    logs = throttle(clock, burst=1)
    with caplog.at_level(logging.WARNING, "test.throttle"):
        assert logs.log(logging.INFO, "a", "quiet") is False
        assert logs.log(logging.WARNING, "a", "loud") is True

    assert messages(caplog) == ["loud"]


def test_the_sources_remembered_are_bounded(clock: Clock) -> None:
    logs = throttle(clock, burst=1, max_sources=100)
    for n in range(1000):
        logs.log(logging.CRITICAL, f"10.0.{n // 256}.{n % 256}", "flood")
        clock.now += 0.001

    assert len(logs._windows) <= 100


# -- counters ---------------------------------------------------------------------------------


def test_slots_refuse_at_the_maximum_and_admit_again_once_one_is_given_back() -> None:
    slots = Slots(2)
    assert [slots.take(), slots.take(), slots.take()] == [True, True, False]
    assert slots.in_use == 2
    slots.give_back()
    assert slots.take() is True


def test_each_peer_has_the_whole_maximum_and_a_peer_with_none_left_is_forgotten() -> None:
    tunnels = PeerTunnels(1)
    assert (tunnels.take("a"), tunnels.take("a"), tunnels.take("b")) == (True, False, True)
    assert tunnels.usage() == {"a": 1, "b": 1}
    tunnels.give_back("a")
    assert tunnels.usage() == {"b": 1}
    assert tunnels.in_use("a") == 0


def test_a_hit_is_counted_by_limit_and_the_use_is_reported_per_listener_and_peer() -> None:
    metrics = GatewayMetrics()
    limits = Limits(DataplaneSettings(max_connections=3), metrics)
    metrics.limit_usage = limits.usage
    limits.peer_connections.take()
    limits.pending_handshakes.take()
    web = limits.listener("import:default/web")
    assert web.maximum == 3 and limits.listener("import:default/web") is web
    web.take()
    limits.peer_tunnels.take("b")
    limits.hit(Limit.MAX_CONNECTIONS, "127.0.0.1", "reset %s", "127.0.0.1:1234")
    limits.hit(Limit.MAX_CONNECTIONS, "127.0.0.1", "reset %s", "127.0.0.1:1235")

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("clusterlink_limit_hits_total", limit="max_connections") == 2
    assert sample("clusterlink_connections_open", listener=PEER_LISTENER) == 1
    assert sample("clusterlink_connections_open", listener="import:default/web") == 1
    assert sample("clusterlink_handshakes_pending") == 1
    assert sample("clusterlink_peer_tunnels", peer="b") == 1

    limits.forget_listener("import:default/web")
    limits.forget_listener(PEER_LISTENER)  # the peer listener is always reported
    assert sample("clusterlink_connections_open", listener="import:default/web") is None
    assert sample("clusterlink_connections_open", listener=PEER_LISTENER) == 1


# -- settings and flags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong",
    [
        {"max_connections": 0},
        {"max_connections_per_peer": 0},
        {"max_pending_handshakes": 0},
        {"handshake_timeout_s": 0},
        {"request_head_timeout_s": -1},
        {"idle_timeout_s": -1},
    ],
)
def test_settings_refuse_limits_that_would_refuse_everything(wrong: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(wrong))):
        DataplaneSettings(**wrong)  # type: ignore[arg-type]  # each is a valid field


def test_no_idle_timeout_is_allowed() -> None:
    assert DataplaneSettings(idle_timeout_s=0).idle_timeout_s == 0


@pytest.mark.parametrize(
    ("flag", "field"),
    [
        ("max_connections", "max_connections"),
        ("max_connections_per_peer", "max_connections_per_peer"),
        ("max_pending_handshakes", "max_pending_handshakes"),
        ("handshake_timeout", "handshake_timeout_s"),
        ("request_head_timeout", "request_head_timeout_s"),
        ("idle_timeout", "idle_timeout_s"),
    ],
)
def test_gateway_run_defaults_are_the_settings_defaults(flag: str, field: str) -> None:
    """The flags repeat the defaults (the CLI does not import the gateway to start fast)."""
    default = next(param.default for param in gateway_run.params if param.name == flag)
    assert default == getattr(DataplaneSettings(), field)

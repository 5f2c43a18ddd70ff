"""Prometheus metrics on ``--metrics-listen``, read after real traffic between
sites: connections, authorization decisions, bytes, set-up latency, peer reachability."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.documents import EXPORT_NAME, access_policy, export, import_, selector
from tests.integration.services import echo
from tests.multisite.sites import (
    ALLOW_ALL,
    FAST_HEALTH,
    METRICS_PORT,
    Launcher,
    SiteGateway,
    apply_all,
)
from tests.multisite.traffic import ServeIn, talk_in

pytestmark = pytest.mark.multisite

CONNECTIONS = 5
PAYLOAD = b"x" * 10_000
WITH_METRICS = (*FAST_HEALTH, "--metrics-listen", f"127.0.0.1:{METRICS_PORT}")


class Scrape:
    """One scrape of a gateway's ``/metrics``; ``scrape(name, **labels)`` is a sample's
    value (``name`` without the ``clusterlink_`` prefix), 0 for a series not there."""

    def __init__(self, gateway: SiteGateway) -> None:
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(gateway.metrics())
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((f"clusterlink_{name}", frozenset(labels.items())), 0.0)


def test_metrics_count_connections_decisions_bytes_and_peer_reachability(
    launcher: Launcher, serve: ServeIn
) -> None:
    a, b = launcher.start_all("a", "b", args=WITH_METRICS)
    port = serve("b", echo).port
    deny = access_policy("deny-blocked", "default", "deny", to=[selector({EXPORT_NAME: "blocked"})])
    imports = [import_(name, "default", peer="b") for name in ("echo", "blocked")]
    exports = [export(name, "default", port) for name in ("echo", "blocked")]
    apply_all({a: [b.as_peer(), *imports, ALLOW_ALL, deny], b: [a.as_peer(), *exports, ALLOW_ALL]})
    address = a.import_address("echo")
    for _ in range(CONNECTIONS):
        exchange = talk_in(a.site, address, PAYLOAD)
        assert (exchange.received, exchange.end) == (PAYLOAD, "eof"), str(exchange)
    assert talk_in(a.site, a.import_address("blocked"), b"x").end == "reset"
    a.wait_reachable("b", True, timeout_s=5)

    at_a, at_b = Scrape(a), Scrape(b)

    for scrape, direction, peer in ((at_a, "egress", "b"), (at_b, "ingress", "a")):
        tunnel = {"direction": direction, "resource": "default/echo", "peer": peer}
        assert scrape("connections_total", **tunnel, outcome="allowed") == CONNECTIONS
        for flow in ("client_to_service", "service_to_client"):
            assert scrape("tunnel_bytes_total", **tunnel, flow=flow) == CONNECTIONS * len(PAYLOAD)
        assert scrape("tunnels_active", direction=direction) == 0
        assert scrape("connection_setup_seconds_count", direction=direction) == CONNECTIONS
        assert 0 < scrape("connection_setup_seconds_sum", direction=direction) < CONNECTIONS
        allowed = {"direction": direction, "decision": "allow", "policy": "default/allow-all"}
        assert scrape("authorization_decisions_total", **allowed) == CONNECTIONS
    blocked = {"direction": "egress", "resource": "default/blocked", "peer": "b"}
    assert at_a("connections_total", **blocked, outcome="denied") == 1
    denied = {"direction": "egress", "decision": "deny", "policy": "default/deny-blocked"}
    assert at_a("authorization_decisions_total", **denied) == 1
    assert at_a("peer_reachable", peer="b") == 1
    assert 0 < at_a("peer_heartbeat_rtt_seconds", peer="b") < 1

    b.crash()
    a.wait_reachable("b", False, timeout_s=10)
    assert Scrape(a)("peer_reachable", peer="b") == 0

"""Prometheus metrics of one gateway (served on ``--metrics-listen``).

Nothing here runs per chunk. Connection outcomes, decisions and set-up latency are counted
once per connection; byte counts are *read* at scrape time from the relays' own counters
(live tunnels) plus the totals of tunnels that already ended, so a long-lived tunnel shows
progress without any bookkeeping on the data path. Peer reachability and heartbeat round-trip
time are likewise read from the health state at scrape time.

Each gateway has its own ``CollectorRegistry`` (not the process-global one), so tests can run
several gateways in one process and nothing leaks between them.

Metrics (labels in brackets):
- ``clusterlink_connections_total`` [direction, resource, peer, outcome]: new connections,
  once each; direction ``egress`` (resource = the Import) or ``ingress`` (resource = the
  Export). ``peer``: the peer that served the tunnel, or for a refused egress connection the
  one tried last (empty only when no source could be tried at all).
- ``clusterlink_tunnel_attempts_total`` [direction, resource, peer, outcome]: every attempt
  at a source of an Import, so that a failover shows what it skipped and why (``allowed``,
  ``denied``, ``not_found``, ``no_peer``, ``overloaded``, ``unreachable``).
- ``clusterlink_authorization_decisions_total`` [direction, decision, policy]
- ``clusterlink_connection_setup_seconds`` [direction]: accept to first byte relayed.
- ``clusterlink_tunnel_bytes_total`` [direction, resource, peer, flow]: flow is
  ``client_to_service`` or ``service_to_client``.
- ``clusterlink_tunnels_active`` [direction]
- ``clusterlink_peer_reachable`` [peer]: 1 reachable, 0 not (or not yet known).
- ``clusterlink_peer_heartbeat_rtt_seconds`` [peer]
- ``clusterlink_limit_hits_total`` [limit]: a connection, stream or tunnel refused or ended
  by a limit (``dataplane.limits.Limit`` names them).
- ``clusterlink_connections_open`` [listener], ``clusterlink_handshakes_pending``,
  ``clusterlink_peer_tunnels`` [peer]: the current use of those limits.
- ``clusterlink_build_info`` [version, python, openssl]: always 1; joins a dashboard's panels
  to what runs, and tells after an upgrade which gateways still run the old build.
- ``process_*`` (prometheus_client's ``ProcessCollector``, from ``/proc``): CPU seconds,
  resident and virtual memory, open and maximum file descriptors, start time. Off ``/proc``
  (not Linux) the collector yields nothing rather than failing.
- ``python_gc_collections_total`` and ``python_gc_objects_collected_total`` [generation]
  (prometheus_client's ``GCCollector``): the cyclic collector at work; the gateway freezes
  what start-up made out of its way, so these count what serving made.
"""

from __future__ import annotations

import platform
import ssl
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from clusterlink import __version__

__all__ = [
    "GatewayMetrics",
    "LimitUsage",
    "PeerSample",
    "TunnelLabels",
    "TunnelSample",
    "build_labels",
]

TunnelLabels = tuple[str, str, str]  # (direction, resource, peer)

# The *_created series only double the output. (The function lacks annotations upstream.)
disable_created_metrics()  # type: ignore[no-untyped-call]

_SETUP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True, slots=True)
class TunnelSample:
    labels: TunnelLabels
    bytes_up: int
    bytes_down: int


@dataclass(frozen=True, slots=True)
class PeerSample:
    peer: str
    reachable: bool | None
    rtt_s: float | None


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """How much of each limited resource is in use now."""

    connections: Mapping[str, int] = field(default_factory=dict)  # listener -> open
    pending_handshakes: int = 0  # on the peer listener
    peer_tunnels: Mapping[str, int] = field(default_factory=dict)  # peer -> open or opening


class _ScrapeTimeCollector(Collector):
    """Byte and peer metrics computed when Prometheus asks, not when bytes move."""

    def __init__(self, owner: GatewayMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        owner = self.owner
        totals: dict[TunnelLabels, list[int]] = defaultdict(lambda: [0, 0])
        for labels, (up, down) in owner.closed_bytes.items():
            totals[labels][0] += up
            totals[labels][1] += down
        active: dict[str, int] = defaultdict(int)
        for sample in owner.live_tunnels():
            totals[sample.labels][0] += sample.bytes_up
            totals[sample.labels][1] += sample.bytes_down
            active[sample.labels[0]] += 1
        family = CounterMetricFamily(
            "clusterlink_tunnel_bytes",
            "Bytes relayed through tunnels",
            labels=["direction", "resource", "peer", "flow"],
        )
        for (direction, resource, peer), (up, down) in totals.items():
            family.add_metric([direction, resource, peer, "client_to_service"], up)
            family.add_metric([direction, resource, peer, "service_to_client"], down)
        yield family
        gauge = GaugeMetricFamily(
            "clusterlink_tunnels_active", "Open tunnels", labels=["direction"]
        )
        for direction in ("egress", "ingress"):
            gauge.add_metric([direction], active.get(direction, 0))
        yield gauge
        reachable = GaugeMetricFamily(
            "clusterlink_peer_reachable",
            "1 if heartbeats say the peer is reachable, else 0",
            labels=["peer"],
        )
        rtt = GaugeMetricFamily(
            "clusterlink_peer_heartbeat_rtt_seconds",
            "Round-trip time of the last answered heartbeat",
            labels=["peer"],
        )
        for peer_sample in owner.peers():
            name = peer_sample.peer
            reachable.add_metric([name], 1.0 if peer_sample.reachable else 0.0)
            if peer_sample.rtt_s is not None:
                rtt.add_metric([name], peer_sample.rtt_s)
        yield reachable
        yield rtt
        yield from _usage_gauges(owner.limit_usage())


def _usage_gauges(usage: LimitUsage) -> Iterator[Metric]:
    yield _gauge(
        "clusterlink_connections_open",
        "Connections open on each listener (peer listener: TLS connections)",
        "listener",
        usage.connections,
    )
    yield GaugeMetricFamily(
        "clusterlink_handshakes_pending",
        "TLS handshakes in progress on the peer listener",
        value=usage.pending_handshakes,
    )
    yield _gauge(
        "clusterlink_peer_tunnels",
        "Tunnels to and from each peer, open or being set up",
        "peer",
        usage.peer_tunnels,
    )


def _gauge(name: str, documentation: str, label: str, values: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def build_labels() -> dict[str, str]:
    """The labels of ``clusterlink_build_info``: our version, Python's, and the OpenSSL that
    does the TLS (its version decides ciphers and handshake speed)."""
    return {
        "version": __version__,
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION.split()[1],
    }


class GatewayMetrics:
    def __init__(
        self,
        *,
        live_tunnels: Callable[[], Iterable[TunnelSample]] = lambda: (),
        peers: Callable[[], Iterable[PeerSample]] = lambda: (),
        limit_usage: Callable[[], LimitUsage] = LimitUsage,
    ) -> None:
        self.registry = CollectorRegistry()
        self.live_tunnels = live_tunnels
        self.peers = peers
        self.limit_usage = limit_usage
        self.closed_bytes: dict[TunnelLabels, tuple[int, int]] = {}
        self.connections = Counter(
            "clusterlink_connections",
            "New connections by direction, resource, peer and outcome",
            ["direction", "resource", "peer", "outcome"],
            registry=self.registry,
        )
        self.tunnel_attempts = Counter(
            "clusterlink_tunnel_attempts",
            "Attempts at a source of an Import, by peer and outcome",
            ["direction", "resource", "peer", "outcome"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "clusterlink_authorization_decisions",
            "Authorization decisions by the policy that made them",
            ["direction", "decision", "policy"],
            registry=self.registry,
        )
        self.setup_seconds = Histogram(
            "clusterlink_connection_setup_seconds",
            "Time from accepting a connection to relaying its first byte",
            ["direction"],
            buckets=_SETUP_BUCKETS,
            registry=self.registry,
        )
        self.limit_hits = Counter(
            "clusterlink_limit_hits",
            "Connections, streams or tunnels refused or ended by a limit",
            ["limit"],
            registry=self.registry,
        )
        self.udp_dropped = Counter(
            "clusterlink_udp_datagrams_dropped",
            "UDP datagrams dropped at a flow's edge, by reason (UDP promises no delivery)",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_ScrapeTimeCollector(self))
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        build = Info("clusterlink_build", "What this gateway runs", registry=self.registry)
        build.info(build_labels())

    def tunnel_closed(self, labels: TunnelLabels, bytes_up: int, bytes_down: int) -> None:
        up, down = self.closed_bytes.get(labels, (0, 0))
        self.closed_bytes[labels] = (up + bytes_up, down + bytes_down)

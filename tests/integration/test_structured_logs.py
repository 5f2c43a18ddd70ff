"""What a log pipeline and a metrics scraper get from real gateways.

``--log-format json``: every line on stderr is one JSON object, and the events an operator
queries carry their facts as fields (``event``, ``direction``, ``import``, ``export``,
``peer``, ``client``, ``decision``, ``policy``, bytes, duration, ``reason``), so nobody has
to parse a sentence. A denial by policy and a peer coming and going are INFO, not warnings.
No line ever holds a key or an invitation's token.

``--metrics-listen``: the build and the process itself are served beside the product's own
metrics.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.clients import Exchange, talk
from tests.integration.conftest import Link, Pair, StartGateway, StartService
from tests.integration.documents import EXPORT_NAME, access_policy, export, peer, selector
from tests.integration.gateways import Gateway
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

Line = dict[str, Any]


@pytest.fixture(scope="module")
def pair(start_gateway: StartGateway) -> Pair:
    """Gateways a and b logging JSON; a also serves metrics."""
    json_logs = ("--log-format", "json")
    a = start_gateway("a", "--label", "site=a", "--metrics-listen", "127.0.0.1:0", *json_logs)
    b = start_gateway("b", "--label", "site=b", *json_logs)
    a.apply(peer("b", b.listen))
    b.apply(peer("a", a.listen))
    return Pair(source=a, target=b)


def lines_of(gateway: Gateway) -> list[Line]:
    """Every line of the gateway's stderr, each parsed as JSON (a line that is not fails)."""
    parsed = []
    for text in gateway.log().splitlines():
        try:
            parsed.append(json.loads(text))
        except ValueError:
            message = f"gateway {gateway.name} logged a line that is not JSON: {text!r}"
            raise AssertionError(message) from None
    return parsed


def wait_for_line(gateway: Gateway, what: str, matches: Callable[[Line], bool]) -> Line:
    return wait_until(
        lambda: next((line for line in lines_of(gateway) if matches(line)), None),
        what=f"gateway {gateway.name} logs {what}",
        describe=lambda _: "\n" + "\n".join(gateway.log().splitlines()[-10:]),
    )


def event(name: str, **expected: Any) -> Callable[[Line], bool]:
    return lambda line: (
        line.get("event") == name and all(line.get(key) == value for key, value in expected.items())
    )


def test_json_lines_carry_the_facts_of_allowed_and_denied_tunnels(
    link: Link, start_service: StartService
) -> None:
    a, b, ns = link.source, link.target, link.namespace
    address = link.open("echo", start_service(echo).port, allow=True)
    exchange = talk(address, b"hello")
    assert exchange == Exchange(b"hello", "eof")
    no_guarded = [selector({EXPORT_NAME: "guarded"})]
    a.apply(access_policy("no-guarded", ns, "deny", to=no_guarded))
    denied = link.import_("guarded")
    assert talk(denied, b"secret?").end == "reset"

    closed = wait_for_line(a, "the egress tunnel closing", event("tunnel_closed", peer="b"))
    assert {key: closed[key] for key in ("level", "logger", "direction", "import", "export")} == {
        "level": "info",
        "logger": "egress",
        "direction": "egress",
        "import": f"{ns}/echo",
        "export": f"{ns}/echo",
    }
    assert (closed["bytes_up"], closed["bytes_down"]) == (5, 5)
    assert closed["duration_s"] >= 0 and closed["client"].startswith("127.0.0.1:")
    opened = wait_for_line(
        a, "the tunnel opening", event("tunnel_opened", **{"import": f"{ns}/echo"})
    )
    assert (opened["decision"], opened["policy"]) == ("allowed", f"{ns}/allow-all")

    refused = wait_for_line(
        a, "the denied connection", event("tunnel_refused", **{"import": f"{ns}/guarded"})
    )
    assert refused["level"] == "info"  # a policy saying no is not a fault
    assert (refused["decision"], refused["policy"]) == ("denied", f"{ns}/no-guarded")
    assert (refused["peer"], refused["export"]) == ("b", f"{ns}/guarded")
    assert "deny by policy" in refused["reason"] and refused["message"]

    # The target logged its side of the allowed tunnel, with the client's address as a saw it.
    served = wait_for_line(b, "the ingress tunnel closing", event("tunnel_closed", peer="a"))
    assert (served["direction"], served["export"], served["client"]) == (
        "ingress",
        f"{ns}/echo",
        closed["client"].rpartition(":")[0],
    )
    assert (served["bytes_up"], served["bytes_down"]) == (5, 5)
    for line in lines_of(a) + lines_of(b):
        assert {"time", "level", "logger", "message"} <= set(line), line


def test_a_service_that_refuses_is_a_warning_at_both_ends(link: Link) -> None:
    """Not a decision but a fault: someone has to look at the service."""
    with socket.socket() as bound:  # bound, not listening: every connection is refused
        bound.bind(("127.0.0.1", 0))
        address = link.open("down", bound.getsockname()[1], allow=True)
        assert talk(address, b"hi").end == "reset"
        export = f"{link.namespace}/down"
        at_target = wait_for_line(
            link.target, "the refused service", event("tunnel_refused", export=export)
        )
    assert (at_target["level"], at_target["decision"], at_target["peer"]) == (
        "warning",
        "failed",
        "a",
    )
    assert at_target["policy"] == f"{link.namespace}/allow-all"  # it was allowed, then failed
    at_source = wait_for_line(
        link.source, "the failed connection", event("tunnel_refused", export=export)
    )
    assert (at_source["level"], at_source["decision"]) == ("warning", "failed")


def test_a_peer_turning_reachable_is_an_info_line_with_its_name(pair: Pair) -> None:
    line = wait_for_line(pair.source, "b turning reachable", event("peer_reachable", peer="b"))
    assert (line["level"], line["logger"]) == ("info", "health")


def test_no_line_holds_a_key_or_an_invitation_token(pair: Pair) -> None:
    a = pair.source
    token = a.cl("invite", "--name", "c", "-o", "-").expect_ok().stdout.strip()
    wait_for_line(a, "the invitation", lambda line: "invitation" in line["message"])
    log = a.log()
    assert token and token not in log
    secret_part = token.rsplit(".", 1)[-1]
    assert secret_part not in log
    for key in (a.peer_dir / "key.pem", a.peer_dir / "admin" / "key.pem"):
        body = [row for row in key.read_text().splitlines() if not row.startswith("-----")]
        assert body and not any(row in log for row in body), key


def test_metrics_serve_the_build_and_the_process(pair: Pair) -> None:
    url = f"http://{pair.source.info['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    samples = {row.split(" ")[0].split("{")[0]: row for row in text.splitlines() if row[:1] != "#"}
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert float(samples[name].rsplit(" ", 1)[1]) > 0, name
    build = samples["clusterlink_build_info"]
    assert 'version="' in build and 'python="3.' in build and 'openssl="' in build


def test_a_started_gateway_collects_its_cyclic_garbage(pair: Pair) -> None:
    """The command line turns the collector off while the gateway is imported (it would
    slow the start down); the started gateway must have turned it back on."""
    url = f"http://{pair.source.info['metrics']}/metrics"

    def young_collections() -> float:
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        name = 'python_gc_collections_total{generation="0"}'
        return float(next(r for r in text.splitlines() if r.startswith(name)).split()[-1])

    batches = iter(range(1000))

    def grown_then_collected(first: float) -> bool:
        # Objects that stay (stored exports) are what sets the collector off; a gateway at
        # rest makes and frees its objects and rarely collects.
        batch = next(batches)
        pair.source.apply(*(export(f"gc-{batch}-{i}", "gc", 8080) for i in range(50)))
        return young_collections() > first

    first = young_collections()
    wait_until(lambda: grown_then_collected(first), what="the gateway's collector to run")

"""``clusterlink explain`` against real gateways: the tier that would decide, and the proof
that a real connection then gets exactly that decision.

Explain opens no connection; it must still agree with the data path, so each test that
explains a denial also sends a client through and reads the policy the flow record names.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.clients import Exchange, talk
from tests.integration.conftest import Link, StartService
from tests.integration.documents import EXPORT_NAME, access_policy, selector
from tests.integration.gateways import CLResult, Gateway
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration

CLIENT_IP = "client.clusterlink.net/ip"


def explain_json(gateway: Gateway, *args: str) -> dict[str, Any]:
    answer: dict[str, Any] = gateway.cl("explain", *args, "-o", "json").json()
    return answer


def tiers(trace: dict[str, Any]) -> dict[str, tuple[list[str], bool, bool]]:
    return {t["tier"]: (t["matched"], t["reached"], t["deciding"]) for t in trace["tiers"]}


def refused_by(gateway: Gateway, resource: str) -> str:
    """The policy that the flow record of the first denial of ``resource`` names."""

    def record() -> dict[str, Any] | None:
        lines = gateway.cl("flows", "-o", "json").expect_ok().stdout.splitlines()
        found = [json.loads(line) for line in lines if line.strip()]
        refused = (r for r in found if r["resource"] == resource and r["decision"] == "denied")
        return next(refused, None)

    return str(wait_until(record, what=f"a refused flow of {resource}")["policy"])


def test_a_deny_shadowing_an_allow_is_explained_and_then_decides(
    link: Link, start_service: StartService
) -> None:
    ns = link.namespace
    address = link.open("web", start_service(echo).port, allow=True)
    assert talk(address, b"hi") == Exchange(b"hi", "eof")
    link.source.apply(
        access_policy("no-web", ns, "deny", to=[selector({EXPORT_NAME: "web"})]),
    )

    shown = link.source.cl("explain", "--import", f"{ns}/web", "--client-ip", "10.0.0.7")
    lines = shown.expect_ok().stdout.splitlines()
    assert lines[0] == f"egress: a client of import {ns}/web to peer b, export {ns}/web"
    assert lines[3] == f"* deny              matched {ns}/no-web (1 checked)"
    assert lines[4] == f"  allow             not reached (would match {ns}/allow-all)"
    assert lines[-1] == f"decision: deny by policy {ns}/no-web"
    assert [line[0] for line in lines[1:6]] == [" ", " ", "*", " ", " "]

    (trace,) = explain_json(link.source, "--import", f"{ns}/web", "--client-ip", "10.0.0.7")[
        "traces"
    ]
    assert (trace["decision"], trace["decidedBy"], trace["privileged"]) == (
        "deny",
        f"{ns}/no-web",
        False,
    )
    assert trace["source"][CLIENT_IP] == "10.0.0.7"
    assert trace["destination"][EXPORT_NAME] == "web"

    assert talk(address, b"hi").end == "reset"
    assert refused_by(link.source, f"{ns}/web") == f"{ns}/no-web"


def test_ingress_is_explained_for_the_calling_peer_and_a_privileged_deny_comes_first(
    link: Link, start_service: StartService
) -> None:
    ns = link.namespace
    address = link.open("db", start_service(echo).port, allow=True)
    answer = explain_json(link.target, "--export", f"{ns}/db", "--peer", "a")
    (trace,) = answer["traces"]
    assert (answer["direction"], trace["peer"], trace["summary"]) == (
        "ingress",
        "a",
        f"allow by policy {ns}/allow-all",
    )
    assert trace["source"]["peer.clusterlink.net/labels.site"] == "a"  # learned by heartbeat

    block = link.privileged(link.target, "block", "deny")
    after = tiers(explain_json(link.target, "--export", f"{ns}/db", "--peer", "a")["traces"][0])
    assert after["privileged deny"] == ([block], True, True)
    assert after["allow"] == ([f"{ns}/allow-all"], False, False)
    assert after["default deny"] == ([], False, False)

    assert talk(address, b"hi").end == "reset"
    assert refused_by(link.target, f"{ns}/db") == block


def test_the_client_address_decides_when_a_policy_selects_on_it(link: Link) -> None:
    ns = link.namespace
    link.import_("api")
    near = selector({CLIENT_IP: "10.0.0.1"})
    link.source.apply(access_policy("near-only", ns, "allow", from_=[near]))

    def decision(ip: str) -> str:
        answer = explain_json(link.source, "--import", f"{ns}/api", "--client-ip", ip)
        return str(answer["traces"][0]["summary"])

    assert decision("10.0.0.1") == f"allow by policy {ns}/near-only"
    assert decision("10.0.0.2") == "deny (default deny: no policy matched)"
    text = link.source.cl("explain", "--import", f"{ns}/api", "--client-ip", "10.0.0.2")
    assert text.expect_ok().stdout.splitlines()[-2] == "* default deny      no policy matched: deny"


def one_line_error(result: CLResult) -> str:
    assert result.rc == 1, result
    (line,) = result.stderr.splitlines()
    return line


def test_unknown_import_export_and_peer_are_one_line_errors(link: Link) -> None:
    ns = link.namespace
    missing = one_line_error(
        link.source.cl("explain", "--import", f"{ns}/nosuch", "--client-ip", "10.0.0.1")
    )
    assert (
        missing
        == f"error: no import {ns}/nosuch at peer a; `clusterlink get imports -A` lists them"
    )
    link.expose("svc", 9)
    assert f"no export {ns}/other at peer b" in one_line_error(
        link.target.cl("explain", "--export", f"{ns}/other", "--peer", "a")
    )
    stranger = one_line_error(link.target.cl("explain", "--export", f"{ns}/svc", "--peer", "zed"))
    assert "no Peer named 'zed' at peer b" in stranger and "get peers" in stranger
    usage = link.source.cl("explain", "--export", f"{ns}/svc")
    assert usage.rc == 2 and "--export needs --peer" in usage.stderr

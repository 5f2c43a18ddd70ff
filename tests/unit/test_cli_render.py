"""One data source, several renderings: tables, JSON and YAML built from the same dicts."""

import json
from typing import Any

import yaml

from clusterlink.cli.render import (
    dump,
    render_sections,
    render_text,
    resource_table,
    status_sections,
)

SOURCES = [
    {"peer": "b", "exportName": "echo", "exportNamespace": "default"},
    {
        "peer": "a-peer-with-a-rather-long-name.example.com",
        "exportName": "echo-service-v2",
        "exportNamespace": "team-with-a-long-namespace",
    },
]
IMPORT: dict[str, Any] = {
    "apiVersion": "clusterlink.net/v1alpha1",
    "kind": "Import",
    "metadata": {"name": "echo", "namespace": "default"},
    "spec": {"port": 0, "sources": SOURCES, "lbScheme": "round-robin"},
    "status": {"listen": "127.0.0.1:40111"},
}
PEER: dict[str, Any] = {
    "apiVersion": "clusterlink.net/v1alpha1",
    "kind": "Peer",
    "metadata": {"name": "b"},
    "spec": {"gateways": [{"host": "::1", "port": 9443}]},
    "status": {"reachable": True, "lastSeen": "2026-11-25T19:00:00Z", "labels": {}},
}
POLICY: dict[str, Any] = {
    "apiVersion": "clusterlink.net/v1alpha1",
    "kind": "AccessPolicy",
    "metadata": {"name": "allow-b", "namespace": "default"},
    "spec": {
        "action": "allow",
        "from": [{"workloadSelector": {"matchLabels": {"peer.clusterlink.net/name": "b"}}}],
        "to": [
            {"workloadSelector": {}},
            {
                "workloadSelector": {
                    "matchExpressions": [
                        {"key": "env", "operator": "In", "values": ["dev", "test"]},
                        {"key": "legacy", "operator": "DoesNotExist"},
                    ]
                }
            },
        ],
    },
}
STATUS: dict[str, Any] = {
    "gateway": {
        "name": "a",
        "fabric": "fab",
        "version": "0.1.0",
        "labels": {"site": "lab"},
        "listen": "127.0.0.1:8443",
        "admin": "127.0.0.1:8444",
        "metrics": None,
        "importHost": "127.0.0.1",
        "uptimeS": 12.5,
    },
    "peers": [
        {
            "name": "b",
            "gateways": ["127.0.0.1:9443"],
            "reachable": False,
            "reason": "5 heartbeats failed",
            "lastSeen": None,
            "rttMs": 0.84,
            "labels": {},
        }
    ],
    "exports": [],
    "imports": [
        {
            "namespace": "default",
            "name": "echo",
            "port": 0,
            "protocol": "UDP",
            "listen": "127.0.0.1:40111",
            "lbScheme": "static",
            "sources": SOURCES[:1],
        }
    ],
}


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_import_table_has_one_row_per_import_with_every_source() -> None:
    text = render_text(resource_table("Import", [IMPORT]))

    assert lines(text)[0] == [
        "NAMESPACE",
        "NAME",
        "PORT",
        "PROTOCOL",
        "LISTEN",
        "SOURCES",
        "LB",
        "REASON",
    ]
    row = text.splitlines()[1]
    assert row.split()[:5] == ["default", "echo", "0", "TCP", "127.0.0.1:40111"]
    assert "b:default/echo, a-peer-with-a-rather-long-name.example.com:" in row
    assert row.endswith("team-with-a-long-namespace/echo-service-v2  round-robin  -")


def test_import_reason_is_the_message_of_each_condition_that_does_not_hold() -> None:
    holds = {"type": "Ok", "status": "True", "reason": "Fine", "message": "all good"}
    fails = {
        "type": "ImportSourcesValid",
        "status": "False",
        "reason": "PeerNotFound",
        "message": "source x: no Peer named x",
    }
    imp = {**IMPORT, "status": {"listen": None, "conditions": [holds, fails]}}

    heading, status_table = status_sections(
        {"imports": [{**STATUS["imports"][0], "conditions": [holds, fails]}]}
    )[-1]
    assert heading == "IMPORTS (1)" and status_table is not None
    rows = {
        "get": render_text(resource_table("Import", [imp])).splitlines()[1],
        "status": render_text(status_table).splitlines()[1],
    }

    for view, row in rows.items():
        assert row.endswith("  source x: no Peer named x"), view
        assert "all good" not in row, view


def test_piped_table_is_never_wrapped_or_cut_and_has_no_trailing_blanks() -> None:
    text = render_text(resource_table("Import", [IMPORT, IMPORT]))

    assert len(text.splitlines()) == 3
    assert max(len(line) for line in text.splitlines()) > 120
    assert all(line == line.rstrip() for line in text.splitlines())
    assert "\x1b[" not in text


def test_peer_table_shows_reachability_and_brackets_v6_literally() -> None:
    text = render_text(resource_table("Peer", [PEER]))

    assert lines(text) == [
        ["NAME", "GATEWAYS", "REACHABLE", "LAST-SEEN", "RTT", "REASON"],
        ["b", "[::1]:9443", "yes", "2026-11-25T19:00:00Z", "-", "-"],
    ]


def test_policy_table_writes_selectors_in_label_selector_syntax() -> None:
    text = render_text(resource_table("AccessPolicy", [POLICY]))

    row = text.splitlines()[1]
    assert "peer.clusterlink.net/name=b" in row
    assert row.endswith("* | env in (dev,test),!legacy")


def test_json_of_a_list_is_items_and_round_trips() -> None:
    data = {"items": [IMPORT, PEER]}

    assert json.loads(dump(data, "json")) == data


def test_yaml_keeps_the_document_order_and_round_trips() -> None:
    text = dump(IMPORT, "yaml")

    assert yaml.safe_load(text) == IMPORT
    assert text.startswith("apiVersion: clusterlink.net/v1alpha1\nkind: Import\n")


def test_status_sections_cover_gateway_peers_exports_and_imports() -> None:
    text = render_sections(status_sections(STATUS))

    headings = ["GATEWAY", "PEERS (1)", "EXPORTS (0)", "IMPORTS (1)"]
    assert [line for line in text.splitlines() if line in headings] == headings
    assert ["labels", "site=lab"] in lines(text)
    assert ["uptime", "12s"] in lines(text) or ["uptime", "13s"] in lines(text)
    assert ["b", "127.0.0.1:9443", "no", "-", "0.8ms", "5", "heartbeats", "failed"] in lines(text)
    assert ["default", "echo", "0", "UDP", "127.0.0.1:40111", "b:default/echo", "static", "-"] in (
        lines(text)
    )


def test_long_cells_are_printed_whole_never_cut() -> None:
    text = render_sections([(None, resource_table("Import", [IMPORT]))])

    assert "team-with-a-long-namespace/echo-service-v2" in text.splitlines()[1]
    assert "…" not in text


def test_a_peer_that_dials_in_says_so_where_its_gateways_would_be() -> None:
    dialling = {
        "kind": "Peer",
        "metadata": {"name": "nat"},
        "spec": {"gateways": [], "dialsIn": True},
    }
    text = render_text(resource_table("Peer", [dialling]))
    assert "(dials in)" in text.splitlines()[1]
    row = {"name": "nat", "gateways": [], "dialsIn": True, "reachable": True}
    text = render_sections(status_sections({**STATUS, "peers": [row]}))
    assert any(line.split()[:4] == ["nat", "(dials", "in)", "yes"] for line in text.splitlines())

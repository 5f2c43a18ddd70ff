"""Managing a running gateway with the CLI (DESIGN §4, §6): all-or-nothing writes, exit codes,
one-line errors, and the ``-o json`` shapes that scripts rely on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.integration.conftest import Link, StartGateway, StartService
from tests.integration.documents import (
    access_policy,
    export,
    import_from,
    peer,
    selector,
    yaml_stream,
)
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration


def test_apply_with_an_invalid_second_document_stores_neither(link: Link) -> None:
    ns = link.namespace
    documents = yaml_stream(export("first", ns, 8080), export("second", ns, 70000))

    done = link.target.cl("apply", "-f", "-", stdin=documents)

    assert done.rc == 1, done
    assert done.stderr == (
        f"error: document 2 (Export {ns}/second): spec.port: must be at most 65535 (got 70000)\n"
    )
    first = link.target.cl("get", "export", "first", "-n", ns)
    assert (first.rc, first.stderr) == (1, f"error: export {ns}/first not found\n")


def test_an_export_without_host_is_refused_by_a_standalone_gateway(link: Link) -> None:
    """The original's form (no host: the Service of the Export's name) is valid in Kubernetes
    mode only; a standalone gateway says so, naming the field, and stores nothing."""
    ns = link.namespace
    document = export("no-host", ns, 8080)
    del document["spec"]["host"]

    done = link.target.cl("apply", "-f", "-", stdin=yaml_stream(document))

    assert done.rc == 1, done
    assert done.stderr == (
        f"error: export {ns}/no-host: spec.host is required by a standalone gateway (leaving "
        "it out means the Service of the Export's name, in Kubernetes mode only)\n"
    )
    assert link.target.cl("get", "export", "no-host", "-n", ns).rc == 1


@pytest.mark.parametrize("verb", ["get", "delete"])
def test_missing_resource_exits_1_with_not_found(link: Link, verb: str) -> None:
    done = link.source.cl(verb, "import", "nosuch", "-n", link.namespace)

    assert (done.rc, done.stdout) == (1, "")
    assert done.stderr == f"error: import {link.namespace}/nosuch not found\n"


def test_get_json_lists_items_with_their_status(link: Link, start_service: StartService) -> None:
    service = start_service(echo)
    address = link.open("echo", service.port)

    listed = link.source.cl("get", "imports", "-n", link.namespace, "-o", "json").json()
    single = link.source.get("import", "echo", link.namespace)

    assert list(listed) == ["items"] and listed["items"] == [single]
    assert single["apiVersion"] == "clusterlink.net/v1alpha1"
    assert single["kind"] == "Import"
    assert single["metadata"]["name"] == "echo"
    assert single["metadata"]["namespace"] == link.namespace
    assert single["status"]["listen"] == "{}:{}".format(*address)
    exports = link.target.cl("get", "exports", "-n", link.namespace, "-o", "json").json()
    assert [item["spec"] for item in exports["items"]] == [
        {"host": "127.0.0.1", "port": service.port}
    ]


def test_status_json_shows_the_peer_and_the_import_listen_address(
    link: Link, start_service: StartService
) -> None:
    address = link.open("echo", start_service(echo).port)

    def status_with_b_reachable() -> dict[str, Any] | None:
        status: dict[str, Any] = link.source.cl("status", "-o", "json").json()
        peers = {p["name"]: p for p in status["peers"]}
        return status if peers.get("b", {}).get("reachable") else None

    status = wait_until(status_with_b_reachable, what="status -o json shows peer b reachable")

    assert status["gateway"]["name"] == "a"
    (b,) = status["peers"]
    assert b["gateways"] == ["{}:{}".format(*link.target.listen)]
    imports = {(i["namespace"], i["name"]): i for i in status["imports"]}
    assert imports[(link.namespace, "echo")]["listen"] == "{}:{}".format(*address)


@pytest.mark.parametrize("how", ["create-policy", "apply"])
def test_a_policy_on_a_misspelt_clusterlink_key_is_refused_and_not_stored(
    link: Link, how: str
) -> None:
    ns, typo = link.namespace, "peer.clusterlink.net/nmae"
    if how == "create-policy":
        args = ("--name", "typo", "-n", ns, "--action", "allow", "--from", f"{typo}=a")
        done = link.source.cl("create", "policy", *args)
    else:
        policy = access_policy("typo", ns, "allow", from_=[selector({typo: "a"})])
        done = link.source.cl("apply", "-f", "-", stdin=yaml_stream(policy))

    assert (done.rc, done.stdout) == (1, ""), done
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done
    # The gateway (create) and the CLI's own parse (apply) word where differently; both name
    # the field and the key.
    assert f"AccessPolicy {ns}/typo" in done.stderr, done
    assert "spec.from[0].workloadSelector.matchLabels" in done.stderr, done
    assert (
        f"{typo!r} is not a ClusterLink attribute (known source attributes: "
        "peer.clusterlink.net/name, "
    ) in done.stderr, done
    stored = link.source.cl("get", "accesspolicy", "typo", "-n", ns)
    assert (stored.rc, stored.stderr) == (1, f"error: accesspolicy {ns}/typo not found\n")


def test_an_import_from_a_missing_peer_says_so_in_its_status_until_the_peer_exists(
    link: Link,
) -> None:
    ns, gateway, ghost = link.namespace, link.source, "not-yet-a-peer"
    gateway.apply(import_from("web", ns, peers=[link.target.name, ghost]))

    try:
        conditions = gateway.get("import", "web", ns)["status"]["conditions"]
        as_yaml = yaml.safe_load(gateway.cl("get", "import", "web", "-n", ns, "-o", "yaml").stdout)
        table = gateway.cl("status").expect_ok().stdout
        gateway.apply(peer(ghost, link.target.listen))

        def cleared() -> dict[str, Any] | None:
            (condition,) = gateway.get("import", "web", ns)["status"]["conditions"]
            return condition if condition["status"] == "True" else None

        after = wait_until(cleared, what=f"ImportSourcesValid turns True once Peer {ghost} exists")
        table_after = gateway.cl("status").expect_ok().stdout
    finally:
        gateway.delete("import", "web", ns)
        gateway.cl("delete", "peer", ghost)

    (condition,) = conditions
    assert {k: condition[k] for k in ("type", "status", "reason", "message")} == {
        "type": "ImportSourcesValid",
        "status": "False",
        "reason": "PeerNotFound",
        "message": f"source {ghost}: no Peer named {ghost}",
    }
    assert condition["lastTransitionTime"].endswith("Z")
    assert as_yaml["status"]["conditions"] == conditions
    (row,) = [line for line in table.splitlines() if line.startswith(f"{ns} ")]
    assert row.endswith(f"  source {ghost}: no Peer named {ghost}"), table
    assert after["reason"] == "PeersFound"
    (row,) = [line for line in table_after.splitlines() if line.startswith(f"{ns} ")]
    assert row.endswith("  -") and "no Peer" not in row, table_after


def test_status_says_a_peer_pointed_at_an_admin_port_needs_the_listen_port(
    start_gateway: StartGateway,
) -> None:
    """The usual slip: `create peer --port` given the other gateway's --admin-listen port."""
    here, there = start_gateway("here"), start_gateway("there")
    admin = "{}:{}".format(*there.admin)
    here.cl(
        "create", "peer", "--name", "there", "--host", there.admin[0], "--port", str(there.admin[1])
    ).expect_ok()

    def reason() -> str | None:
        (entry,) = here.cl("status", "-o", "json").json()["peers"]
        shown = str(entry.get("reason"))
        return shown if admin in shown else None

    said = wait_until(reason, what="status names the admin port as the Peer's problem")
    table = here.cl("status").expect_ok().stdout

    hint = f"{admin} is an admin API port, not a peer listener: use the port of the peer's --listen"
    assert said == hint
    assert hint in table

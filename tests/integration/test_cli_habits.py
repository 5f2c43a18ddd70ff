"""The command line as kubectl users type it, against real gateways: global flags after the
command, several kinds at once, ``-o name|wide``, ``describe``, ``delete --ignore-not-found``,
``status -o yaml``, a peer with several gateways, and shell completion that bash accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.integration.clients import talk
from tests.integration.conftest import Link, StartService
from tests.integration.documents import export, yaml_stream
from tests.integration.gateways import CLUSTERLINK, cl
from tests.integration.services import echo
from tests.integration.waiting import wait_until

pytestmark = pytest.mark.integration


def test_get_lists_several_kinds_with_the_peer_dir_given_after_the_command(
    link: Link, start_service: StartService
) -> None:
    link.open("web", start_service(echo).port)
    peer_dir = str(link.source.peer_dir)

    tables = cl("get", "peers,imports", "-n", link.namespace, "--peer-dir", peer_dir).expect_ok()
    names = cl("get", "all", "-o", "name", "-n", link.namespace, f"--peer-dir={peer_dir}")

    assert tables.stdout.startswith("PEERS\nNAME ")
    assert "\n\nIMPORTS\nNAMESPACE " in tables.stdout
    assert [link.namespace, "web"] in [row.split()[:2] for row in tables.stdout.splitlines()]
    assert names.expect_ok().stdout.splitlines() == [
        f"peer.clusterlink.net/{link.target.name}",
        "import.clusterlink.net/web",
    ]


def test_get_wide_adds_the_labels_a_peer_announced(link: Link) -> None:
    def labelled() -> str | None:
        table = link.source.cl("get", "peers", "-o", "wide").expect_ok().stdout
        return table if "site=b" in table else None

    table = wait_until(labelled, what="peer b's labels in get -o wide")

    assert table.splitlines()[0].split()[-1] == "LABELS"
    assert "LABELS" not in link.source.cl("get", "peers").expect_ok().stdout


def test_describe_shows_conditions_and_the_refused_tunnel(link: Link) -> None:
    address = link.import_("nowhere")  # no export, no policy: refused
    assert talk(address, b"hi").end == "reset"

    def described() -> str | None:
        page = link.source.cl("describe", "import", "nowhere", "-n", link.namespace)
        return page.stdout if " denied " in page.expect_ok().stdout else None

    page = wait_until(described, what="describe lists the refused tunnel")

    assert page.startswith(
        f"Name:        nowhere\nNamespace:   {link.namespace}\nKind:        Import\n"
    )
    assert "\nConditions:\n  TYPE " in page
    assert "\nRecent tunnels (newest 10):\n  STARTED " in page
    assert "default deny" in page


def test_delete_ignore_not_found_exits_0_and_still_deletes_the_rest(link: Link) -> None:
    ns = link.namespace
    link.target.apply(export("kept-briefly", ns, 8080))
    both = yaml_stream(export("kept-briefly", ns, 8080), export("never-made", ns, 8080))

    missing = link.target.cl("delete", "export", "never-made", "-n", ns)
    ignored = link.target.cl("delete", "-f", "-", "--ignore-not-found", stdin=both)

    assert missing.rc == 1, missing
    assert ignored.expect_ok().stdout == f"export.clusterlink.net/{ns}/kept-briefly deleted\n"
    assert ignored.stderr == f"export {ns}/never-made not found (ignored)\n"
    assert link.target.cl("get", "export", "kept-briefly", "-n", ns).rc == 1


def test_a_peer_with_two_gateways_and_status_as_yaml(link: Link) -> None:
    made = link.source.cl(
        "create",
        "peer",
        "--name",
        "replicated",
        "--gateway",
        "127.0.0.1:1",
        "--gateway",
        "[::1]:2",
    )
    try:
        assert made.expect_ok().stdout == "peer.clusterlink.net/replicated created\n"
        stored = link.source.get("peer", "replicated")
        status = yaml.safe_load(link.source.cl("status", "-o", "yaml").expect_ok().stdout)
    finally:
        link.source.delete("peer", "replicated")

    assert stored["spec"]["gateways"] == [
        {"host": "127.0.0.1", "port": 1},
        {"host": "::1", "port": 2},
    ]
    assert status["gateway"]["name"] == link.source.name
    assert "replicated" in [row["name"] for row in status["peers"]]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_accepts_the_completion_script() -> None:
    command = " ".join(CLUSTERLINK)
    done = subprocess.run(
        ["bash", "-c", f"source <({command} completion bash) && complete -p clusterlink"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("complete ")
    assert done.stdout.rstrip().endswith(" clusterlink")


def test_dry_run_says_what_would_change_and_changes_nothing(link: Link) -> None:
    ns = link.namespace
    link.target.apply(export("stays", ns, 8080))
    documents = yaml_stream(export("stays", ns, 9090), export("would-be-new", ns, 8080))

    applied = link.target.cl("apply", "-f", "-", "--dry-run", stdin=documents)
    deleted = link.target.cl("delete", "export", "stays", "-n", ns, "--dry-run")
    missing = link.target.cl("delete", "export", "would-be-new", "-n", ns, "--dry-run")
    invalid = link.target.cl(
        "apply", "-f", "-", "--dry-run", stdin=yaml_stream(export("bad", ns, 70000))
    )

    assert applied.expect_ok().stdout == (
        f"export.clusterlink.net/{ns}/stays configured (dry run)\n"
        f"export.clusterlink.net/{ns}/would-be-new created (dry run)\n"
    )
    assert deleted.expect_ok().stdout == f"export.clusterlink.net/{ns}/stays deleted (dry run)\n"
    assert (missing.rc, missing.stderr) == (1, f"error: export {ns}/would-be-new not found\n")
    assert invalid.rc == 1 and "spec.port" in invalid.stderr, invalid
    assert link.target.get("export", "stays", ns)["spec"]["port"] == 8080
    assert link.target.cl("get", "exports", "-n", ns, "-o", "name").stdout == (
        "export.clusterlink.net/stays\n"
    )

"""The management commands against a real `clusterlink gateway run` process on loopback.

One gateway process and the command line against it (a pair of gateways, with tunnels
between them, is tests/integration's). Everything is bounded: the gateway must write
gateway.json within 20 s and stop within 10 s of SIGTERM.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.component

CLUSTERLINK = str(Path(sys.executable).parent / "clusterlink")
API = "clusterlink.net/v1alpha1"


def cl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERLINK_")}
    return subprocess.run(
        [CLUSTERLINK, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def ok(*args: str, stdin: str | None = None) -> str:
    done = cl(*args, stdin=stdin)
    assert done.returncode == 0, f"{args}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet, or half written
        return None


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("e2e")
    ok("create", "fabric", "--name", "fab", "--path", str(base))
    for peer in ("a", "b"):
        ok("create", "peer-cert", "--name", peer, "--fabric", "fab", "--path", str(base))
    return {peer: base / "fab" / peer for peer in ("a", "b")}


@pytest.fixture(scope="module")
def gateway(peers: dict[str, Path]) -> Iterator[dict[str, Any]]:
    """Gateway a on 127.0.0.1 port 0; yields its gateway.json; SIGTERM must stop it with 0."""
    info_file, log_file = peers["a"] / "gateway.json", peers["a"].parent / "gateway-a.log"
    command = [CLUSTERLINK, "gateway", "run", "--peer-dir", str(peers["a"])]
    command += ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        deadline, info = time.monotonic() + 20, None
        while not info and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the poll's own interval, bounded by the deadline above
            info = read_json(info_file)
        assert info, f"no gateway.json; exit {process.poll()}: {log_file.read_text()}"
        yield info
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0, log_file.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def doc(kind: str, name: str, spec: dict[str, Any]) -> str:
    return json.dumps({"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec})


def test_apply_get_delete_status_through_the_cli(
    peers: dict[str, Path], gateway: dict[str, Any]
) -> None:
    a = ("--peer-dir", str(peers["a"]))
    documents = "\n---\n".join(
        [
            doc("Export", "echo", {"host": "127.0.0.1", "port": 7000}),
            doc("Peer", "b", {"gateways": [{"host": "127.0.0.1", "port": 9}]}),
        ]
    )

    assert ok(*a, "apply", "-f", "-", stdin=documents).splitlines() == [
        "export.clusterlink.net/default/echo created",
        "peer.clusterlink.net/b created",
    ]
    assert ok(*a, "apply", "-f", "-", stdin=documents).split()[1::2] == ["unchanged"] * 2

    stored = json.loads(ok(*a, "get", "export", "echo", "-o", "json"))
    assert stored["spec"] == {"host": "127.0.0.1", "port": 7000}
    listed = json.loads(ok(*a, "get", "exports", "-A", "-o", "json"))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["echo"]
    table = ok(*a, "get", "Export").splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "HOST", "PORT", "PROTOCOL"]
    assert table[1].split() == ["default", "echo", "127.0.0.1", "7000", "TCP"]

    status = json.loads(ok(*a, "status", "-o", "json"))
    assert status["gateway"]["name"] == "a"
    assert [p["name"] for p in status["peers"]] == ["b"]
    assert "PEERS (1)" in ok(*a, "status")

    assert ok(*a, "delete", "export", "echo") == "export.clusterlink.net/default/echo deleted\n"
    missing = cl(*a, "get", "export", "echo")
    assert missing.returncode == 1
    assert "not found" in missing.stderr and missing.stderr.count("\n") == 1


def test_create_commands_apply_their_documents(
    peers: dict[str, Path], gateway: dict[str, Any]
) -> None:
    a = ("--peer-dir", str(peers["a"]))

    assert ok(*a, "create", "import", "--name", "db", "--port", "0", "--source", "b") == (
        "import.clusterlink.net/default/db created\n"
    )
    assert ok(*a, "create", "policy", "--name", "all", "--action", "allow") == (
        "accesspolicy.clusterlink.net/default/all created\n"
    )
    imported = json.loads(ok(*a, "get", "import", "db", "-o", "json"))
    assert imported["spec"]["sources"] == [
        {"peer": "b", "exportName": "db", "exportNamespace": "default"}
    ]
    ok(*a, "delete", "import", "db")
    ok(*a, "delete", "policy", "all")


def test_invalid_document_is_refused_naming_the_field(
    peers: dict[str, Path], gateway: dict[str, Any]
) -> None:
    bad = doc("Export", "bad", {"host": "127.0.0.1", "port": 70000})

    done = cl("--peer-dir", str(peers["a"]), "apply", "-f", "-", stdin=bad)

    assert done.returncode == 1
    assert "spec.port" in done.stderr and done.stderr.count("\n") == 1


def test_another_peers_admin_certificate_is_refused_in_one_line(
    peers: dict[str, Path], gateway: dict[str, Any]
) -> None:
    done = cl("--peer-dir", str(peers["b"]), "--admin", gateway["admin"], "status")

    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1

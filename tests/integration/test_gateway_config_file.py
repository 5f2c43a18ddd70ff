"""``gateway run --config FILE``: the flags of gateway run, written down in YAML; the command
line wins; a key that is no flag is one line naming it, and nothing starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import StartGateway
from tests.integration.gateways import Fabric, cl

pytestmark = pytest.mark.integration


def test_a_gateway_runs_with_the_settings_of_its_file_and_the_flags_win(
    start_gateway: StartGateway, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    # The file's listen address is taken; the helper's --listen 127.0.0.1:0 must win.
    config.write_text(
        "listen: 127.0.0.1:1\nmetrics-listen: 127.0.0.1:0\nlabel: {site: lab, rack: r7}\n"
        "heartbeat-interval: 0.5\n"
    )

    gateway = start_gateway("configured", "--config", str(config))

    status = gateway.cl("status", "-o", "json").json()["gateway"]
    assert status["labels"] == {"site": "lab", "rack": "r7"}
    assert status["metrics"] is not None
    assert status["listen"] != "127.0.0.1:1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metric-listen: 127.0.0.1:9090\n", "unknown key 'metric-listen'"),
        ("listen: [\n", "is not valid YAML (line 2)"),
        ("- listen\n", "must hold a mapping of flag: value"),
        ("metrics-listen: nowhere\n", "'nowhere' is not HOST:PORT"),
    ],
)
def test_a_bad_file_is_one_usage_error_line_and_nothing_starts(
    fabric: Fabric, tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    peer_dir = fabric.peer_dir("misconfigured")

    done = cl("gateway", "run", "--peer-dir", str(peer_dir), "--config", str(config))

    assert done.rc == 2, done
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (peer_dir / "gateway.json").exists()


def test_the_example_in_docs_runs_a_gateway(start_gateway: StartGateway, tmp_path: Path) -> None:
    """docs/gateway.yaml (what the systemd unit in docs/ reads), with its machine paths and
    fixed ports replaced on the command line."""
    example = Path(__file__).resolve().parents[2] / "docs" / "gateway.yaml"
    flows = tmp_path / "flows.jsonl"
    here = ("--metrics-listen", "127.0.0.1:0", "--flow-log", str(flows))

    gateway = start_gateway("from-example", "--config", str(example), *here)

    status = gateway.cl("status", "-o", "json").json()["gateway"]
    assert status["labels"] == {"site": "a", "region": "eu-west"}
    line = gateway.wait_for_log(r".")  # log-format: json, so every line is an object
    assert line.startswith("{") and line.endswith("}"), line

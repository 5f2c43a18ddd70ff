"""What reading a running gateway costs at start: the commands an operator types most (``get``,
``describe``, ``status``, ``flows``, ``delete KIND NAME``) import none of the heavy modules
(tests/unit/test_cli_imports.py lists them), and still do their job against a real gateway.

The pair is first let settle (each gateway a Peer of the other, heartbeats answered): that is
the everyday state. ``describe`` and ``-o yaml`` write YAML, and PyYAML is theirs to import.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import Pair
from tests.integration.documents import export
from tests.integration.waiting import wait_until
from tests.unit.test_cli_imports import heavy_in, imported_by

pytestmark = pytest.mark.integration

RUN = """
sys.argv = ['clusterlink', '--peer-dir', {peer_dir!r}, *{args!r}]
from clusterlink.cli.main import run
try:
    run()
except SystemExit as exc:
    assert exc.code in (0, None), f'exit {{exc.code}}'
"""


@pytest.mark.parametrize(
    "args",
    [
        ["get", "peers"],
        ["get", "all", "-o", "wide"],
        ["get", "peer", "b", "-o", "yaml"],
        ["describe", "peer", "b"],
        ["status"],
        ["flows"],
        ["delete", "export", "short-lived"],
    ],
    ids=" ".join,
)
def test_reading_a_running_gateway_imports_nothing_heavy(pair: Pair, args: list[str]) -> None:
    wait_until(
        lambda: pair.source.get("peer", "b").get("status", {}).get("peered"),
        what="peer b reachable and peered at a",
    )
    if args[0] == "delete":
        pair.source.apply(export("short-lived", "default", 8080))
    statement = RUN.format(peer_dir=str(pair.source.peer_dir), args=args)

    writes_yaml = args[0] == "describe" or "yaml" in args
    heavy = heavy_in(imported_by(statement))  # and the command exited 0
    assert [m for m in heavy if not (writes_yaml and m.split(".")[0] == "yaml")] == []

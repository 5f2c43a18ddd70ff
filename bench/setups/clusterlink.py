"""Two clusterlink gateways, import on side A → export on side B, with allow-all policies.

Started exactly as a user would (DESIGN §6): ``clusterlink gateway run`` per side, addresses
read from the ``gateway.json`` it writes, resources applied with ``clusterlink apply -f -``
run in the gateway's own namespace (its admin API listens on that namespace's loopback).
Side B knows peer site-a, exports the echo and iperf servers and allows everyone in; side A
knows peer site-b, imports both exports on fixed ports on 127.0.0.1 and allows everyone out.
The iperf server is exported and imported a second time as UDP, on the same port numbers
(``iperf3 -u`` keeps its control connection on TCP beside the datagrams).
Gateways log at ``warning``, so nothing is logged per connection, as in the other setups, and
keep their state in the setup's work directory, so every topology starts from an empty state.

The setup is ready when an echo goes through the import: that needs the gateways to see each
other by heartbeat first, which takes a few seconds with the default heartbeat settings (we
keep the defaults: the benchmark measures what users run). ``--gateway-arg`` adds flags to
both gateways, to compare modes or settings (e.g. ``--tunnel-mode basic``) in the same table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from bench.credentials import CLIENT_PEER, SERVER_PEER, PeerFiles
from bench.errors import BenchError
from bench.product import CLUSTERLINK, run_cli
from bench.setups.base import Entry, SetupContext, wait_for_echo
from bench.topology import Side

__all__ = ["start_clusterlink"]

_API = "clusterlink.net/v1alpha1"
_ALL: list[dict[str, Any]] = [{"workloadSelector": {}}]  # matches everything
_START_TIMEOUT_S = 30.0


def _doc(kind: str, name: str, spec: dict[str, Any], *, namespaced: bool = True) -> str:
    metadata = {"name": name, "namespace": "default"} if namespaced else {"name": name}
    return json.dumps({"apiVersion": _API, "kind": kind, "metadata": metadata, "spec": spec})


def _allow_all() -> str:
    return _doc("AccessPolicy", "allow-all", {"action": "allow", "from": _ALL, "to": _ALL})


def _peer(name: str, host: str, port: int) -> str:
    return _doc("Peer", name, {"gateways": [{"host": host, "port": port}]}, namespaced=False)


def _start_gateway(
    context: SetupContext, side: Side, peer: PeerFiles, listen: str, extra: tuple[str, ...]
) -> None:
    name = f"gateway-{side.value}"
    argv = [
        *CLUSTERLINK,
        *("gateway", "run", "--peer-dir", str(peer.dir), "--listen", listen),
        *("--admin-listen", "127.0.0.1:0", "--import-host", "127.0.0.1"),
        *("--state", str(context.work_dir / f"state-{side.value}.db")),
        *("--log-level", "warning"),
        *extra,
    ]
    proc = context.procs.start(name, context.topology.argv(side, argv))
    info_path = peer.dir / "gateway.json"
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        context.procs.check_running(name, proc)
        try:
            if json.loads(info_path.read_text()).get("pid") == proc.pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{name} wrote no gateway.json within {_START_TIMEOUT_S:.0f} s")


def _apply(context: SetupContext, side: Side, peer_dir: Path, documents: list[str]) -> None:
    argv = [*CLUSTERLINK, "--peer-dir", str(peer_dir), "apply", "-f", "-"]
    run_cli(context.topology.argv(side, argv), stdin="".join(f"---\n{d}\n" for d in documents))


def start_clusterlink(context: SetupContext, *, gateway_args: tuple[str, ...] = ()) -> Entry:
    """Both gateways with the product's defaults, plus ``gateway_args`` (e.g. a tunnel mode)."""
    topology, targets, creds = context.topology, context.targets, context.credentials
    listen_a, listen_b = context.ports.pick(), context.ports.pick()
    echo_port, iperf_port = context.ports.pick(), context.ports.pick()
    entry = Entry(
        "127.0.0.1",
        echo_port,
        iperf_port,
        tls_port=listen_b,
        tls_probe=f"GET /healthz HTTP/1.1\r\nhost: {SERVER_PEER}\r\n\r\n".encode(),
        udp_port=iperf_port,  # iperf3 -u: its TCP control and UDP data share the port number
    )
    _start_gateway(
        context, Side.SERVER, creds.server, f"{topology.server_host}:{listen_b}", gateway_args
    )
    _start_gateway(
        context, Side.CLIENT, creds.client, f"{topology.client_host}:{listen_a}", gateway_args
    )
    exports = {"echo": targets.echo_port, "iperf": targets.iperf_port}
    _apply(
        context,
        Side.SERVER,
        creds.server.dir,
        [
            _peer(CLIENT_PEER, topology.client_host, listen_a),
            *(
                _doc("Export", name, {"host": topology.server_host, "port": port})
                for name, port in exports.items()
            ),
            _doc(
                "Export",
                "iperf-udp",
                {"host": topology.server_host, "port": targets.iperf_port, "protocol": "UDP"},
            ),
            _allow_all(),
        ],
    )
    imports = {"echo": entry.echo_port, "iperf": entry.iperf_port}
    _apply(
        context,
        Side.CLIENT,
        creds.client.dir,
        [
            _peer(SERVER_PEER, topology.server_host, listen_b),
            *(
                _doc(
                    "Import",
                    name,
                    {
                        "port": port,
                        "sources": [
                            {"peer": SERVER_PEER, "exportName": name, "exportNamespace": "default"}
                        ],
                    },
                )
                for name, port in imports.items()
            ),
            _doc(
                "Import",
                "iperf-udp",
                {
                    "port": entry.iperf_port,
                    "protocol": "UDP",
                    "sources": [
                        {
                            "peer": SERVER_PEER,
                            "exportName": "iperf-udp",
                            "exportNamespace": "default",
                        }
                    ],
                },
            ),
            _allow_all(),
        ],
    )
    wait_for_echo(context, entry, "the clusterlink gateways")
    return entry

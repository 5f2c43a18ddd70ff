"""A pair of stunnel processes doing mutual TLS 1.3: the C TLS tunnel we compare against.

Client mode on side A (accepts plain TCP, connects with TLS, presents site-a's certificate,
verifies that the server's chain leads to the fabric CA and that it names site-b); server
mode on side B (accepts TLS, requires a client certificate from the fabric CA, connects to the
service in plain TCP). Both ends are pinned to TLS 1.3 and set TCP_NODELAY both ways, as the
gateways do. Logging is at ``warning`` so that, like the other setups, nothing is logged per
connection. One process per side carries both services (echo and iperf), like one gateway
carries both imports. Everything else is stunnel's default (its threading model, session
resumption on the client side), because that is what a user of stunnel gets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.credentials import SERVER_PEER, PeerFiles
from bench.errors import BenchError
from bench.setups.base import SERVICES, Entry, SetupContext, plan_tunnel_ports, wait_for_echo
from bench.topology import Side

__all__ = ["start_stunnel"]

_GLOBAL = """\
foreground = yes
pid =
debug = warning
"""


def _service(name: str, accept: str, connect: str, peer: PeerFiles, *, is_client: bool) -> str:
    lines = [
        f"[{name}]",
        f"accept = {accept}",
        f"connect = {connect}",
        f"cert = {peer.cert}",
        f"key = {peer.key}",
        f"CAfile = {peer.ca}",
        "verifyChain = yes",
        "sslVersionMin = TLSv1.3",
        "sslVersionMax = TLSv1.3",
        "socket = l:TCP_NODELAY=1",
        "socket = r:TCP_NODELAY=1",
    ]
    if is_client:
        lines += ["client = yes", f"checkHost = {SERVER_PEER}"]
    else:
        lines += ["requireCert = yes"]
    return "\n".join(lines) + "\n"


def _write(path: Path, services: list[str]) -> Path:
    path.write_text(_GLOBAL + "".join(services))
    return path


def start_stunnel(context: SetupContext) -> Entry:
    if (stunnel := shutil.which("stunnel4") or shutil.which("stunnel")) is None:
        raise BenchError("stunnel is not installed; run ./setup.sh (Debian package stunnel4)")
    topology, creds, ports = context.topology, context.credentials, plan_tunnel_ports(context)
    server_conf = _write(
        context.work_dir / "stunnel-server.conf",
        [
            _service(
                name,
                f"{topology.server_host}:{ports.tls[name]}",
                f"{topology.server_host}:{ports.upstream[name]}",
                creds.server,
                is_client=False,
            )
            for name in SERVICES
        ],
    )
    client_conf = _write(
        context.work_dir / "stunnel-client.conf",
        [
            _service(
                name,
                f"{ports.entry.host}:{ports.client_side[name]}",
                f"{topology.server_host}:{ports.tls[name]}",
                creds.client,
                is_client=True,
            )
            for name in SERVICES
        ],
    )
    context.procs.start("stunnel-server", topology.argv(Side.SERVER, [stunnel, str(server_conf)]))
    context.procs.start("stunnel-client", topology.argv(Side.CLIENT, [stunnel, str(client_conf)]))
    wait_for_echo(context, ports.entry, "the stunnel pair")
    return ports.entry

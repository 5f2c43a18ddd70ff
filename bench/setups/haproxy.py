"""A pair of HAProxy processes doing mutual TLS 1.3, the C proxy users also reach for.

Side A: ``mode tcp``, a plain frontend, a backend server with ``ssl verify required ca-file
... crt ... verifyhost site-b``. Side B: a frontend ``bind ... ssl crt ... ca-file ... verify
required``, a plain backend to the service. Both ends are pinned to TLS 1.3. No ``log``
line, so nothing is logged per connection, as in the other setups. ``maxconn`` is raised so
that the idle-tunnel workload is not refused; every other setting is HAProxy's default
(threads = CPUs, TLS session reuse towards the server), because that is what a user gets.
Started with ``-db`` it stays in the foreground as one process, whose PID we track.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.credentials import SERVER_PEER
from bench.errors import BenchError
from bench.setups.base import SERVICES, Entry, SetupContext, plan_tunnel_ports, wait_for_echo
from bench.topology import Side

__all__ = ["start_haproxy"]

_TLS13 = "ssl-min-ver TLSv1.3 ssl-max-ver TLSv1.3"


def _config(max_connections: int, proxies: list[str]) -> str:
    head = f"""\
global
    maxconn {max_connections}

defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h
"""
    return head + "".join(proxies)


def _proxy(name: str, bind: str, server: str) -> str:
    return f"""
frontend {name}
    bind {bind}
    default_backend {name}

backend {name}
    server {name} {server}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def start_haproxy(context: SetupContext, *, max_connections: int) -> Entry:
    if (haproxy := shutil.which("haproxy")) is None:
        raise BenchError("haproxy is not installed; run ./setup.sh (Debian package haproxy)")
    topology, creds, ports = context.topology, context.credentials, plan_tunnel_ports(context)
    host_b = topology.server_host
    server_tls = f"ssl crt {creds.server.cert_and_key} ca-file {creds.server.ca} verify required"
    client_tls = (
        f"ssl verify required ca-file {creds.client.ca} crt {creds.client.cert_and_key}"
        f" verifyhost {SERVER_PEER}"
    )
    server_conf = _write(
        context.work_dir / "haproxy-server.cfg",
        _config(
            max_connections,
            [
                _proxy(
                    name,
                    f"{host_b}:{ports.tls[name]} {server_tls} {_TLS13}",
                    f"{host_b}:{ports.upstream[name]}",
                )
                for name in SERVICES
            ],
        ),
    )
    client_conf = _write(
        context.work_dir / "haproxy-client.cfg",
        _config(
            max_connections,
            [
                _proxy(
                    name,
                    f"{ports.entry.host}:{ports.client_side[name]}",
                    f"{host_b}:{ports.tls[name]} {client_tls} {_TLS13}",
                )
                for name in SERVICES
            ],
        ),
    )
    for side, conf in ((Side.SERVER, server_conf), (Side.CLIENT, client_conf)):
        argv = topology.argv(side, [haproxy, "-db", "-f", str(conf)])
        context.procs.start(f"haproxy-{'server' if side is Side.SERVER else 'client'}", argv)
    wait_for_echo(context, ports.entry, "the HAProxy pair")
    return ports.entry

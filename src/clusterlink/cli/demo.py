"""``clusterlink demo``: the whole product in half a minute, on loopback, with real parts.

Two sites, ``site-a`` and ``site-b``, each with its own gateway process and certificates from
one fabric. ``site-b`` runs a small service and exports it; ``site-a`` imports it and gets a
local port that stands for it. The demo shows the connection refused by default, applies
allow policies on both sides, shows data flowing, and cleans up everything it started (only
what it started). Every step is checked; the first failure ends the demo with exit 1 and the
gateways' last log lines.

It drives the gateways the way a user would: certificates through ``clusterlink.certs``,
resources through the admin API client (the same calls as ``clusterlink apply``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console  # imported when the demo runs: rich takes a while

__all__ = ["demo"]

_API = "clusterlink.net/v1alpha1"
_ALL: list[dict[str, Any]] = [{"workloadSelector": {}}]
_WAIT_S = 15.0


class DemoFailed(Exception):
    """A step did not do what it should."""


class _Greeter(socketserver.BaseRequestHandler):
    """The demo service: greets, then upper-cases every line it gets."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.settimeout(10)
            self.request.sendall(b"hello from site-b's service\n")
            buf = b""
            while chunk := self.request.recv(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self.request.sendall(line.upper() + b"\n")


def _doc(kind: str, name: str, spec: dict[str, Any], namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = "default"
    return {"apiVersion": _API, "kind": kind, "metadata": meta, "spec": spec}


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float = _WAIT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(0.1)
    raise DemoFailed(f"{what}: not within {timeout_s:g}s")


def _talk(port: int, line: bytes) -> tuple[bytes, str]:
    """Connect to the import, send a line, read what comes back -> (bytes, how it ended)."""
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(5)
            sock.sendall(line)
            while data.count(b"\n") < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    return data, "closed"
                data += chunk
    except ConnectionResetError:
        return data, "reset"
    except OSError as exc:
        return data, f"error: {exc}"
    return data, "ok"


class _Demo:
    def __init__(self, workdir: Path, console: Console) -> None:
        self.workdir = workdir
        self.console = console
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.service: socketserver.ThreadingTCPServer | None = None

    def step(self, text: str) -> None:
        self.console.print(f"[bold cyan]==>[/] {text}")

    def ok(self, text: str) -> None:
        self.console.print(f"    [green]ok[/] {text}")

    def show(self, text: str) -> None:
        self.console.print(f"    {text}", highlight=False, markup=False, soft_wrap=True)

    def peer_dir(self, site: str) -> Path:
        return self.workdir / "demo-fabric" / site

    def log_lines(self, site: str, *needles: str) -> list[str]:
        path = self.workdir / f"{site}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return [ln for ln in lines if all(n in ln for n in needles)]

    def start_gateway(self, site: str) -> dict[str, Any]:
        peer_dir = self.peer_dir(site)
        with (self.workdir / f"{site}.log").open("wb") as log:
            self.procs[site] = subprocess.Popen(
                [sys.executable, "-m", "clusterlink", "gateway", "run", "--peer-dir",
                 str(peer_dir), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        proc = self.procs[site]

        def running() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise DemoFailed(f"gateway {site} exited with {proc.returncode}")
            info: dict[str, Any] = json.loads((peer_dir / "gateway.json").read_text())
            return info if info.get("pid") == proc.pid else None

        try:
            return _wait_for(f"gateway {site} to start", running)  # type: ignore[no-any-return]
        except DemoFailed:
            if proc.poll() is not None:
                raise DemoFailed(f"gateway {site} exited with {proc.returncode}") from None
            raise

    def stop(self) -> list[str]:
        """Stop what the demo started; returns problems (a gateway that did not exit 0)."""
        problems = []
        for site, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                rc = None
            if rc != 0:
                problems.append(f"gateway {site} did not stop cleanly (exit {rc})")
        if self.service is not None:
            self.service.shutdown()
            self.service.server_close()
        return problems

    def run(self) -> None:
        from clusterlink.certs import create_fabric, create_peer_cert
        from clusterlink.client import AdminClient

        self.step("create a fabric (one CA) and a certificate for each site")
        create_fabric(self.workdir, "demo-fabric")
        for site in ("site-a", "site-b"):
            create_peer_cert(self.workdir, site, "demo-fabric")
        self.ok(f"certificates in {self.workdir / 'demo-fabric'}")

        self.step("start one gateway per site (separate processes, mutual TLS between them)")
        gw = {site: self.start_gateway(site) for site in ("site-a", "site-b")}
        for site, info in gw.items():
            self.ok(f"{site}: peers on {info['listen']}, admin API on {info['admin']}")

        self.step("start a service at site-b (not reachable from site-a's network)")
        self.service = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Greeter)
        self.service.daemon_threads = True
        threading.Thread(target=self.service.serve_forever, daemon=True).start()
        service_port = self.service.server_address[1]
        self.ok(f"service on 127.0.0.1:{service_port}")

        a = AdminClient.from_peer_dir(self.peer_dir("site-a"))
        b = AdminClient.from_peer_dir(self.peer_dir("site-b"))
        host_a, port_a = gw["site-a"]["listen"].rsplit(":", 1)
        host_b, port_b = gw["site-b"]["listen"].rsplit(":", 1)

        self.step("site-b exports the service; site-a imports it")
        b.apply(
            [
                _doc("Peer", "site-a", {"gateways": [{"host": host_a, "port": int(port_a)}]},
                     namespaced=False),
                _doc("Export", "greeter", {"host": "127.0.0.1", "port": service_port}),
            ]
        )  # fmt: skip
        a.apply(
            [
                _doc("Peer", "site-b", {"gateways": [{"host": host_b, "port": int(port_b)}]},
                     namespaced=False),
                _doc("Import", "greeter", {"port": 0, "sources": [{"peer": "site-b"}]}),
            ]
        )  # fmt: skip

        def import_port() -> int | None:
            listen = a.get("import", "greeter").get("status", {}).get("listen")
            return int(listen.rsplit(":", 1)[1]) if listen else None

        port = _wait_for("the import to listen", import_port)
        self.ok(f"site-a listens on 127.0.0.1:{port} for site-b's greeter")

        self.step("connect to the import: no policy yet, so the connection is refused")
        data, how = _talk(port, b"hi\n")
        if data:
            raise DemoFailed(f"received {data!r} although no policy allows it")
        self.ok(f"connection {how}, no byte received")
        for line in self.log_lines("site-a", "egress refused")[-1:]:
            self.show(f"site-a log: {line.split(None, 3)[3]}")

        self.step("allow it: an AccessPolicy at each site (both ends must agree)")
        allow = _doc("AccessPolicy", "allow-greeter", {"action": "allow", "from": _ALL, "to": _ALL})
        a.apply([allow])
        b.apply([allow])
        self.ok("allow-greeter applied at site-a (egress) and site-b (ingress)")

        self.step("connect again: data flows through the tunnel")

        def answered() -> bytes | None:
            data, how = _talk(port, b"hello across sites\n")
            return data if how == "ok" else None

        data = _wait_for("an answer through the tunnel", answered)
        for line in data.decode().splitlines():
            self.show(f"< {line}")
        if b"HELLO ACROSS SITES" not in data:
            raise DemoFailed(f"unexpected answer {data!r}")
        self.ok("the service at site-b answered a client at site-a")
        for site, needle in (("site-a", "egress allowed"), ("site-b", "ingress allowed")):
            for line in self.log_lines(site, needle)[-1:]:
                self.show(f"{site} log: {line.split(None, 3)[3]}")

        self.step("what site-a's gateway knows (clusterlink status)")
        status = a.status()
        for peer in status["peers"]:
            self.show(f"peer {peer['name']}: reachable={peer.get('reachable')} "
                      f"rtt_ms={peer.get('rttMs')}")  # fmt: skip
        for imp in status["imports"]:
            self.show(f"import {imp['namespace']}/{imp['name']}: listen={imp['listen']}")


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="clusterlink-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    help="Keep the fabric, state and logs here (default: a temporary dir).",
)
@click.pass_context
def demo(ctx: click.Context, workdir: Path | None) -> None:
    """A fabric, two gateways and a service on loopback: denied, allowed, data flowing.

    Everything it starts is stopped at the end, and its files removed unless --workdir is given.
    """
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)  # a line is never cut in two
    started = time.monotonic()
    with _workdir(workdir) as path:
        run = _Demo(path, console)
        failure: str | None = None
        try:
            run.run()
        except (DemoFailed, OSError) as exc:
            failure = str(exc)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            problems = run.stop()
        if failure:
            console.print(f"[bold red]demo failed:[/] {failure}")
            for site in run.procs:
                for line in run.log_lines(site)[-5:]:
                    console.print(f"    {site}: {line}", markup=False)
            ctx.exit(1)
        if problems:
            console.print(f"[bold red]demo failed:[/] {'; '.join(problems)}")
            ctx.exit(1)
    console.print(
        f"[bold green]demo passed[/] in {time.monotonic() - started:.1f}s; "
        f"both gateways stopped cleanly{'' if workdir else ' and the temporary files are gone'}"
    )

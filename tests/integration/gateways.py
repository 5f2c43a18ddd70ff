"""Real gateways for integration tests, driven only through the product's own command line.

A fabric and its peer directories are made with ``clusterlink create``; each gateway is a
``clusterlink gateway run`` process on 127.0.0.1 with port 0 everywhere, found through the
``gateway.json`` it writes; every change goes through ``clusterlink apply/get/delete``. So
these tests see exactly what a user sees, and nothing here imports the product.

The CLI runs as ``sys.executable -m clusterlink``: the interpreter that runs pytest is the one
the package is installed in (``./test.sh`` runs the venv's pytest), whatever the checkout's
path and whether or not the console script is on PATH.

Invariants: every process started here is stopped here, with SIGTERM, and a gateway that does
not exit 0 within ``STOP_TIMEOUT_S`` is killed and the test fails; every wait is bounded;
``CLUSTERLINK_*`` variables of the caller's environment never leak into the processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.documents import Document, yaml_stream
from tests.integration.waiting import wait_until

__all__ = ["CLResult", "Fabric", "Gateway", "cl", "parse_address", "stop_all"]

CLUSTERLINK = (sys.executable, "-m", "clusterlink")
CLI_TIMEOUT_S = 30.0
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
LOG_TIMEOUT_S = 5.0


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERLINK_")}


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class CLResult:
    """What one CLI run printed and how it exited."""

    args: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"clusterlink {' '.join(self.args)}: exit {self.rc}; stderr: {self.stderr!r}"

    def expect_ok(self) -> CLResult:
        assert self.rc == 0, str(self)
        return self

    def json(self) -> Any:
        return json.loads(self.expect_ok().stdout)


def cl(*args: str, stdin: str | None = None, prefix: Sequence[str] = ()) -> CLResult:
    """Run the CLI once (behind ``prefix``, e.g. ``ip netns exec NS``); a run that hangs past
    ``CLI_TIMEOUT_S`` fails the test."""
    try:
        done = subprocess.run(
            [*prefix, *CLUSTERLINK, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            env=_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"clusterlink {' '.join(args)} ran over {CLI_TIMEOUT_S:g}s") from exc
    return CLResult(args, done.returncode, done.stdout, done.stderr)


class Fabric:
    """A fabric CA made with ``clusterlink create fabric``, and peer directories on demand."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        cl("create", "fabric", "--name", name, "--path", str(root)).expect_ok()

    @property
    def path(self) -> Path:
        return self.root / self.name

    def peer_dir(self, peer: str) -> Path:
        """The directory of ``peer``, created with ``clusterlink create peer-cert`` if new."""
        path = self.path / peer
        if not path.exists():
            args = ("create", "peer-cert", "--name", peer, "--fabric", self.name)
            cl(*args, "--path", str(self.root)).expect_ok()
        return path


class Gateway:
    """One ``clusterlink gateway run`` process (on loopback unless told otherwise), and the CLI
    pointed at it.

    ``prefix`` goes before every command of this gateway, its own and the CLI's: the
    multisite tests run both inside a network namespace with ``ip netns exec NS``.
    """

    def __init__(
        self,
        peer_dir: Path,
        *,
        log_path: Path,
        extra_args: tuple[str, ...] = (),
        prefix: Sequence[str] = (),
        listen: str = "127.0.0.1:0",
        admin_listen: str = "127.0.0.1:0",
    ) -> None:
        self.peer_dir = peer_dir
        self.log_path = log_path
        self.info_path = peer_dir / "gateway.json"
        self.prefix = tuple(prefix)
        self.is_stopped = False
        command = [*prefix, *CLUSTERLINK, "gateway", "run", "--peer-dir", str(peer_dir)]
        command += ["--listen", listen, "--admin-listen", admin_listen, *extra_args]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(),
                cwd=peer_dir.parent,
            )
        try:
            self.info: dict[str, Any] = wait_until(
                self._read_info,
                what=f"gateway {peer_dir.name} writes {self.info_path} with its pid",
                timeout_s=START_TIMEOUT_S,
                describe=lambda _: f"exit code {self.process.poll()}; log: {self.log()[-2000:]}",
            )
        except BaseException:
            self.kill()
            raise

    def _read_info(self) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"gateway {self.name} exited with {self.process.returncode} while starting; "
                f"log: {self.log()[-2000:]}"
            )
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return None  # not written yet
        # A file left by an earlier gateway of this directory must not pass for ours.
        return info if isinstance(info, dict) and info.get("pid") == self.process.pid else None

    @property
    def name(self) -> str:
        return self.peer_dir.name

    @property
    def listen(self) -> tuple[str, int]:
        return parse_address(self.info["listen"])

    @property
    def admin(self) -> tuple[str, int]:
        return parse_address(self.info["admin"])

    # -- the CLI against this gateway -------------------------------------------------------

    def cl(self, *args: str, stdin: str | None = None) -> CLResult:
        """``clusterlink --peer-dir DIR ...``: the admin address comes from gateway.json."""
        return cl("--peer-dir", str(self.peer_dir), *args, stdin=stdin, prefix=self.prefix)

    def apply(self, *documents: Document) -> CLResult:
        return self.cl("apply", "-f", "-", stdin=yaml_stream(*documents)).expect_ok()

    def delete(self, kind: str, name: str, namespace: str | None = None) -> CLResult:
        where = ("-n", namespace) if namespace else ()
        return self.cl("delete", kind, name, *where).expect_ok()

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        where = ("-n", namespace) if namespace else ()
        document: dict[str, Any] = self.cl("get", kind, name, *where, "-o", "json").json()
        return document

    # -- its log -----------------------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, *, count: int = 1) -> str:
        """The ``count``-th log line that matches the regular expression ``pattern``, once
        there is one (bounded wait)."""
        regex = re.compile(pattern)

        def find() -> str | None:
            lines = [line for line in self.log().splitlines() if regex.search(line)]
            return lines[count - 1] if len(lines) >= count else None

        return wait_until(
            find,
            what=f"gateway {self.name} logs {count} line(s) matching {pattern!r}",
            timeout_s=LOG_TIMEOUT_S,
            describe=lambda _: "\n" + "\n".join(self.log().splitlines()[-15:]),
        )

    # -- stopping ----------------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM; it must exit 0 within the bound and remove gateway.json, or the test fails.

        Once that has been checked, later calls do nothing: the directory may serve a new
        gateway by then, with a gateway.json of its own.
        """
        if self.is_stopped:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            rc = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"gateway {self.name} still ran {STOP_TIMEOUT_S:g}s after SIGTERM; killed it. "
                f"Log: {self.log()[-2000:]}"
            ) from None
        assert rc == 0, (
            f"gateway {self.name} exited with {rc} on SIGTERM; log: {self.log()[-2000:]}"
        )
        assert not self.info_path.exists(), f"gateway {self.name} left {self.info_path} behind"
        self.is_stopped = True

    def kill(self) -> None:
        """SIGKILL: for clean-up after a failure, or as the crash a test is about; never a
        substitute for ``stop``."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT_S)


def stop_all(gateways: Iterable[Gateway]) -> None:
    """``stop`` each gateway (SIGKILL after a failed stop) and fail the test once, with every
    failure, after all were tried."""
    failures = []
    for gateway in gateways:
        try:
            gateway.stop()
        except AssertionError as exc:
            failures.append(str(exc))
        finally:
            gateway.kill()  # a no-op after a clean stop
    if failures:
        pytest.fail("\n".join(failures))

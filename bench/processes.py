"""Every process the benchmark starts, and only those, stopped by PID.

Invariants:

- A process is started here or not at all, in its own session (so a Ctrl-C in the terminal
  reaches the harness only, which then stops its children in order) and with its output in a
  log file under the run's work directory.
- Stopping sends SIGTERM to the PID we got from ``Popen`` while that child is not yet reaped
  (so the PID is still ours), waits, then SIGKILLs. Nothing is ever stopped by name.
- ``ProcessSet`` is a context manager: leaving it, normally or by an exception, stops every
  process it still holds, newest first.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from bench.errors import BenchError

__all__ = ["ProcessSet"]

STOP_TIMEOUT_S = 5.0


class ProcessSet:
    """The long-running processes of one part of a run (servers, a tunnel pair)."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, argv: Sequence[str], *, stdin_pipe: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session, output to ``LOG_DIR/NAME.log``."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{name}.log"
        try:
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise BenchError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        self._procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 5) -> str:
        """The last lines of a process's log, for error messages."""
        with contextlib.suppress(OSError):
            text = (self._log_dir / f"{name}.log").read_text(errors="replace")
            return " | ".join(text.splitlines()[-lines:])
        return ""

    def log_tails(self) -> str:
        """The last lines of every held process's log, for error messages."""
        return "; ".join(f"{name}: {self.log_tail(name)}" for name, _ in self._procs)

    def wait_for_line(
        self, name: str, proc: subprocess.Popen[bytes], prefix: str, timeout_s: float
    ) -> str:
        """The first line of ``name``'s log that starts with ``prefix``, waiting for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                text = (self._log_dir / f"{name}.log").read_text(errors="replace")
                for line in text.splitlines():
                    if line.startswith(prefix):
                        return line
            self.check_running(name, proc)
            time.sleep(0.05)
        raise BenchError(f"{name} did not print {prefix!r} within {timeout_s:.0f} s")

    def check_running(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        """Fail the run with the log's tail if ``proc`` already exited."""
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode}: {self.log_tail(name)}")

    @property
    def pids(self) -> list[int]:
        return [proc.pid for _, proc in self._procs if proc.poll() is None]

    def stop_all(self) -> None:
        """SIGTERM then SIGKILL every process still held, newest first."""
        while self._procs:
            _, proc = self._procs.pop()
            stop(proc)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one child of ours: SIGTERM, wait, SIGKILL, wait; never a name, never a group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT_S)
    if proc.stdin is not None:
        proc.stdin.close()

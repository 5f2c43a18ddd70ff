"""CPU time and memory of the tunnel processes, read from /proc.

Why /proc and not psutil: two numbers per process are all we need, the kernel's own counters
are exact, and the benchmark should not add a dependency to the product.

A tunnel may be more than one process (a master and workers, a future ``--workers N``), so
every reading covers a process *and its live descendants*. CPU time is user + system of the
whole thread group (``/proc/PID/stat`` fields 14 and 15); a descendant that already exited
and was reaped is counted by the kernel in its parent's ``cutime``/``cstime``, which we add
too. Memory is ``VmRSS`` (now) and ``VmHWM`` (the peak resident set) from
``/proc/PID/status``, summed over the tree. A process that vanished while being read counts
as zero rather than failing the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds", "peak_rss_kib", "process_tree", "rss_kib"]

_PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (which may contain spaces)."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(pids: Iterable[int]) -> list[int]:
    """The given processes and all their live descendants, each once."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: list[int] = []
    todo = [pid for pid in pids if (_PROC / str(pid)).exists()]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.append(pid)
            todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by the processes, their descendants included."""
    ticks = 0
    for pid in process_tree(pids):
        if (fields := _stat_fields(pid)) is not None:
            # stat fields 14-17 (utime, stime, cutime, cstime), counted from the state (field 3)
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS_PER_S


def _status_kib(pid: int, key: str) -> int:
    try:
        lines = (_PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pids: Iterable[int]) -> int:
    """The resident set size of the processes and their descendants now, KiB."""
    return sum(_status_kib(pid, "VmRSS") for pid in process_tree(pids))


def peak_rss_kib(pids: Iterable[int]) -> int:
    """The peak resident set size (VmHWM) of the processes and their descendants, KiB."""
    return sum(_status_kib(pid, "VmHWM") for pid in process_tree(pids))

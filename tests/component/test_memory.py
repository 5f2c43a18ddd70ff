"""Free memory goes back to the system: the difference between a gateway that returns to its
resting RSS after a burst of tunnels and one that sits at its peak.

Measured in fresh processes, since what the suite allocated and freed before would decide the
figures. When the gateway trims (after tunnels closed, once for a batch) is in
tests/unit/test_memory.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterlink.memory import return_free_memory

pytestmark = pytest.mark.component

MIB = 1024 * 1024


def rss_bytes() -> int:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fragmented_heap(n_chunks: int = 2000) -> list[bytearray]:
    """Freed 64 KiB buffers (below glibc's mmap threshold, so in the heap) interleaved with
    small ones still alive: the free pages sit between live chunks, not at the heap's top,
    where glibc keeps them unless trimmed. Returns what stays alive."""
    alive, freed = [], []
    for _ in range(n_chunks):
        freed.append(bytearray(64 * 1024))
        alive.append(bytearray(700))
    del freed
    return alive


def heap_figures() -> tuple[int, int, int]:
    """RSS before a fragmented heap, with it, and after trimming it: (base, held, after)."""
    return_free_memory()
    base = rss_bytes()
    alive = fragmented_heap()
    held = rss_bytes()
    assert return_free_memory() is True  # glibc, as on every supported system
    after = rss_bytes()
    assert len(alive) == 2000
    return base, held, after


def test_free_heap_pages_go_back_to_the_system() -> None:
    # In a fresh process: what the suite freed before (and its allocator settings) would
    # decide how much of the heap is fresh pages.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.component.test_memory import heap_figures as f; print(*f())",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    base, held, after = (int(n) for n in done.stdout.split())
    grown, returned = held - base, held - after
    assert grown > 16 * MIB, f"the heap grew by {grown / MIB:.1f} MiB only"
    assert returned > grown / 2, (
        f"the freed memory stayed resident: {base / MIB:.1f} MiB before, "
        f"{held / MIB:.1f} after freeing, {after / MIB:.1f} after trimming"
    )


_FAULTS_OF_BUSY_BUFFERS = """
import resource, sys
from clusterlink.memory import keep_freed_memory_while_busy
if sys.argv[1] == "kept":
    assert keep_freed_memory_while_busy()
for _ in range(5):  # the allocator's first moves, alike either way
    bytearray(300_000)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):  # busy tunnels: fresh buffers, a few alive at a time, then freed
    buffers = [bytearray(300_000) for _ in range(4)]
    del buffers
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults_of_busy_buffers(policy: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_OF_BUSY_BUFFERS, policy],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout)


def test_freed_buffers_are_reused_without_new_page_faults() -> None:
    """Under glibc's defaults part of every round of buffers goes back to the kernel when
    freed and the next round faults it in again (about 2,600 faults for 200 rounds here);
    kept, the rounds reuse the same memory (about 200, the loop's own small objects)."""
    default = page_faults_of_busy_buffers("default")
    kept = page_faults_of_busy_buffers("kept")
    assert default > 5 * kept, (default, kept)

"""The benchmark's one error type.

Anything that stops a run on purpose (a tool missing, a tunnel that never came up, a load
generator that failed) is a ``BenchError`` whose message is one line saying what happened and
what to do next; ``python -m bench`` prints it and exits 1 after cleaning up. A traceback means
a bug in the harness.
"""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(Exception):
    """A benchmark run cannot go on; the message says why and what to do."""

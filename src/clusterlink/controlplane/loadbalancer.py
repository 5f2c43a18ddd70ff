"""Which export source a new connection tries first, second, ... (pure, no I/O).

An Import may draw on several exporting peers. For every new connection the load balancer
returns *all* sources in the order to try them; the caller walks the list and skips a source
that is denied, missing or fails to connect, so failover is the same code as balancing.

Schemes (DESIGN §5): ``round-robin`` rotates the starting source per Import; ``random``
shuffles; ``static`` keeps the declared order (primary, then failovers). Whatever the scheme,
sources whose peer is known to be unreachable go last (still tried: heartbeats can lag).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

__all__ = ["LoadBalancer"]

S = TypeVar("S")


class LoadBalancer:
    """Holds the per-Import rotation counters; everything else is computed per call."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._next_start: dict[Hashable, int] = {}
        self._rng = rng or random.Random()

    def order(
        self,
        import_key: Hashable,
        sources: Sequence[S],
        scheme: str,
        is_unreachable: Callable[[S], bool],
    ) -> list[S]:
        n = len(sources)
        if scheme == "random":
            ordered = self._rng.sample(list(sources), n)
        elif scheme == "static" or n < 2:
            ordered = list(sources)
        else:  # round-robin, the default
            start = self._next_start.get(import_key, 0) % n
            self._next_start[import_key] = start + 1
            ordered = [*sources[start:], *sources[:start]]
        return sorted(ordered, key=is_unreachable)  # stable: keeps the order within each group

    def forget(self, import_key: Hashable) -> None:
        self._next_start.pop(import_key, None)

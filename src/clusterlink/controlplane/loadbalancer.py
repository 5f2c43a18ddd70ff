"""Which export source a new connection tries first, second, ... (pure, no I/O).

An Import may draw on several exporting peers. For every new connection the load balancer
gives *all* sources in the order to try them; the caller walks them and skips a source that
is denied, missing or fails to connect, so failover is the same code as balancing.

Schemes (DESIGN §5): ``random`` shuffles; ``static`` keeps the declared order (primary,
then failovers); ``round-robin`` keeps one counter per Import and advances it on every
*attempt*, as the original does: so after one source starts failing, the remaining ones
strictly alternate (with a per-connection rotation instead, the source after the failing one
would get two turns in three). The round-robin order is therefore lazy: the counter moves
as the caller takes the next source, and a connection served by its first source moves it
by one. Whatever the scheme, sources whose peer is known to be unreachable go last (still
tried: heartbeats can lag), and each connection tries every source exactly once, even when
other connections take turns of the same counter meanwhile.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TypeVar

__all__ = ["LoadBalancer"]

S = TypeVar("S")


class LoadBalancer:
    """Holds the per-Import round-robin counters; everything else is computed per call."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._next_turn: dict[Hashable, int] = {}
        self._rng = rng or random.Random()

    def order(
        self,
        import_key: Hashable,
        sources: Sequence[S],
        scheme: str,
        is_unreachable: Callable[[S], bool],
    ) -> Iterator[S]:
        """The sources in the order to try them (lazily, for round-robin: see the module)."""
        n = len(sources)
        if scheme == "round-robin" and n > 1:
            return self._round_robin(import_key, sources, is_unreachable)
        ordered = self._rng.sample(list(sources), n) if scheme == "random" else list(sources)
        return iter(sorted(ordered, key=is_unreachable))  # stable: keeps the order per group

    def _round_robin(
        self, import_key: Hashable, sources: Sequence[S], is_unreachable: Callable[[S], bool]
    ) -> Iterator[S]:
        n = len(sources)
        tried: set[int] = set()
        unreachable: list[S] = []
        while len(tried) < n:
            turn = self._next_turn.get(import_key, 0)
            index = next((turn + k) % n for k in range(n) if (turn + k) % n not in tried)
            self._next_turn[import_key] = index + 1
            tried.add(index)
            source = sources[index]
            if is_unreachable(source):
                unreachable.append(source)  # its turn is taken; it is tried after the others
                continue
            yield source
        yield from unreachable

    def forget(self, import_key: Hashable) -> None:
        self._next_turn.pop(import_key, None)

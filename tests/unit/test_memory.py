"""When the gateway gives free memory back: only after tunnels closed, once for a batch.

Whether the memory really goes back to the system is measured in fresh processes, in
tests/component/test_memory.py.
"""

from __future__ import annotations

import asyncio

import pytest

from clusterlink import memory
from clusterlink.memory import return_free_memory_after_tunnels


def test_the_returner_trims_only_after_tunnels_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "_TRIM", calls.append)
    closed = [0]

    async def scenario() -> None:
        looks: asyncio.Queue[None] = asyncio.Queue()

        def closed_count() -> int:
            looks.put_nowait(None)  # the returner looked: it trims, if at all, before it sleeps
            return closed[0]

        async def looked(times: int) -> None:
            async with asyncio.timeout(5):
                for _ in range(times):
                    await looks.get()

        task = asyncio.create_task(return_free_memory_after_tunnels(closed_count, interval_s=0.01))
        await looked(4)  # the first look and three more
        assert calls == []  # nothing closed: nothing to give back
        closed[0] = 3
        await looked(1)
        assert calls == [0]  # the three closed are given back at the next look
        await looked(3)
        assert calls == [0]  # once for the three, not once per look
        task.cancel()

    asyncio.run(scenario())

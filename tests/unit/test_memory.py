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
        task = asyncio.create_task(
            return_free_memory_after_tunnels(lambda: closed[0], interval_s=0.01)
        )
        await asyncio.sleep(0.05)
        assert calls == []  # nothing closed: nothing to give back
        closed[0] = 3
        await asyncio.sleep(0.05)
        assert calls == [0]  # once for the three, not once per look
        task.cancel()

    asyncio.run(scenario())

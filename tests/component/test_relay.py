"""The relay over real loopback connections: every conformance check, over every kind.

``relay_conformance.CHECKS`` is what any tunnel must do (bytes, half-close, resets, the report,
what arrived before the start, back-pressure, idleness, memory); ``_tunnels.KINDS`` is every
way a gateway joins two connections (plain TCP, the TLS layer on either side, a stream of a
multiplexed connection on either side). Each check runs over each kind, on asyncio and on
uvloop, each time on tunnels of its own. Below them, what only one kind has.
"""

from __future__ import annotations

import pytest

from clusterlink.dataplane.relay import RelayResult
from tests.component._net import (
    Fabric,
    Run,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
    is_reset,
    run_fixture,  # noqa: F401 -- a fixture, requested by name
)
from tests.component._tunnels import KINDS, PlainJoin, join_for
from tests.component.relay_conformance import CHECKS, Check

pytestmark = pytest.mark.component


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
@pytest.mark.parametrize("kind", KINDS)
def test_relay_conformance(run: Run, fabric: Fabric, kind: str, check: Check) -> None:
    run(check(join_for(fabric, kind)))


@pytest.mark.parametrize("tls_side", ["client", "service"])
def test_a_truncated_tls_side_resets_the_plain_side(
    run: Run, fabric: Fabric, tls_side: str
) -> None:
    """TLS ended by a bare TCP FIN (no close_notify) is an error, so the plain side must not
    take it for the other having finished."""

    async def scenario() -> None:
        join = PlainJoin(fabric, "tls-tcp" if tls_side == "client" else "tcp-tls")
        tunnel = await join()
        truncated, victim = tunnel.client, tunnel.service
        if tls_side == "service":
            truncated, victim = victim, truncated
        await truncated.send(b"half a mess")
        await victim.read(11)
        join.test_layers[truncated].raw.close()  # TCP FIN under the TLS, no close_notify

        assert is_reset(await victim.wait_lost())
        assert not victim.eof.is_set()
        result: RelayResult = await tunnel.wait_closed()
        assert f"{tls_side} side: ConnectionResetError" in str(result.error)

    run(scenario())

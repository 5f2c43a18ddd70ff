"""The order in which a new connection tries an Import's sources (pure, no sockets).

Whatever the scheme, a connection gets every source exactly once: the caller walks them for
failover. ``round-robin`` keeps one counter per Import that every attempt advances (so a
failing source does not hand two turns to its successor), ``random`` shuffles with the
injected generator, ``static`` keeps the declared order, and sources on peers known to be
unreachable go last without disturbing the order within either group.
"""

from __future__ import annotations

import random

import pytest

from clusterlink.api import ImportSource
from clusterlink.controlplane.loadbalancer import LoadBalancer

SOURCES = ["a", "b", "c", "d"]
SCHEMES = ["round-robin", "random", "static"]


def nobody_down(_: str) -> bool:
    return False


def first(lb: LoadBalancer, key: str, sources: list[str] = SOURCES) -> str:
    """The source that serves a connection whose first attempt succeeds."""
    return next(lb.order(key, sources, "round-robin", nobody_down))


def served_by(lb: LoadBalancer, key: str, failing: set[str]) -> str:
    """Walk one connection's order as the egress path does: failing sources are skipped."""
    return next(
        s for s in lb.order(key, SOURCES[:3], "round-robin", nobody_down) if s not in failing
    )


def test_round_robin_rotates_the_first_source_on_each_connection() -> None:
    lb = LoadBalancer()
    assert [first(lb, "default/db") for _ in range(5)] == ["a", "b", "c", "d", "a"]


def test_round_robin_walked_in_full_is_every_source_once_from_the_turn() -> None:
    lb = LoadBalancer()
    first(lb, "default/db")  # a served one connection
    assert list(lb.order("default/db", SOURCES, "round-robin", nobody_down)) == [
        "b",
        "c",
        "d",
        "a",
    ]


def test_after_a_source_fails_the_others_strictly_alternate() -> None:
    """The original's rule: every attempt advances the counter, so with ``a`` failing the
    connections alternate between ``b`` and ``c``; rotating per connection would give b, b,
    c, b, b, c."""
    lb = LoadBalancer()
    served = [served_by(lb, "ns/one", failing={"a"}) for _ in range(8)]
    assert served == ["b", "c", "b", "c", "b", "c", "b", "c"]
    # And with two failing, the last one serves every time.
    assert {served_by(lb, "ns/one", failing={"a", "b"}) for _ in range(6)} == {"c"}


def test_connections_interleaving_on_one_counter_each_try_every_source_once() -> None:
    lb = LoadBalancer()
    one = lb.order("ns/one", SOURCES, "round-robin", nobody_down)
    two = lb.order("ns/one", SOURCES, "round-robin", nobody_down)
    walked_one, walked_two = [], []
    for _ in range(len(SOURCES)):  # turns taken alternately from the same counter
        walked_one.append(next(one))
        walked_two.append(next(two))
    assert sorted(walked_one) == sorted(walked_two) == SOURCES
    assert next(one, None) is None and next(two, None) is None


def test_round_robin_keeps_one_rotation_per_import() -> None:
    lb = LoadBalancer()
    assert first(lb, "ns/one") == "a"
    assert first(lb, "ns/one") == "b"
    # Another Import starts at its own first source, and does not move the first one's turn.
    assert first(lb, "ns/two") == "a"
    assert first(lb, "ns/one") == "c"


def test_forgetting_an_import_restarts_its_rotation() -> None:
    lb = LoadBalancer()
    first(lb, "ns/one")
    first(lb, "ns/one")
    lb.forget("ns/one")
    assert first(lb, "ns/one") == "a"
    lb.forget("ns/never-seen")  # forgetting an unknown Import is harmless


def test_round_robin_still_yields_every_source_once_when_the_sources_shrink() -> None:
    lb = LoadBalancer()
    for _ in range(3):
        first(lb, "ns/one")
    for _ in range(4):
        order = list(lb.order("ns/one", ["x", "y"], "round-robin", nobody_down))
        assert sorted(order) == ["x", "y"]


def test_random_uses_every_source_once_and_the_injected_generator_decides() -> None:
    lb, twin = LoadBalancer(random.Random(7)), LoadBalancer(random.Random(7))
    orders = [list(lb.order("ns/one", SOURCES, "random", nobody_down)) for _ in range(40)]
    for order in orders:
        assert sorted(order) == SOURCES
    assert {order[0] for order in orders} == set(SOURCES)  # every source leads sometimes
    assert len({tuple(order) for order in orders}) > 4  # more than a rotation would give
    # The order comes from the generator alone: the same seed gives the same orders.
    assert orders == [list(twin.order("ns/one", SOURCES, "random", nobody_down)) for _ in range(40)]


def test_static_keeps_the_declared_order_every_time() -> None:
    lb = LoadBalancer()
    for _ in range(3):
        assert list(lb.order("ns/one", SOURCES, "static", nobody_down)) == SOURCES


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unreachable_sources_go_last_in_the_order_the_scheme_gave(scheme: str) -> None:
    down = {"a", "c"}
    lb = LoadBalancer(random.Random(3))
    plain = LoadBalancer(random.Random(3))  # the same scheme, with everybody reachable
    for _ in range(6):
        expected = list(plain.order("ns/one", SOURCES, scheme, nobody_down))
        order = list(lb.order("ns/one", SOURCES, scheme, lambda s: s in down))
        assert order == [s for s in expected if s not in down] + [s for s in expected if s in down]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sources_all_unreachable_are_still_all_tried(scheme: str) -> None:
    lb = LoadBalancer(random.Random(5))
    assert sorted(lb.order("ns/one", SOURCES, scheme, lambda _: True)) == SOURCES


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("is_down", [False, True])
def test_a_single_source_is_always_the_answer(scheme: str, is_down: bool) -> None:
    lb = LoadBalancer(random.Random(1))
    for _ in range(3):
        assert list(lb.order("ns/one", ["only"], scheme, lambda _: is_down)) == ["only"]


def test_orders_import_sources_as_the_import_listener_passes_them() -> None:
    sources = [
        ImportSource(peer="east", export_name="db", export_namespace="prod"),
        ImportSource(peer="west", export_name="db", export_namespace="prod"),
        ImportSource(peer="east", export_name="db-replica", export_namespace="prod"),
    ]
    lb = LoadBalancer()
    order = list(lb.order(("prod", "db"), sources, "static", lambda s: s.peer == "east"))
    assert [(s.peer, s.export_name) for s in order] == [
        ("west", "db"),
        ("east", "db"),
        ("east", "db-replica"),
    ]

"""The order in which a new connection tries an Import's sources (pure, no sockets).

Whatever the scheme, the answer is every source exactly once: the caller walks it for
failover. ``round-robin`` rotates the first source per Import, ``random`` shuffles with the
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


def test_round_robin_rotates_the_first_source_on_each_connection() -> None:
    lb = LoadBalancer()
    orders = [lb.order("default/db", SOURCES, "round-robin", nobody_down) for _ in range(5)]
    assert orders == [
        ["a", "b", "c", "d"],
        ["b", "c", "d", "a"],
        ["c", "d", "a", "b"],
        ["d", "a", "b", "c"],
        ["a", "b", "c", "d"],
    ]


def test_round_robin_keeps_one_rotation_per_import() -> None:
    lb = LoadBalancer()
    assert lb.order("ns/one", SOURCES, "round-robin", nobody_down)[0] == "a"
    assert lb.order("ns/one", SOURCES, "round-robin", nobody_down)[0] == "b"
    # Another Import starts at its own first source, and does not move the first one's turn.
    assert lb.order("ns/two", SOURCES, "round-robin", nobody_down)[0] == "a"
    assert lb.order("ns/one", SOURCES, "round-robin", nobody_down)[0] == "c"


def test_forgetting_an_import_restarts_its_rotation() -> None:
    lb = LoadBalancer()
    lb.order("ns/one", SOURCES, "round-robin", nobody_down)
    lb.order("ns/one", SOURCES, "round-robin", nobody_down)
    lb.forget("ns/one")
    assert lb.order("ns/one", SOURCES, "round-robin", nobody_down)[0] == "a"
    lb.forget("ns/never-seen")  # forgetting an unknown Import is harmless


def test_round_robin_still_yields_every_source_once_when_the_sources_shrink() -> None:
    lb = LoadBalancer()
    for _ in range(3):
        lb.order("ns/one", SOURCES, "round-robin", nobody_down)
    for _ in range(4):
        order = lb.order("ns/one", ["x", "y"], "round-robin", nobody_down)
        assert sorted(order) == ["x", "y"]


def test_random_uses_every_source_once_and_the_injected_generator_decides() -> None:
    lb, twin = LoadBalancer(random.Random(7)), LoadBalancer(random.Random(7))
    orders = [lb.order("ns/one", SOURCES, "random", nobody_down) for _ in range(40)]
    for order in orders:
        assert sorted(order) == SOURCES
    assert {order[0] for order in orders} == set(SOURCES)  # every source leads sometimes
    assert len({tuple(order) for order in orders}) > 4  # more than a rotation would give
    # The order comes from the generator alone: the same seed gives the same orders.
    assert orders == [twin.order("ns/one", SOURCES, "random", nobody_down) for _ in range(40)]


def test_static_keeps_the_declared_order_every_time() -> None:
    lb = LoadBalancer()
    for _ in range(3):
        assert lb.order("ns/one", SOURCES, "static", nobody_down) == SOURCES


@pytest.mark.parametrize("scheme", SCHEMES)
def test_unreachable_sources_go_last_in_the_order_the_scheme_gave(scheme: str) -> None:
    down = {"a", "c"}
    lb = LoadBalancer(random.Random(3))
    plain = LoadBalancer(random.Random(3))  # the same scheme, with everybody reachable
    for _ in range(6):
        expected = plain.order("ns/one", SOURCES, scheme, nobody_down)
        order = lb.order("ns/one", SOURCES, scheme, lambda s: s in down)
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
        assert lb.order("ns/one", ["only"], scheme, lambda _: is_down) == ["only"]


def test_orders_import_sources_as_the_import_listener_passes_them() -> None:
    sources = [
        ImportSource(peer="east", export_name="db", export_namespace="prod"),
        ImportSource(peer="west", export_name="db", export_namespace="prod"),
        ImportSource(peer="east", export_name="db-replica", export_namespace="prod"),
    ]
    lb = LoadBalancer()
    order = lb.order(("prod", "db"), sources, "static", lambda s: s.peer == "east")
    assert [(s.peer, s.export_name) for s in order] == [
        ("west", "db"),
        ("east", "db"),
        ("east", "db-replica"),
    ]

"""Leasing the gateway pods' target ports to Imports (Kubernetes mode; pure, no sockets)."""

from __future__ import annotations

import random

from clusterlink.controlplane.target_ports import FIRST_PORT, LAST_PORT, PortConflict, TargetPorts
from clusterlink.ids import NamespacedName

WEB = NamespacedName("default", "web")
DB = NamespacedName("team", "db")


def test_an_import_without_a_port_gets_a_free_one_and_keeps_it() -> None:
    ports = TargetPorts(rng=random.Random(1))
    leased = ports.lease(WEB)
    assert isinstance(leased, int)
    assert FIRST_PORT <= leased <= LAST_PORT
    assert ports.lease(WEB) == leased  # asked again (every reconcile): the same port
    assert ports.lease(WEB, leased) == leased  # and once written back into its spec
    assert ports.holder_of(leased) == WEB


def test_a_port_held_by_another_import_is_a_conflict_naming_the_holder() -> None:
    ports = TargetPorts()
    assert ports.lease(WEB, 5000) == 5000
    conflict = ports.lease(DB, 5000)
    assert conflict == PortConflict(5000, WEB)
    assert str(conflict) == "port 5000 is already in use by import default/web"
    assert ports.holder_of(5000) == WEB  # the first holder keeps it


def test_a_released_port_can_be_leased_again() -> None:
    ports = TargetPorts()
    ports.lease(WEB, 5000)
    ports.release(WEB)
    assert ports.lease(DB, 5000) == 5000
    ports.release(NamespacedName("x", "never"))  # releasing what holds nothing is harmless


def test_changing_an_imports_port_frees_the_old_one() -> None:
    ports = TargetPorts()
    ports.lease(WEB, 5000)
    ports.lease(WEB, 6000)
    assert ports.holder_of(5000) is None
    assert ports.lease(DB, 5000) == 5000


def test_random_ports_never_collide_even_when_the_range_is_nearly_full() -> None:
    ports = TargetPorts(rng=random.Random(2))
    for port in range(FIRST_PORT, LAST_PORT):  # all but the last port taken
        ports.lease(NamespacedName("full", str(port)), port)
    assert ports.lease(WEB) == LAST_PORT  # found by the scan after the random tries
    conflict = ports.lease(DB)
    assert isinstance(conflict, PortConflict)
    assert conflict.holder is None
    assert (
        str(conflict) == f"every port from {FIRST_PORT} to {LAST_PORT} is leased by another import"
    )


def test_the_gateways_own_ports_are_never_leased_nor_taken() -> None:
    own = frozenset(range(FIRST_PORT, LAST_PORT))  # all but the last port are the gateway's
    ports = TargetPorts(rng=random.Random(3), reserved=own)
    assert ports.lease(WEB) == LAST_PORT
    conflict = ports.lease(DB, 8443 if 8443 in own else FIRST_PORT)
    assert isinstance(conflict, PortConflict)
    assert "is one of the gateway's own ports" in str(conflict)

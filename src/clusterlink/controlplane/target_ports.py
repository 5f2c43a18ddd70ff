"""Target ports of Imports in Kubernetes mode: who holds which port of the gateway pods.

Behind an Import's Service, every gateway replica listens on the Import's ``targetPort``. An
Import that names one holds it, unless another Import holds it already (a conflict, shown in
``ImportTargetPortValid``); one that names none gets a free port, which the leader writes back
into its spec so that every replica, and every restart, listens on the same one. Ports are
drawn at random, so that an Import deleted and created again does not land on a port a
client may still be connected to by chance, from 1024-32767: below Linux's range of
ephemeral ports (32768-60999), where the gateway's own outgoing connections (to the API, to
its peers) take their local ports and would make a leased port unbindable now and then.

Pure and synchronous: the leader rebuilds the table from the Imports it sees (``lease`` in
the order the Imports were created, so the older one keeps a contested port), and nothing
here talks to the API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from clusterlink.ids import NamespacedName

__all__ = ["FIRST_PORT", "LAST_PORT", "PortConflict", "TargetPorts"]

FIRST_PORT: Final = 1024
LAST_PORT: Final = 32767  # the last port that may be leased (the ephemeral range starts above)
_RANDOM_TRIES: Final = 40  # then a scan from a random start, as the range fills up


@dataclass(frozen=True, slots=True)
class PortConflict:
    """Why an Import holds no port: the one it asked for is another Import's (``holder``),
    or it asked for none and every port of the range is leased (``holder`` None)."""

    port: int
    holder: NamespacedName | None

    def __str__(self) -> str:
        if self.holder is not None:
            return f"port {self.port} is already in use by import {self.holder}"
        if self.port:
            return f"port {self.port} is one of the gateway's own ports; choose another"
        return f"every port from {FIRST_PORT} to {LAST_PORT} is leased by another import"


class TargetPorts:
    """The table of leased target ports; one per gateway (the leader's is the one written)."""

    def __init__(
        self, *, rng: random.Random | None = None, reserved: frozenset[int] = frozenset()
    ) -> None:
        # Ports the gateway pods use themselves (peer listener, admin API, metrics): never
        # leased, and an Import that names one is told so.
        self.reserved = reserved
        self._by_port: dict[int, NamespacedName] = {}
        self._by_import: dict[NamespacedName, int] = {}
        self._rng = rng or random.Random()

    def lease(self, key: NamespacedName, wanted: int = 0) -> int | PortConflict:
        """The port ``key`` holds now: ``wanted`` if free (or already its own), a random free
        one for ``wanted == 0`` (its current one if it has one), or the conflict."""
        if wanted:
            if wanted in self.reserved:
                return PortConflict(wanted, None)
            holder = self._by_port.get(wanted)
            if holder is not None and holder != key:
                return PortConflict(wanted, holder)
            self._hold(key, wanted)
            return wanted
        current = self._by_import.get(key)
        if current is not None:
            return current
        port = self._free_port()
        if port is None:
            return PortConflict(0, None)
        self._hold(key, port)
        return port

    def release(self, key: NamespacedName) -> None:
        port = self._by_import.pop(key, None)
        if port is not None:
            self._by_port.pop(port, None)

    def holder_of(self, port: int) -> NamespacedName | None:
        return self._by_port.get(port)

    def holders(self) -> list[NamespacedName]:
        return list(self._by_import)

    def _hold(self, key: NamespacedName, port: int) -> None:
        self.release(key)
        self._by_port[port] = key
        self._by_import[key] = port

    def _free_port(self) -> int | None:
        for _ in range(_RANDOM_TRIES):
            port = self._rng.randint(FIRST_PORT, LAST_PORT)
            if port not in self._by_port and port not in self.reserved:
                return port
        start = self._rng.randint(FIRST_PORT, LAST_PORT)
        size = LAST_PORT - FIRST_PORT + 1
        for offset in range(size):
            port = FIRST_PORT + (start - FIRST_PORT + offset) % size
            if port not in self._by_port and port not in self.reserved:
                return port
        return None

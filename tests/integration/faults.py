"""What the fault tests share: a tunnel that must outlive a fault.

A fault (a service that resets, a gateway killed, a disk full) must hurt only the
connection it concerns; a ``Bystander``, opened before the fault and checked after it,
proves that the gateways went on serving everyone else.
"""

from __future__ import annotations

import socket

from tests.integration.services import CHUNK

__all__ = ["Bystander"]


class Bystander:
    """A tunnel that stays open across a fault and must still echo afterwards."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.sock = socket.create_connection(address, timeout=10)
        self.rounds = 0
        self.check()

    def check(self) -> None:
        self.rounds += 1
        message = f"still here {self.rounds}\n".encode()
        self.sock.sendall(message)
        received = b""
        while len(received) < len(message):
            chunk = self.sock.recv(CHUNK)
            assert chunk, f"the bystander tunnel ended after {received!r}"
            received += chunk
        assert received == message

    def close(self) -> None:
        self.sock.close()

"""The component tests: one part of the gateway at a time, on real sockets and processes.

Where ``tests/unit`` holds what runs without a socket, a process or the network (protocol
bytes, policy tables, models, files on disk), these tests bind loopback ports, speak real TLS
with the fabric's certificates, or start the command line as a process, but never a whole
pair of gateways (that is ``tests/integration``). Every module is marked ``component``, so
``-m component`` selects them and ``-m "not component"`` leaves them out.

Their fixtures are in ``_net.py``, imported by name by the modules that use them.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "component: one part of the gateway on real loopback sockets, TLS or processes "
        "(select: -m component)",
    )

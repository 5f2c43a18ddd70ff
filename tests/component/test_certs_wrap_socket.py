"""A peer context's own validity check on the ``wrap_socket`` path, over a real socket pair.

The gateway's TLS runs over ``MemoryBIO`` (tests/unit/test_certs_handshake.py checks it there,
in memory); ``wrap_socket`` is the other way the standard library uses a context, and the
same check must refuse an expired certificate there too.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clusterlink.certs import PeerDir, peer_client_context
from tests.unit.test_certs_handshake import (
    ALPN,
    b_fixture,  # noqa: F401 -- a fixture, requested by name
    bare_context,
    credentials_at,
    fabric_fixture,  # noqa: F401 -- a fixture, requested by name
)

pytestmark = pytest.mark.component


def test_wrap_socket_checks_the_validity_period_too(fabric: Path, b: PeerDir) -> None:
    expired = credentials_at(fabric, "c", datetime.now(UTC) - timedelta(days=10))
    server_context = bare_context(expired / "cert.pem", expired / "key.pem", server=True)
    ours, theirs = socket.socketpair()

    def serve() -> None:
        try:
            with server_context.wrap_socket(theirs, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # our side hung up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with pytest.raises(ssl.SSLCertVerificationError, match=r"certificate of peer c .* expired"):
        peer_client_context(b, ALPN).wrap_socket(ours, server_hostname="c")
    ours.close()
    thread.join(timeout=5)

"""Connections to and from other gateways: TLS, dialing, warm pools, multiplexed sessions.

What it is for: everything between a socket and a tunnel's transport. ``tls`` drives TLS 1.3
over ``ssl.MemoryBIO`` because a tunnel needs half-close (``close_notify`` one way while the
reply still flows), which asyncio's own TLS transport cannot do; the application sees it
through ``tls_transport``, and ``tls_linger`` ends a graceful close without losing our last
bytes.
``dial`` connects with deadlines and turns every failure into one of our errors naming the
target; ``pool`` keeps a few handshaken basic-mode connections warm per peer gateway; ``mux``
(the session of one connection), ``mux_stream`` (each stream a real ``asyncio.Transport``)
and ``mux_pool`` carry many tunnels as streams of one connection.

What it may import: ``protocol`` (the sans-io wire formats it drives), ``errors``,
``addresses``, ``ids``, and the standard library. Never ``controlplane``, ``dataplane`` or
``api``: it moves bytes and knows no resource, policy or decision.

What it must never do: decide (who may connect is the caller's business), log a payload or a
key, or buffer without bound (every queue here has a high-water mark that pauses its
producer).
"""

from clusterlink.transport.dial import dial_tcp, dial_tls, expect_peer_listener
from clusterlink.transport.mux import MuxSession, StreamTransport
from clusterlink.transport.mux_pool import MuxPool
from clusterlink.transport.pool import Dialer, WarmPool
from clusterlink.transport.tls import TLSLayer, TLSTransport

__all__ = [
    "Dialer",
    "MuxPool",
    "MuxSession",
    "StreamTransport",
    "TLSLayer",
    "TLSTransport",
    "WarmPool",
    "dial_tcp",
    "dial_tls",
    "expect_peer_listener",
]

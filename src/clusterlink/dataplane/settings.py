"""Timeouts, sizes and limits of the data plane, in one place, with units in their names.

The limits bound what one caller can take from a gateway (DESIGN §5: a gateway faces other
organisations' networks); ``dataplane.limits`` enforces them and counts every time one is hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clusterlink.protocol.mux import MuxSettings

__all__ = ["DataplaneSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataplaneSettings:
    connect_timeout_s: float = 5.0  # TCP connect to a peer gateway or an exported service
    handshake_timeout_s: float = 5.0  # TLS handshake, either direction
    request_timeout_s: float = 60.0  # peer listener: wait for the next request on a connection
    request_head_timeout_s: float = 10.0  # peer listener: a request head, from its first byte
    verdict_timeout_s: float = 15.0  # source side: wait for the answer to a CONNECT
    idle_timeout_s: float = 3600.0  # a tunnel with no byte either way for this long is closed
    udp_idle_timeout_s: float = 60.0  # a UDP flow with no datagram either way: ended quietly
    refuse_grace_s: float = 1.0  # a refused client is reset once it speaks, or after this
    pool_size: int = 2  # warm connections kept per peer gateway once it has been used
    pool_max_idle_s: float = 30.0  # a warm connection older than this is not handed out
    multiplex: bool = True  # new tunnels as streams of one connection; False: one each
    mux: MuxSettings = field(default_factory=MuxSettings)
    max_connections: int = 10_000  # open at once on each listener (peer, every import)
    max_connections_per_peer: int = 10_000  # tunnels to and from one peer, incl. being set up
    max_pending_handshakes: int = 256  # TLS handshakes in progress on the peer listener

    def __post_init__(self) -> None:
        if self.pool_max_idle_s >= self.request_timeout_s:
            raise ValueError("pool_max_idle_s must be below request_timeout_s")
        for name in ("handshake_timeout_s", "request_head_timeout_s", "request_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.idle_timeout_s < 0:
            raise ValueError("idle_timeout_s must be positive, or 0 for no idle timeout")
        for name in ("max_connections", "max_connections_per_peer", "max_pending_handshakes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

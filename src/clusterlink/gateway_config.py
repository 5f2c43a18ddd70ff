"""What ``clusterlink gateway run`` sets (``GatewayConfig``), and the TLS contexts a gateway
makes from its peer directory (``TLSContexts``): the inputs of ``gateway.Gateway``, apart from
its wiring so that each reads on its own.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from clusterlink.certs import (
    PeerDir,
    admin_server_context,
    peer_client_context,
    peer_server_context,
)
from clusterlink.controlplane.health import HealthSettings
from clusterlink.dataplane.peer_listener import PEER_ALPN
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.kube_settings import KubernetesSettings
from clusterlink.protocol import ALPN_PROTOCOL
from clusterlink.protocol.mux import MUX_ALPN, REVERSE_MUX_ALPN

__all__ = ["GatewayConfig", "TLSContexts"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """Everything ``clusterlink gateway run`` can set; defaults follow DESIGN §6."""

    peer_dir: Path
    listen: str = "0.0.0.0:8443"
    admin_listen: str = "127.0.0.1:8444"
    import_host: str = "127.0.0.1"
    metrics_listen: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    state_path: Path | None = None  # default: peer_dir / "state.db"
    log_level: str = "info"
    log_format: str = "text"  # text | json
    dataplane: DataplaneSettings = field(default_factory=DataplaneSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    cert_check_interval_s: float = 5.0  # poll of cert.pem, key.pem, ca.pem; 0: SIGHUP only
    kubernetes: KubernetesSettings | None = None  # None: standalone, the SQLite store
    flow_capacity: int = 1000  # tunnel records kept for `flows` and the dashboard
    flow_log: Path | None = None  # also append every finished record here, as JSON lines


@dataclass(frozen=True, slots=True)
class TLSContexts:
    """Every context of one reading of the peer directory; replaced together on a reload."""

    server: ssl.SSLContext  # peer listener
    client: ssl.SSLContext  # basic-mode tunnels and heartbeats
    mux_client: ssl.SSLContext  # multiplexed sessions
    reverse_client: ssl.SSLContext  # reverse links, dialled to a peer that cannot dial us
    admin: ssl.SSLContext  # admin API

    @classmethod
    def build(cls, pd: PeerDir) -> TLSContexts:
        return cls(
            server=peer_server_context(pd, PEER_ALPN),
            client=peer_client_context(pd, [ALPN_PROTOCOL]),
            mux_client=peer_client_context(pd, [MUX_ALPN]),
            reverse_client=peer_client_context(pd, [REVERSE_MUX_ALPN]),
            admin=admin_server_context(pd),
        )

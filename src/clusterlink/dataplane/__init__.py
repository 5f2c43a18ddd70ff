"""The path of every connection through the gateway, one module per step.

What it is for (follow a connection by file name):
``import_listener`` accepts a local client on an Import's port -> ``egress`` decides and
walks the Import's sources -> ``connector`` opens the tunnel to the peer gateway -> (across
the fabric) ``peer_listener`` accepts the other gateway -> ``basic_session`` or a mux session
reads its request -> ``ingress`` decides and dials the service -> ``relay`` copies the bytes
both ways -> ``tunnels`` keeps every open tunnel (its end, idle sweep, revocation).
``limits`` holds the counters that bound all of it; ``settings`` the knobs.

What it may import: ``controlplane`` (for decisions and the current resources), ``transport``
(connections), ``protocol``, ``api``, ``errors``, ``ids``, ``addresses``, ``metrics``.
Never ``gateway`` or ``cli``.

What it must never do: let a byte through before both decisions allowed it, read the
caller's identity from anything but its verified certificate, buffer without bound, or make
a refused client see a clean end of stream (a refusal is a reset).
"""

from clusterlink.dataplane.connector import PeerConnector
from clusterlink.dataplane.egress import Egress
from clusterlink.dataplane.import_listener import ImportListeners
from clusterlink.dataplane.ingress import Ingress
from clusterlink.dataplane.limits import Limits
from clusterlink.dataplane.peer_listener import PEER_ALPN, PeerListener
from clusterlink.dataplane.relay import Relay
from clusterlink.dataplane.settings import DataplaneSettings
from clusterlink.dataplane.tunnels import TunnelInfo, TunnelRegistry

__all__ = [
    "PEER_ALPN",
    "DataplaneSettings",
    "Egress",
    "ImportListeners",
    "Ingress",
    "Limits",
    "PeerConnector",
    "PeerListener",
    "Relay",
    "TunnelInfo",
    "TunnelRegistry",
]

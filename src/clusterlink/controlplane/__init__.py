"""What a gateway knows and decides: resources, authorization, peer health, admin API.

What it is for: the gateway's view of its resources (``catalog``: one immutable snapshot per
change, read by the data plane once per connection), the changes to them (``resources``,
behind the admin API of ``admin``, whose input is checked by ``admin_input``), the two
authorization decisions of every tunnel (``authz``, pure), the order in which an Import's
sources are tried (``loadbalancer``, pure), what other gateways' heartbeats say
(``health``), the conditions shown in an Import's status (``import_conditions``), and the
metrics endpoint (``metrics_server``).

What it may import: ``api``, ``policy``, ``store``, ``protocol``, ``certs``, ``transport``
(heartbeats dial other gateways), ``errors``, ``ids``, ``addresses``, ``metrics``. Never
``dataplane`` (which calls into this package, not the other way), ``gateway`` or ``cli``.

What it must never do: touch a tunnel's bytes, block the event loop on the store (store
calls go to a thread), or decide with anything but the verified peer name for "who calls".
"""

from clusterlink.controlplane.admin import AdminServer
from clusterlink.controlplane.authz import (
    LocalPeer,
    egress_decision,
    egress_source_attributes,
    ingress_decision,
)
from clusterlink.controlplane.catalog import Catalog, Snapshot, policy_of
from clusterlink.controlplane.health import HealthSettings, PeerHealth, PeerState, Reachability
from clusterlink.controlplane.import_conditions import ImportConditions
from clusterlink.controlplane.loadbalancer import LoadBalancer
from clusterlink.controlplane.metrics_server import MetricsServer
from clusterlink.controlplane.resources import ImportBinder, PreparedImports, ResourceService

__all__ = [
    "AdminServer",
    "Catalog",
    "HealthSettings",
    "ImportBinder",
    "ImportConditions",
    "LoadBalancer",
    "LocalPeer",
    "MetricsServer",
    "PeerHealth",
    "PeerState",
    "PreparedImports",
    "Reachability",
    "ResourceService",
    "Snapshot",
    "egress_decision",
    "egress_source_attributes",
    "ingress_decision",
    "policy_of",
]

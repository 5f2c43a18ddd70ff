"""ClusterLink: connect services across sites through mutual-TLS gateways.

The data path, by folder: ``dataplane/`` (import listeners, peer listener, relay) asks
``controlplane/`` (authorization, load balancing, peer health, admin API) for decisions and
uses ``transport/`` to reach other gateways; ``protocol/`` is the sans-io wire format,
``policy/`` the pure decision engine, ``api/`` the resource model, ``store/`` the state,
``certs/`` identities and TLS contexts.
"""

__version__ = "0.1.0"

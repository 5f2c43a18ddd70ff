"""Identities of a fabric: its CA, peer and admin certificates, TLS contexts, who is calling.

A fabric is one certificate authority; a peer is a gateway holding a certificate from it; each
peer also gets an admin certificate that administers that peer only. Who is on the other end
of a connection is read from the certificate the TLS layer verified, never from anything the
other side says.

Modules, each with one job:

- ``names``: what a peer or fabric name may be (``PeerName``, validation);
- ``issuing``: building the CA, keys and certificates in memory (the profile lives here);
- ``fabric``: creating the fabric and peer directories on disk, never overwriting;
- ``peerdir``: loading and checking a peer directory (``PeerDir``);
- ``tls``: the ``ssl.SSLContext`` of each listener and client, TLS 1.3 only;
- ``identity``: peer / admin / fabric of a verified ``getpeercert()`` dict, per connection.

This package uses nothing above it (DESIGN §8) and does no network I/O.
"""

from clusterlink.certs.fabric import (
    create_fabric,
    create_peer_cert,
    load_fabric,
    reissue_peer_credentials,
)
from clusterlink.certs.identity import PeerCert, admin_peer_of, fabric_of, peer_name_of
from clusterlink.certs.issuing import (
    CA_VALIDITY,
    CERT_VALIDITY,
    FabricCA,
    IssuedCert,
    PeerCredentials,
    issue_peer_credentials,
)
from clusterlink.certs.names import (
    DEFAULT_FABRIC,
    PeerName,
    validate_fabric_name,
    validate_peer_cert_name,
)
from clusterlink.certs.peerdir import PEER_DIR_FILES, PeerDir, load_peer_dir
from clusterlink.certs.tls import (
    admin_client_context,
    admin_server_context,
    peer_client_context,
    peer_server_context,
)

__all__ = [
    "CA_VALIDITY",
    "CERT_VALIDITY",
    "DEFAULT_FABRIC",
    "PEER_DIR_FILES",
    "FabricCA",
    "IssuedCert",
    "PeerCert",
    "PeerCredentials",
    "PeerDir",
    "PeerName",
    "admin_client_context",
    "admin_peer_of",
    "admin_server_context",
    "create_fabric",
    "create_peer_cert",
    "fabric_of",
    "issue_peer_credentials",
    "load_fabric",
    "load_peer_dir",
    "peer_client_context",
    "peer_name_of",
    "peer_server_context",
    "reissue_peer_credentials",
    "validate_fabric_name",
    "validate_peer_cert_name",
]

"""Identities of a fabric: its CA, peer and admin certificates, TLS contexts, who is calling.

A fabric is one certificate authority; a peer is a gateway holding a certificate from it; each
peer also gets an admin certificate that administers that peer only. Who is on the other end
of a connection is read from the certificate the TLS layer verified, never from anything the
other side says.

Modules, each with one job:

- ``names``: what a peer or fabric name may be (``PeerName``, validation);
- ``issuing``: building the CA, keys and certificates in memory (the profile lives here);
- ``fabric``: creating the fabric and peer directories on disk, never overwriting;
- ``rotation``: replacing them: a fabric's CA, a peer's certificates, a peer's trust bundle;
- ``requests``: certificate requests: made at a site, checked and signed by the fabric's owner;
- ``site``: joining across a boundary (key made at the site, request signed, answer installed);
- ``bundle``: the trust bundle ``ca.pem``, one or more CAs of a fabric (``TrustBundle``);
- ``peerdir``: loading and checking a peer directory (``PeerDir``);
- ``reloading``: a running gateway's TLS contexts, rebuilt when its files change;
- ``tls``: the ``ssl.SSLContext`` of each listener and client, TLS 1.3 only;
- ``handshake``: the validity check of a peer handshake, and refusals in plain words;
- ``validity``: validity periods and serials, said the same way everywhere;
- ``identity``: peer / admin / fabric of a verified ``getpeercert()`` dict, per connection.

This package uses nothing above it (DESIGN §8) and does no network I/O.
"""

from clusterlink.certs.bundle import TrustBundle, ca_id, describe_ca
from clusterlink.certs.fabric import PREVIOUS_CA_DIR, create_fabric, create_peer_cert, load_fabric
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
from clusterlink.certs.reloading import CredentialReloader
from clusterlink.certs.requests import check_peer_request
from clusterlink.certs.rotation import (
    BundleUpdate,
    CARotation,
    rotate_fabric_ca,
    rotate_peer_cert,
    update_ca_bundle,
)
from clusterlink.certs.site import (
    InstalledCert,
    SignedRequest,
    create_peer_key,
    install_peer_cert,
    sign_request,
)
from clusterlink.certs.tls import (
    admin_client_context,
    admin_server_context,
    peer_client_context,
    peer_server_context,
)
from clusterlink.certs.validity import format_utc, serial_hex

__all__ = [
    "CA_VALIDITY",
    "CERT_VALIDITY",
    "DEFAULT_FABRIC",
    "PEER_DIR_FILES",
    "PREVIOUS_CA_DIR",
    "BundleUpdate",
    "CARotation",
    "CredentialReloader",
    "FabricCA",
    "InstalledCert",
    "IssuedCert",
    "PeerCert",
    "PeerCredentials",
    "PeerDir",
    "PeerName",
    "SignedRequest",
    "TrustBundle",
    "admin_client_context",
    "admin_peer_of",
    "admin_server_context",
    "ca_id",
    "check_peer_request",
    "create_fabric",
    "create_peer_cert",
    "create_peer_key",
    "describe_ca",
    "fabric_of",
    "format_utc",
    "install_peer_cert",
    "issue_peer_credentials",
    "load_fabric",
    "load_peer_dir",
    "peer_client_context",
    "peer_name_of",
    "peer_server_context",
    "rotate_fabric_ca",
    "rotate_peer_cert",
    "serial_hex",
    "sign_request",
    "update_ca_bundle",
    "validate_fabric_name",
    "validate_peer_cert_name",
]

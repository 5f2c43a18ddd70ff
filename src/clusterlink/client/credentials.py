"""The admin credentials of a peer directory, loaded the quick way when they are sound.

``clusterlink.certs.load_peer_dir`` checks every file of a peer directory and says precisely
what is wrong with one; it needs ``cryptography``, whose import alone costs more than a whole
``clusterlink get``. A healthy directory needs none of that to make a TLS client: OpenSSL reads
the PEM files itself and checks the chain, the validity periods and the server's name during
the handshake. So the client loads the files with ``ssl`` alone, takes the peer's name from the
``gateway.json`` the running gateway wrote, and runs the full check (``diagnose``) only when
something fails, to explain the failure in the same words as before.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterlink.errors import PeerUnreachable

__all__ = [
    "AdminCredentials",
    "diagnose",
    "gateway_info",
    "load_admin_credentials",
    "not_running",
]

GATEWAY_JSON = "gateway.json"


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    """What a client needs to call the admin API of the peer in ``path``."""

    peer: str
    path: Path
    ssl_context: ssl.SSLContext


def gateway_info(peer_dir: Path) -> dict[str, Any] | None:
    """What the running gateway wrote to ``gateway.json``; None if there is no such file.

    ``PeerUnreachable`` if it is there but unreadable."""
    file = peer_dir / GATEWAY_JSON
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        reason = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PeerUnreachable(f"cannot read {file}: {reason}") from exc
    return info if isinstance(info, dict) else {}


def load_admin_credentials(peer_dir: Path, info: dict[str, Any] | None) -> AdminCredentials:
    """The admin certificate and trusted CAs of ``peer_dir``, for the peer that ``info`` (from
    ``gateway_info``) names; through the full check when the quick way cannot tell."""
    name = info.get("name") if info else None
    if isinstance(name, str) and name:
        try:
            return AdminCredentials(name, peer_dir, _quick_context(peer_dir))
        except (OSError, ssl.SSLError):
            pass  # the full check below says what is wrong
    return _checked(peer_dir)


def diagnose(peer_dir: Path) -> None:
    """Raise the ``CertificateError`` that explains what is wrong with ``peer_dir``'s files,
    if anything is; return if they pass every check."""
    _checked(peer_dir)


def _checked(peer_dir: Path) -> AdminCredentials:
    from clusterlink import certs  # the full check: cryptography, loaded only when needed

    pd = certs.load_peer_dir(peer_dir)
    return AdminCredentials(pd.name, pd.path, certs.admin_client_context(pd))


def _quick_context(peer_dir: Path) -> ssl.SSLContext:
    """The same context as ``certs.admin_client_context``, with OpenSSL choosing among the
    CAs of ``ca.pem`` by their validity period during the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks the name, requires a cert
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cafile=peer_dir / "ca.pem")
    context.load_cert_chain(peer_dir / "admin" / "cert.pem", peer_dir / "admin" / "key.pem")
    return context


def not_running(peer: str, peer_dir: Path, start: str) -> PeerUnreachable:
    """The error for a peer directory without ``gateway.json``."""
    return PeerUnreachable(
        f"the gateway of peer {peer} is not running ({peer_dir / GATEWAY_JSON} does not "
        f"exist); start it with {start}, or pass --admin HOST:PORT"
    )

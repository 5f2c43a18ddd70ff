"""HTTPS calls to a gateway's admin API with a certificate of the test's choosing.

The CLI always presents the right certificate and refuses wrong answers before a test could
see them, so the tests that attack the admin API (wrong identities, malformed requests,
generated requests) talk to it with ``requests`` instead, as any script would. The server is
verified against the fabric CA and must present the certificate of the *peer* (DNS name = peer
name), not of the address dialled (127.0.0.1): the connection pool sends that name as SNI and
checks it, which is how the product's own client dials too.

A refused TLS handshake is an answer as well: ``Answer.status`` is None and ``error`` says
what the client saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from tests.integration.gateways import Gateway

__all__ = ["Answer", "admin_session", "base_url", "call", "tls_kwargs"]

TIMEOUT_S = 10.0


class _PeerNameAdapter(HTTPAdapter):
    """Every HTTPS connection sends and checks ``server_name`` (SNI and certificate name)."""

    def __init__(self, server_name: str) -> None:
        self._server_name = server_name
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._server_name
        kwargs["assert_hostname"] = self._server_name
        super().init_poolmanager(*args, **kwargs)


def admin_session(gateway: Gateway) -> requests.Session:
    """A session for ``gateway``'s admin API; pass ``tls_kwargs`` with each request."""
    session = requests.Session()
    session.trust_env = False  # never a proxy from the environment: the gateway is local
    session.mount("https://", _PeerNameAdapter(gateway.name))
    return session


def tls_kwargs(gateway: Gateway, cert_dir: Path | None) -> dict[str, Any]:
    """``verify``/``cert`` for ``requests``: trust the gateway's fabric CA, present the
    certificate in ``cert_dir`` (none if None)."""
    kwargs: dict[str, Any] = {"verify": str(gateway.peer_dir / "ca.pem"), "timeout": TIMEOUT_S}
    if cert_dir is not None:
        kwargs["cert"] = (str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"))
    return kwargs


def base_url(gateway: Gateway) -> str:
    host, port = gateway.admin
    return f"https://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Answer:
    """The admin API's answer, or why there was none (``status`` is None then)."""

    status: int | None
    body: Any = None  # the decoded JSON, or the text if it is not JSON
    headers: dict[str, str] = field(default_factory=dict)
    error: str = ""


def call(
    gateway: Gateway,
    method: str,
    path: str,
    *,
    cert_dir: Path | None,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a fresh connection: ``body`` is sent as JSON, ``raw`` as it is."""
    with admin_session(gateway) as session:
        try:
            response = session.request(
                method,
                base_url(gateway) + path,
                json=body,
                data=raw,
                headers=headers,
                **tls_kwargs(gateway, cert_dir),
            )
        except requests.ConnectionError as exc:  # SSLError is one
            return Answer(None, error=f"{type(exc).__name__}: {exc}")
        try:
            decoded: Any = response.json()
        except json.JSONDecodeError:
            decoded = response.text
        return Answer(response.status_code, decoded, dict(response.headers))

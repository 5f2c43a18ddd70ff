"""Proof that a TLS setup really does mutual TLS 1.3 with verification, before it is measured.

A benchmark that compares against a tunnel which silently accepts anyone would compare
against something cheaper than what it claims. So before its workloads run, each TLS setup's
server-side listener (the end that faces the network) is tried four ways from side A:

- with the fabric's client certificate, TLS 1.3, the server verified as site-b: accepted;
- with no client certificate: refused;
- with a certificate of another CA (the "stranger", same peer name): refused;
- with the right certificate but TLS 1.2 at most: refused.

"Accepted" means the listener answered ``probe`` (an echo for the C tunnels, an HTTP health
request for a gateway); "refused" means a TLS alert, a reset or an end of stream instead. In
TLS 1.3 a client learns that its certificate was refused only after its own handshake is
done, when it next reads, so every try sends the probe and reads the answer.

Run as ``python -m bench.mtls_check HOST PORT PROBE_HEX CA CERT KEY STRANGER_CERT
STRANGER_KEY`` (in side A's namespace); prints one JSON object ``{case: outcome}``.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from dataclasses import dataclass

from bench.credentials import SERVER_PEER

__all__ = ["EXPECTED", "check"]

_TIMEOUT_S = 5.0
_ALPN = ["clusterlink/1"]  # a gateway wants it; the C tunnels ignore it
EXPECTED = {
    "right certificate, TLS 1.3": "accepted",
    "no client certificate": "refused",
    "stranger's certificate": "refused",
    "right certificate, TLS 1.2 only": "refused",
}


@dataclass(frozen=True, slots=True)
class _Client:
    ca: str
    cert: str | None
    key: str | None
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = self.max_version
        context.set_alpn_protocols(_ALPN)
        if self.cert and self.key:
            context.load_cert_chain(self.cert, self.key)
        return context


def _try(host: str, port: int, probe: bytes, client: _Client) -> str:
    try:
        with (
            socket.create_connection((host, port), timeout=_TIMEOUT_S) as raw,
            client.context().wrap_socket(raw, server_hostname=SERVER_PEER) as tls,
        ):
            tls.sendall(probe)
            answer = tls.recv(1)
            version = tls.version()
    except (ssl.SSLError, ConnectionError) as exc:
        return f"refused ({type(exc).__name__}: {exc})"
    except TimeoutError:
        return "no answer within the timeout"
    return f"accepted ({version})" if answer else "refused (end of stream)"


def check(
    host: str,
    port: int,
    *,
    probe: bytes,
    ca: str,
    cert: str,
    key: str,
    stranger: tuple[str, str],
) -> dict[str, str]:
    """Each case of ``EXPECTED`` tried once; the outcome of each."""
    clients = {
        "right certificate, TLS 1.3": _Client(ca, cert, key),
        "no client certificate": _Client(ca, None, None),
        "stranger's certificate": _Client(ca, *stranger),
        "right certificate, TLS 1.2 only": _Client(ca, cert, key, ssl.TLSVersion.TLSv1_2),
    }
    return {case: _try(host, port, probe, client) for case, client in clients.items()}


if __name__ == "__main__":
    host, port, probe_hex, ca, cert, key, stranger_cert, stranger_key = sys.argv[1:]
    outcome = check(
        host,
        int(port),
        probe=bytes.fromhex(probe_hex),
        ca=ca,
        cert=cert,
        key=key,
        stranger=(stranger_cert, stranger_key),
    )
    print(json.dumps(outcome))

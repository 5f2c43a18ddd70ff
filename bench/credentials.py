"""The certificates every TLS setup uses: one fabric, made by clusterlink itself.

stunnel, HAProxy and the gateways all get the same kind of credentials, so no setup wins by a
cheaper key or a shorter chain: the fabric CA and two peer certificates from ``clusterlink
create fabric`` / ``create peer-cert`` (ECDSA P-256, serverAuth + clientAuth, DNS SAN = the
peer name). The client-side tunnel end presents ``site-a``'s certificate and checks that the
server is ``site-b``; the server-side end requires a certificate issued by the fabric CA.

A second fabric of the same name holds a *stranger* with the same peer name as the client, so
the set-up checks can show that each tunnel refuses a certificate its CA did not issue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.product import CLUSTERLINK, run_cli

__all__ = ["CLIENT_PEER", "SERVER_PEER", "Credentials", "PeerFiles", "make_credentials"]

FABRIC = "bench"
CLIENT_PEER = "site-a"
SERVER_PEER = "site-b"


@dataclass(frozen=True, slots=True)
class PeerFiles:
    """One peer directory and the file names the C tunnels need from it."""

    dir: Path

    @property
    def cert(self) -> Path:
        return self.dir / "cert.pem"

    @property
    def key(self) -> Path:
        return self.dir / "key.pem"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def cert_and_key(self) -> Path:
        """Certificate followed by key in one file, as HAProxy's ``crt`` wants it."""
        return self.dir / "cert-and-key.pem"


@dataclass(frozen=True, slots=True)
class Credentials:
    client: PeerFiles
    server: PeerFiles
    stranger: PeerFiles


def _make_fabric(root: Path, peers: tuple[str, ...]) -> list[PeerFiles]:
    root.mkdir(parents=True)
    run_cli([*CLUSTERLINK, "create", "fabric", "--name", FABRIC, "--path", str(root)])
    made = []
    for peer in peers:
        run_cli(
            [
                *CLUSTERLINK,
                *("create", "peer-cert", "--name", peer, "--fabric", FABRIC),
                *("--path", str(root)),
            ]
        )
        files = PeerFiles(root / FABRIC / peer)
        files.cert_and_key.write_bytes(files.cert.read_bytes() + files.key.read_bytes())
        files.cert_and_key.chmod(0o600)
        made.append(files)
    return made


def make_credentials(work_dir: Path) -> Credentials:
    """The fabric of this run, and the stranger's, under ``work_dir``."""
    client, server = _make_fabric(work_dir / "fabric", (CLIENT_PEER, SERVER_PEER))
    (stranger,) = _make_fabric(work_dir / "stranger-fabric", (CLIENT_PEER,))
    return Credentials(client=client, server=server, stranger=stranger)

"""Joining sites without moving a private key (DESIGN §10).

Certificates, on local files only: ``create peer-key`` at the site, ``sign`` where the
fabric's CA is, ``install peer-cert`` back at the site (rules in ``clusterlink.certs.site``).

Every command here says what it made and what comes next, because each one is a step that
another person, at another site, continues.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clusterlink.cli.fabric import DEFAULT_FABRIC

__all__ = ["create_peer_key", "install_peer_cert", "sign"]

_DEFAULT_VALIDITY_DAYS = 730  # certs.CERT_VALIDITY, spelled out: see cli.fabric


def create_peer_key(
    name: Annotated[str, typer.Option(help="Peer name (a DNS name); also its directory.")],
    path: Annotated[Path, typer.Option(help="Where to create the peer directory.")] = Path(),
) -> None:
    """Make this site's gateway key and its certificate request in PATH/NAME (the key stays).

    Also makes the site's own admin CA and admin certificate (PATH/NAME/admin/), so that no
    secret of the fabric's owner is needed to administer this gateway.
    """
    from clusterlink import certs

    created = certs.create_peer_key(path, name)
    typer.echo(
        f"created the key of peer {name} in {created} (key.pem: it never leaves this site), "
        f"its certificate request {created / 'request.csr'}, and this site's admin CA and "
        f"admin certificate in {created / 'admin'}"
    )
    typer.echo(
        f"next: send {created / 'request.csr'} to the fabric's owner, who runs "
        "`clusterlink sign --csr request.csr --fabric FABRIC`; install the cert.pem and ca.pem "
        f"that come back with `clusterlink install peer-cert --peer-dir {created} "
        "--cert cert.pem --ca ca.pem`"
    )


def sign(
    csr: Annotated[Path, typer.Option(help="The site's request.csr (from `create peer-key`).")],
    fabric: Annotated[str, typer.Option(help="The fabric that issues it.")] = DEFAULT_FABRIC,
    path: Annotated[Path, typer.Option(help="The directory that holds the fabric.")] = Path(),
    valid_for: Annotated[
        int, typer.Option(min=1, help="Days the certificate is valid (never beyond the CA).")
    ] = _DEFAULT_VALIDITY_DAYS,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write cert.pem and ca.pem.", show_default="beside the CSR"),
    ] = None,
) -> None:
    """Check a site's certificate request and issue its gateway certificate with the fabric CA.

    Refuses a request that asks for more than a peer's name (to be a CA, other names, an
    admin identity, other usages); writes cert.pem and ca.pem, never over existing files.
    """
    from datetime import timedelta

    from clusterlink import certs

    signed = certs.sign_request(
        csr, path=path, fabric=fabric, validity=timedelta(days=valid_for), out=out
    )
    issuer = signed.bundle.issuer_of(signed.cert, None)
    typer.echo(
        f"signed the request of peer {signed.peer} with CA "
        f"{certs.ca_id(issuer) if issuer is not None else '?'} of fabric {fabric}: "
        f"{signed.cert_file} (serial {certs.serial_hex(signed.cert.serial_number)}, valid "
        f"until {certs.format_utc(signed.cert.not_valid_after_utc)}) and {signed.ca_file}"
    )
    typer.echo(
        f"next: send both files to the site of {signed.peer}; it runs `clusterlink install "
        f"peer-cert --peer-dir {signed.peer} --cert cert.pem --ca ca.pem`"
    )


def install_peer_cert(
    peer_dir: Annotated[Path, typer.Option(help="The directory `create peer-key` made.")],
    cert: Annotated[Path, typer.Option(help="The cert.pem that `sign` wrote.")],
    ca: Annotated[Path, typer.Option(help="The ca.pem that came with it.")],
) -> None:
    """Install the signed certificate and the fabric's CA into this site's peer directory.

    Checks first that the certificate is the one of this directory's key, and that the CA
    verifies it and is a fabric CA; then puts both in place atomically.
    """
    from clusterlink import certs

    installed = certs.install_peer_cert(peer_dir, cert, ca)
    pd = installed.peer_dir
    typer.echo(
        f"installed the certificate of peer {pd.name} of fabric {pd.fabric} in {pd.path} "
        f"(serial {certs.serial_hex(installed.cert.serial_number)}, valid until "
        f"{certs.format_utc(installed.cert.not_valid_after_utc)}, issued by CA "
        f"{certs.ca_id(installed.issuer)})"
    )
    typer.echo(
        f"next: `clusterlink gateway run --peer-dir {pd.path}` (a gateway already running there "
        "picks the new files up by itself)"
    )

"""Joining sites without moving a private key (DESIGN §10).

Two halves. Certificates, on local files only: ``create peer-key`` at the site, ``sign`` where
the fabric's CA is, ``install peer-cert`` back at the site (rules in ``clusterlink.certs.site``).
Peers, through the admin API: ``invite`` at site A makes a one-time token for site B, and
``link`` at site B hands it to B's gateway, which proves itself to A's gateway and has each
side create the other's Peer (rules in ``clusterlink.controlplane.linking``).

Every command here says what it made and what comes next, because each one is a step that
another person, at another site, continues.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clusterlink.cli.context import client_of, usage_errors
from clusterlink.cli.fabric import fabric_option, path_option

if TYPE_CHECKING:
    from clusterlink.client import Document

__all__ = ["create_peer_key", "install_peer_cert", "invite", "link", "sign"]

_DEFAULT_VALIDITY_DAYS = 730  # certs.CERT_VALIDITY, spelled out: see cli.fabric
_TOKEN_MODE = 0o600  # a token holds a secret, until it is used or expires
_SECONDS_PER = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@click.command("peer-key")
@click.option("--name", required=True, help="Peer name (a DNS name); also its directory.")
@click.option(
    "--path",
    type=click.Path(path_type=Path),
    default=Path(),
    help="Where to create the peer directory.",
)
def create_peer_key(name: str, path: Path) -> None:
    """Make this site's gateway key and its certificate request in PATH/NAME (the key stays).

    Also makes the site's own admin CA and admin certificate (PATH/NAME/admin/), so that no
    secret of the fabric's owner is needed to administer this gateway.
    """
    from clusterlink import certs

    created = certs.create_peer_key(path, name)
    click.echo(
        f"created the key and certificate request of peer {name} in {created} (key.pem never "
        f"leaves this site), and this site's own admin CA and admin certificate in "
        f"{created / 'admin'}"
    )
    click.echo(
        f"next: send {created / 'request.csr'} to the fabric's owner (`clusterlink sign --csr "
        "request.csr --fabric FABRIC` there), then install what comes back: `clusterlink "
        f"install peer-cert --peer-dir {created} --cert cert.pem --ca ca.pem`"
    )


@click.command("sign")
@click.option(
    "--csr",
    type=click.Path(path_type=Path),
    required=True,
    help="The site's request.csr (from `create peer-key`).",
)
@fabric_option
@path_option
@click.option(
    "--valid-for",
    type=click.IntRange(min=1),
    default=_DEFAULT_VALIDITY_DAYS,
    help="Days the certificate is valid (never beyond the CA).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where to write cert.pem and ca.pem.",
    show_default="beside the CSR",
)
def sign(csr: Path, fabric: str, path: Path, valid_for: int, out: Path | None) -> None:
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
    click.echo(
        f"signed the request of peer {signed.peer} with CA "
        f"{certs.ca_id(issuer) if issuer is not None else '?'} of fabric {fabric}: "
        f"{signed.cert_file} (serial {certs.serial_hex(signed.cert.serial_number)}, valid "
        f"until {certs.format_utc(signed.cert.not_valid_after_utc)}) and {signed.ca_file}"
    )
    click.echo(
        f"next: send cert.pem and ca.pem back to the site of {signed.peer}, which runs "
        "`clusterlink install peer-cert --peer-dir PEER_DIR --cert cert.pem --ca ca.pem`"
    )


@click.command("peer-cert")
@click.option(
    "--peer-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="The directory `create peer-key` made.",
)
@click.option(
    "--cert", type=click.Path(path_type=Path), required=True, help="The cert.pem that `sign` wrote."
)
@click.option(
    "--ca", type=click.Path(path_type=Path), required=True, help="The ca.pem that came with it."
)
def install_peer_cert(peer_dir: Path, cert: Path, ca: Path) -> None:
    """Install the signed certificate and the fabric's CA into this site's peer directory.

    Checks first that the certificate is the one of this directory's key, and that the CA
    verifies it and is a fabric CA; then puts both in place atomically.
    """
    from clusterlink import certs

    installed = certs.install_peer_cert(peer_dir, cert, ca)
    pd = installed.peer_dir
    click.echo(
        f"installed the certificate of peer {pd.name} of fabric {pd.fabric} in {pd.path} "
        f"(serial {certs.serial_hex(installed.cert.serial_number)}, valid until "
        f"{certs.format_utc(installed.cert.not_valid_after_utc)}, issued by CA "
        f"{certs.ca_id(installed.issuer)})"
    )
    click.echo(
        f"next: `clusterlink gateway run --peer-dir {pd.path}` (a gateway already running there "
        "picks the new files up by itself)"
    )


advertised_address_option = click.option(
    "--address",
    multiple=True,
    metavar="HOST:PORT",
    help="Where other sites dial this gateway's peer listener; repeat for more.",
    show_default="the gateway's --listen address as bound",
)


@click.command("invite")
@click.option("--name", required=True, help="The peer invited (its certificate's name).")
@click.option("--ttl", default="15m", help="How long the invitation is good for: 90s, 15m, 2h, 7d.")
@click.option("--uses", type=click.IntRange(1, 1000), default=1, help="How many links it allows.")
@advertised_address_option
@click.option("-o", "--output", help="Write the token to this file (0600); - is stdout.")
@click.pass_context
def invite(
    ctx: click.Context,
    *,
    name: str,
    ttl: str,
    uses: int,
    address: tuple[str, ...],
    output: str | None,
) -> None:
    """Invite peer NAME to link with this gateway: writes a one-time token for its site.

    The token holds this peer's name and addresses, the fabric CA's fingerprint, a random
    secret and an expiry; nothing in it lets its holder pass for this peer. Give it to the
    other site, which runs `clusterlink link FILE`.
    """
    with usage_errors("--ttl"):
        ttl_s = _seconds(ttl)
    with usage_errors("--address"):
        gateways = [_gateway_of(text) for text in address]
    with client_of(ctx) as client:
        answer = client.invite(name=name, ttl_s=ttl_s, uses=uses, gateways=gateways)
    token = str(answer["token"])
    if output is None or output == "-":
        click.echo(token)
        where = "printed above"
    else:
        _write_private(Path(output), token + "\n")
        where = f"written to {output}"
    click.echo(
        f"invitation {answer['id']} for peer {name} ({where}): good for {answer['uses']} "
        f"link(s) until {answer['expiresAt']}, dialling {', '.join(answer['gateways'])}; "
        f"at {name}'s site run `clusterlink link {output or 'FILE'}`",
        err=True,
    )


@click.command("link")
@click.argument("token")
@advertised_address_option
@click.pass_context
def link(ctx: click.Context, token: str, address: tuple[str, ...]) -> None:
    """Link this gateway with the peer that invited it, using its token.

    This gateway checks that the token is for its fabric, dials the inviting peer over mutual
    TLS and presents it; once the inviter has created a Peer for this gateway, this gateway
    creates a Peer for the inviter. Nothing is created on either side if the token is
    refused.

    TOKEN is the token file from `invite`; - reads stdin.
    """
    text = sys.stdin.read() if token == "-" else Path(token).read_text(errors="replace")
    with usage_errors("--address"):
        gateways = [_gateway_of(item) for item in address]
    with client_of(ctx) as client:
        answer = client.link(token=text.strip(), gateways=gateways)
    peer, remote = answer["peer"], answer["remote"]
    click.echo(
        f"peer.clusterlink.net/{peer['name']} {answer['outcome']} here "
        f"(gateways {', '.join(peer['gateways'])}{_labels(peer['labels'])})"
    )
    click.echo(
        f"peer.clusterlink.net/{remote['name']} {remote['outcome']} at {peer['name']} "
        f"(gateways {', '.join(remote['gateways'])}{_labels(remote['labels'])})"
    )


def _seconds(text: str) -> int:
    """``90s``, ``15m``, ``2h``, ``7d`` (or bare seconds) as seconds; the gateway checks the
    bounds."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _SECONDS_PER else (text, "s")
    if not (number.isascii() and number.isdigit()) or int(number) == 0:
        raise ValueError(f"{text!r} is not a duration: a whole number and s, m, h or d (15m)")
    return int(number) * _SECONDS_PER[unit]


def _gateway_of(text: str) -> Document:
    from clusterlink.addresses import parse_address

    host, port = parse_address(text, what="--address")
    if not 1 <= port <= 65535:
        raise ValueError(f"--address {text!r}: the port must be 1..65535")
    return {"host": host, "port": port}


def _labels(labels: dict[str, str]) -> str:
    shown = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    return f", labels {shown}" if shown else ""


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` owner-only (whatever the umask) and refuse to overwrite: a token
    left from an earlier invitation is better kept than silently replaced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _TOKEN_MODE)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        os.fchmod(fd, _TOKEN_MODE)
        file.write(text)

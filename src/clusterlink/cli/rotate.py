"""``rotate peer-cert`` and ``rotate ca-bundle``: replacing certificates, offline.

Like ``create fabric``/``create peer-cert`` these touch only the local disk; the rules (what may
be replaced, in which order, atomically, keys 0600) live in ``clusterlink.certs.rotation`` and
are only reported here. A running gateway needs no command: it polls its files and reloads them
(or reads them at once on SIGHUP). ``create fabric --rotate`` is the third step of a CA
rotation and lives with ``create fabric``; the runbook is ``docs/certificates.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from clusterlink.cli.fabric import DEFAULT_FABRIC, path_option

if TYPE_CHECKING:
    from clusterlink.certs import BundleUpdate

__all__ = ["rotate_ca_bundle", "rotate_peer_cert"]

_RELOAD_NOTE = (
    "a running gateway of this peer uses them for new connections within its "
    "--cert-check-interval, or at once on SIGHUP; open connections keep theirs"
)


@click.command("peer-cert")
@click.option("--name", required=True, help="The peer whose certificates to replace.")
@click.option(
    "--fabric",
    default=DEFAULT_FABRIC,
    help="The fabric; its current CA issues the new certificates.",
)
@path_option
def rotate_peer_cert(name: str, fabric: str, path: Path) -> None:
    """Replace the gateway and admin certificates and keys in PATH/FABRIC/NAME.

    The new ones come from the fabric's current CA, which the peer's ca.pem must already
    trust; the old keys are not kept.
    """
    from clusterlink import certs

    cert = certs.rotate_peer_cert(path, name, fabric)
    click.echo(
        f"replaced the certificates of peer {name} in {path / fabric / name}: serial "
        f"{certs.serial_hex(cert.serial_number)}, valid until "
        f"{certs.format_utc(cert.not_valid_after_utc)}"
    )
    click.echo(_RELOAD_NOTE)


@click.command("ca-bundle")
@click.option("--name", required=True, help="The peer whose trusted CAs to show or change.")
@click.option("--fabric", default=DEFAULT_FABRIC, help="The peer's fabric.")
@path_option
@click.option(
    "--add",
    type=click.Path(path_type=Path),
    multiple=True,
    metavar="FILE",
    help="A CA certificate file (PEM) of the fabric to trust as well; repeat for more.",
    show_default=False,
)
@click.option(
    "--remove",
    multiple=True,
    metavar="CA",
    help="A CA to stop trusting: its certificate file, or its fingerprint as listed "
    "(SHA256:...); repeat for more.",
    show_default=False,
)
def rotate_ca_bundle(
    name: str, fabric: str, path: Path, add: tuple[Path, ...], remove: tuple[str, ...]
) -> None:
    """Show, or change, the CAs that peer NAME trusts (PATH/FABRIC/NAME/ca.pem).

    Without --add or --remove, lists them. Removing a CA revokes, for this peer, every
    certificate it issued; removing the CA of the peer's own certificate is refused.
    """
    from clusterlink import certs

    update = certs.update_ca_bundle(path, name, fabric, add=add, remove=remove)
    for ca in update.added:
        click.echo(f"added CA {certs.ca_id(ca)} to {update.path}")
    for ca in update.already_trusted:
        click.echo(f"CA {certs.ca_id(ca)} was already in {update.path}")
    for ca in update.removed:
        click.echo(f"removed CA {certs.ca_id(ca)} from {update.path}")
    _list(update, name)
    if update.added or update.removed:
        click.echo(_RELOAD_NOTE)


def _list(update: BundleUpdate, name: str) -> None:
    from datetime import UTC, datetime

    from clusterlink import certs

    bundle, now = update.bundle, datetime.now(UTC)
    click.echo(f"peer {name} trusts {len(bundle.cas)} CA(s) of fabric {bundle.fabric}:")
    valid = bundle.valid_at(now)
    for ca in bundle.cas:
        notes = []
        if ca == update.own_issuer:
            notes.append("issued this peer's certificate")
        if ca not in valid:
            notes.append("not valid now, so not trusted")
        click.echo(f"  {certs.describe_ca(ca)}" + (f"  ({'; '.join(notes)})" if notes else ""))

"""``create fabric`` (also ``--rotate``) and ``create peer-cert``: the files of DESIGN §3.

These commands touch only the local disk (no gateway, no network); the rules (names, 0600
keys, never overwriting) live in ``clusterlink.certs`` and are only reported here.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["create_fabric", "create_peer_cert"]

# Spelled out rather than imported: importing clusterlink.certs loads `cryptography`, which
# `--help` should not pay for.
DEFAULT_FABRIC = "default_fabric"


path_option = click.option(
    "--path",
    type=click.Path(path_type=Path),
    default=Path(),
    help="The directory that holds the fabric.",
)
fabric_option = click.option("--fabric", default=DEFAULT_FABRIC, help="The fabric that issues it.")


@click.command("fabric")
@click.option("--name", default=DEFAULT_FABRIC, help="Fabric name (a directory under --path).")
@click.option(
    "--path",
    type=click.Path(path_type=Path),
    default=Path(),
    help="Where to create the fabric directory.",
)
@click.option(
    "--rotate",
    is_flag=True,
    help="Give the existing fabric a new CA; the current one moves to "
    "PATH/NAME/previous_ca/ (refused while that exists). See docs/certificates.md.",
)
def create_fabric(name: str, path: Path, rotate: bool) -> None:
    """Create a fabric CA in PATH/NAME (cert.pem, key.pem); never overwrites."""
    from clusterlink import certs

    if not rotate:
        created = certs.create_fabric(path, name)
        click.echo(f"created fabric {name} in {created}")
        _warn_about_ca_key(created / "key.pem", name)
        return
    rotation = certs.rotate_fabric_ca(path, name)
    _warn_about_ca_key(path / name / "key.pem", name)
    click.echo(
        f"created CA {certs.ca_id(rotation.new)} for fabric {name} in {path / name}; "
        f"the previous CA {certs.ca_id(rotation.old)} is kept in {rotation.previous}"
    )
    click.echo(
        "next: add the new CA to every peer's trust bundle with `clusterlink rotate ca-bundle "
        f"--name PEER --fabric {name} --path {path} --add {path / name / 'cert.pem'}`"
    )


def _warn_about_ca_key(key: Path, fabric: str) -> None:
    """Said at the moment the key appears, because the next step of a first try is often to
    start a service, or share a folder, right where the fabric was made: whoever reads this
    key can issue certificates that every gateway of the fabric accepts. On stderr, so that
    scripts reading stdout see what they always saw."""
    click.echo(
        f"warning: {key} is the private key of fabric {fabric}'s CA: anyone who reads it can "
        "join the fabric; keep it off any served or shared directory (a web server's root, "
        "a file share, a repository) and offline once the peers have their certificates",
        err=True,
    )


@click.command("peer-cert")
@click.option("--name", required=True, help="Peer name (a DNS name); also its directory.")
@fabric_option
@path_option
def create_peer_cert(name: str, fabric: str, path: Path) -> None:
    """Create the peer directory PATH/FABRIC/NAME: gateway and admin certificates, fabric CA."""
    from clusterlink import certs

    created = certs.create_peer_cert(path, name, fabric)
    click.echo(f"created peer {name} of fabric {fabric} in {created}")

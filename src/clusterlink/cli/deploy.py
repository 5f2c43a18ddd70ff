"""``deploy peer``: the Kubernetes objects that run a peer's gateway, as one YAML file.

Reads the peer directory that ``create peer-cert`` made (``PATH/FABRIC/NAME``), checks it as a
gateway would at start (certificate, key, trust bundle, validity), and writes what
``clusterlink.manifests`` builds from it: to stdout with ``-o yaml`` (for ``| kubectl apply
-f -``), else to a file, by default ``PEER_DIR/k8s.yaml``. The file holds the peer's private
key, so it is created 0600 and replaced whole, never left half-written or readable by others.

Flag values are checked before anything is read: a bad name, namespace, label or ingress kind
is a usage error (exit 2); a missing or unusable peer directory exits 1 with one line.
lightkube and the manifests are imported when the command runs, so other commands start fast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clusterlink.cli.context import usage_errors
from clusterlink.cli.documents import parse_label
from clusterlink.cli.fabric import DEFAULT_FABRIC, path_option
from clusterlink.cli.gateway import LOG_LEVELS
from clusterlink.errors import CertificateError, ValidationError

if TYPE_CHECKING:
    from clusterlink.manifests import IngressKind

__all__ = ["deploy_peer"]

K8S_FILE = "k8s.yaml"


@click.command("peer")
@click.option("--name", required=True, help="The peer, as named in `create peer-cert`.")
@click.option("--fabric", default=DEFAULT_FABRIC, help="The fabric the peer belongs to.")
@path_option
@click.option(
    "--namespace",
    default="clusterlink-system",
    help="ClusterLink's namespace: the gateway, its Peers and Lease.",
)
@click.option(
    "--ingress",
    type=click.Choice(["none", "NodePort", "LoadBalancer"], case_sensitive=False),
    default="LoadBalancer",
    help="The Service other peers connect to: none (ClusterIP), NodePort or LoadBalancer.",
)
@click.option(
    "--ingress-port",
    type=click.IntRange(1, 65535),
    help="The nodePort of a NodePort Service, else the Service's port.",
    show_default="443; a free nodePort for NodePort",
)
@click.option("--replicas", type=click.IntRange(min=1), default=1, help="Gateway pods.")
@click.option(
    "--label",
    multiple=True,
    help="A label of this peer, K=V; repeat for more.",
    show_default=False,
)
@click.option("--image", help="The gateway's container image.", show_default="this version's")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info")
@click.option(
    "--output",
    "-o",
    type=click.Choice(["yaml"]),
    help="yaml: print to stdout instead of writing a file.",
)
@click.option(
    "--output-file",
    type=click.Path(path_type=Path),
    help="Where to write the YAML.",
    show_default=f"PEER_DIR/{K8S_FILE}",
)
def deploy_peer(
    *,
    name: str,
    fabric: str,
    path: Path,
    namespace: str,
    ingress: IngressKind,  # click.Choice of exactly these
    ingress_port: int | None,
    replicas: int,
    label: tuple[str, ...],
    image: str | None,
    log_level: str,
    output: str | None,
    output_file: Path | None,
) -> None:
    """Write the Kubernetes objects that run this peer's gateway (CRDs, RBAC, Secret, ...)."""
    if output is not None and output_file is not None:
        raise click.BadParameter("give -o yaml or --output-file, not both", param_hint="-o")
    from clusterlink import certs
    from clusterlink.api import dump_objects
    from clusterlink.certs.peerdir import GATEWAY_FILES, read_gateway_credentials
    from clusterlink.manifests import DEFAULT_IMAGE, PeerDeployment, peer_manifests

    with _usage("--name"):
        peer = certs.validate_peer_cert_name(name)
    with _usage("--fabric"):
        certs.validate_fabric_name(fabric)
    with usage_errors("--label"):
        labels = dict(parse_label(item) for item in label)
    try:
        deployment = PeerDeployment(
            peer=peer,
            namespace=namespace,
            ingress=ingress,
            ingress_port=ingress_port,
            replicas=replicas,
            labels=labels,
            image=image or DEFAULT_IMAGE,
            log_level=log_level,
        )
    except ValidationError as exc:
        flag = f"--{(exc.field or '').replace('_', '-')}"  # PeerDeployment names the setting
        raise click.BadParameter(exc.message, param_hint=flag) from None

    peer_dir = path / fabric / name
    credentials = read_gateway_credentials(peer_dir)
    if credentials.peer_dir.name != peer:
        raise CertificateError(
            f"{peer_dir / 'cert.pem'} is the certificate of peer "
            f"{credentials.peer_dir.name!r}, not {peer!r}"
        )
    files = {file: (peer_dir / file).read_bytes() for file in GATEWAY_FILES}
    text = dump_objects(peer_manifests(deployment, files))
    if output == "yaml":
        click.echo(text, nl=False)
        return
    target = output_file or peer_dir / K8S_FILE
    _write_private(target, text)
    click.echo(
        f"wrote {target} (0600: it holds the private key of peer {peer}); "
        f"apply it with `kubectl apply -f {target}`"
    )


@contextlib.contextmanager
def _usage(flag: str) -> Iterator[None]:
    """Our ``ValidationError`` from checking ``flag``'s value as a usage error (exit 2)."""
    try:
        yield
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _write_private(target: Path, text: str) -> None:
    """Replace ``target`` with ``text``, readable by its owner only from the first byte: a
    temporary file beside it, made 0600 on creation, then renamed over it."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:  # say the file the user named, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(target)) from exc
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

"""The management commands: each talks to one gateway's admin API through ``AdminClient``.

``apply``/``delete -f`` parse documents locally (``clusterlink.api``) before sending them, so a
bad file is reported with its field even when no gateway runs; the gateway validates again and
stays the authority. ``create peer|export|import|policy`` build one document from flags and go
through the same ``apply`` path. ``delete --ignore-not-found`` makes a clean-up script's
``delete`` safe to run twice. The read-only commands live in ``show``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from clusterlink.cli import documents
from clusterlink.cli.context import client_of, usage_errors
from clusterlink.cli.show import complete_kind, namespace_option
from clusterlink.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from clusterlink.client import Changes, Document

__all__ = [
    "apply",
    "create_export",
    "create_import",
    "create_peer",
    "create_policy",
    "delete",
]

name_option = click.option("--name", required=True, help="Resource name.")
protocol_option = click.option(
    "--protocol",
    type=click.Choice(["TCP", "UDP"]),
    default="TCP",
    help="Protocol of the service: UDP carries each client address as a flow.",
)
dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Have the gateway check everything and say what would change; change nothing.",
)
close_tunnels_option = click.option(
    "--close-tunnels",
    is_flag=True,
    help="Also reset open tunnels the change no longer allows "
    "(by default a change applies to new connections only).",
)


def _documents_in(filename: str) -> list[Document]:
    from clusterlink.api import parse_documents, to_dict

    if filename == "-":
        text, where = sys.stdin.read(), "stdin"
    else:
        text, where = Path(filename).read_text(encoding="utf-8"), filename
    # Status is the gateway's to write; never send it back.
    parsed = [to_dict(r, include_status=False) for r in parse_documents(text)]
    if not parsed:
        raise ValidationError(f"{where} holds no documents")
    return parsed


def _echo_results(results: Changes) -> None:
    """One line per resource, e.g. ``import.clusterlink.net/default/echo created``."""
    for result in results:
        kind, namespace, name = result.get("kind"), result.get("namespace"), result.get("name")
        ref = f"{namespace}/{name}" if namespace else str(name)  # cluster-scoped: no namespace
        dry = " (dry run)" if results.dry_run else ""
        click.echo(f"{str(kind).lower()}.clusterlink.net/{ref} {result.get('outcome')}{dry}")
    if results.tunnels_closed is not None:
        click.echo(f"{results.tunnels_closed} open tunnel(s) no longer allowed: closed")


def _apply_one(ctx: click.Context, document: Document) -> None:
    with client_of(ctx) as client:
        _echo_results(client.apply([document]))


@click.command("apply")
@click.option("-f", "--filename", required=True, help="YAML or JSON documents; - reads stdin.")
@close_tunnels_option
@dry_run_option
@click.pass_context
def apply(ctx: click.Context, filename: str, close_tunnels: bool, dry_run: bool) -> None:
    """Create or update every document in the file (multi-document YAML or JSON)."""
    docs = _documents_in(filename)
    with client_of(ctx) as client:
        _echo_results(client.apply(docs, close_tunnels=close_tunnels, dry_run=dry_run))


@click.command("delete")
@click.argument("kind", required=False, shell_complete=complete_kind)
@click.argument("name", required=False)
@click.option("-f", "--filename", help="Delete what these documents name; - is stdin.")
@namespace_option
@close_tunnels_option
@dry_run_option
@click.option(
    "--ignore-not-found",
    is_flag=True,
    help="A resource that does not exist is not an error (exit 0).",
)
@click.pass_context
def delete(
    ctx: click.Context,
    *,
    kind: str | None,
    name: str | None,
    filename: str | None,
    namespace: str | None,
    close_tunnels: bool,
    dry_run: bool,
    ignore_not_found: bool,
) -> None:
    """Delete the resources a file names, or one resource: KIND NAME [-n NS].

    KIND is peer, export, import, policy, ... (any form).
    """
    if filename is not None and (kind or name or namespace):
        ctx.fail("give either -f FILE or KIND NAME [-n NS], not both")
    if filename is None and not (kind and name):
        ctx.fail("give -f FILE, or KIND and NAME")
    docs = _documents_in(filename) if filename is not None else []
    with client_of(ctx) as client:
        if kind and name:
            targets = [(kind, name, namespace or "default")]
        elif not ignore_not_found:
            _echo_results(
                client.delete_documents(docs, close_tunnels=close_tunnels, dry_run=dry_run)
            )
            return
        else:
            # One by one: deleting a file's documents is all-or-nothing, and one that is
            # already gone must not keep the others.
            targets = [(d["kind"], d["metadata"]["name"], _namespace_of(d)) for d in docs]
        for target_kind, target_name, target_namespace in targets:
            try:
                _echo_results(
                    client.delete(
                        target_kind,
                        target_name,
                        target_namespace,
                        close_tunnels=close_tunnels,
                        dry_run=dry_run,
                    )
                )
            except NotFoundError as exc:
                if not ignore_not_found:
                    raise
                click.echo(f"{exc} (ignored)", err=True)


def _namespace_of(document: Document) -> str:
    return str(document["metadata"].get("namespace") or "default")


@click.command("peer")
@click.option("--name", required=True, help="The remote peer's name (from its certificate).")
@click.option("--host", help="Its gateway's --listen host.")
@click.option("--port", type=click.IntRange(1, 65535), help="Its gateway's --listen port.")
@click.option(
    "--gateway",
    multiple=True,
    metavar="HOST:PORT",
    help="One of its gateways' --listen address; repeat for each replica (heartbeats "
    "and tunnels use the first that answers).",
    show_default=False,
)
@click.option(
    "--dials-in",
    is_flag=True,
    help="It accepts no connections (NAT, firewall): it keeps a link to this gateway "
    "instead, and its tunnels travel over that link. No address is then needed.",
)
@click.pass_context
def create_peer(
    ctx: click.Context,
    *,
    name: str,
    host: str | None,
    port: int | None,
    gateway: tuple[str, ...],
    dials_in: bool,
) -> None:
    """Add (or update) a remote peer and the addresses of its gateways."""
    if (host is None) != (port is None):
        raise click.BadParameter("give both --host and --port, or neither (with --dials-in)")
    with usage_errors("--gateway"):
        gateways = [documents.parse_gateway(text) for text in gateway]
    if host is not None and port is not None:
        gateways.insert(0, {"host": host, "port": port})
    if not gateways and not dials_in:
        raise click.BadParameter(
            "give --gateway HOST:PORT (or --host and --port), or --dials-in for a peer that "
            "dials in"
        )
    doc = documents.peer_document(name=name, gateways=gateways, dials_in=dials_in)
    _apply_one(ctx, doc)


@click.command("export")
@name_option
@click.option("--host", required=True, help="Host of the local service.")
@click.option(
    "--port", type=click.IntRange(1, 65535), required=True, help="Port of the local service."
)
@namespace_option
@protocol_option
@click.pass_context
def create_export(
    ctx: click.Context, *, name: str, host: str, port: int, namespace: str | None, protocol: str
) -> None:
    """Export a local service to the peers that policies allow."""
    doc = documents.export_document(
        name=name, namespace=namespace or "default", host=host, port=port, protocol=protocol
    )
    _apply_one(ctx, doc)


@click.command("import")
@name_option
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    required=True,
    help="Local port to listen on; 0 leases one.",
)
@click.option(
    "--source",
    multiple=True,
    required=True,
    help="PEER[:NS/EXPORT]; repeat for more. A bare PEER means its export named like "
    "this import, in this import's namespace.",
    show_default=False,
)
@namespace_option
@click.option(
    "--lb",
    type=click.Choice(["round-robin", "random", "static"]),
    default="round-robin",
    help="Load-balancing scheme.",
)
@protocol_option
@click.pass_context
def create_import(
    ctx: click.Context,
    *,
    name: str,
    port: int,
    source: tuple[str, ...],
    namespace: str | None,
    lb: str,
    protocol: str,
) -> None:
    """Import a remote export: the gateway opens a local listener for it."""
    with usage_errors("--source"):
        doc = documents.import_document(
            name=name,
            namespace=namespace or "default",
            port=port,
            sources=list(source),
            lb_scheme=lb,
            protocol=protocol,
        )
    _apply_one(ctx, doc)


@click.command("policy")
@name_option
@click.option("--action", type=click.Choice(["allow", "deny"]), required=True)
@namespace_option
@click.option("--privileged", is_flag=True, help="Cluster-wide, evaluated before all others.")
@click.option(
    "--from",
    "from_",
    multiple=True,
    help="Source labels K=V,...; repeat for alternatives. Omitted: every source.",
    show_default=False,
)
@click.option(
    "--to",
    multiple=True,
    help="Destination labels K=V,...; repeat for alternatives. Omitted: every one.",
    show_default=False,
)
@click.pass_context
def create_policy(
    ctx: click.Context,
    *,
    name: str,
    action: str,
    namespace: str | None,
    privileged: bool,
    from_: tuple[str, ...],
    to: tuple[str, ...],
) -> None:
    """Add (or update) an access policy."""
    if privileged and namespace:
        ctx.fail("privileged policies are cluster-wide; drop -n")
    with usage_errors("--from/--to"):
        doc = documents.policy_document(
            name=name,
            namespace=namespace or "default",
            action=action,
            is_privileged=privileged,
            from_labels=list(from_),
            to_labels=list(to),
        )
    _apply_one(ctx, doc)

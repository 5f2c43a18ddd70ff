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
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from clusterlink.cli import documents
from clusterlink.cli.context import client_of, usage_errors
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

FileOption = Annotated[
    str, typer.Option("-f", "--filename", help="YAML or JSON documents; - reads stdin.")
]
NamespaceOption = Annotated[
    str | None,
    typer.Option("-n", "--namespace", help="Namespace.", show_default="default"),
]
NameOption = Annotated[str, typer.Option(help="Resource name.")]
ProtocolOption = Annotated[
    Literal["TCP", "UDP"],
    typer.Option(help="Protocol of the service: UDP carries each client address as a flow."),
]


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
        typer.echo(f"{str(kind).lower()}.clusterlink.net/{ref} {result.get('outcome')}{dry}")
    if results.tunnels_closed is not None:
        typer.echo(f"{results.tunnels_closed} open tunnel(s) no longer allowed: closed")


def _apply_one(ctx: typer.Context, document: Document) -> None:
    with client_of(ctx) as client:
        _echo_results(client.apply([document]))


DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Have the gateway check everything and say what would change; change nothing.",
    ),
]
CloseTunnelsOption = Annotated[
    bool,
    typer.Option(
        "--close-tunnels",
        help="Also reset open tunnels the change no longer allows "
        "(by default a change applies to new connections only).",
    ),
]


def apply(
    ctx: typer.Context,
    filename: FileOption,
    *,
    close_tunnels: CloseTunnelsOption = False,
    dry_run: DryRunOption = False,
) -> None:
    """Create or update every document in the file (multi-document YAML or JSON)."""
    docs = _documents_in(filename)
    with client_of(ctx) as client:
        _echo_results(client.apply(docs, close_tunnels=close_tunnels, dry_run=dry_run))


def delete(
    ctx: typer.Context,
    *,
    kind: Annotated[str | None, typer.Argument(help="peer, export, import, policy, ...")] = None,
    name: Annotated[str | None, typer.Argument(show_default=False)] = None,
    filename: Annotated[
        str | None,
        typer.Option("-f", "--filename", help="Delete what these documents name; - is stdin."),
    ] = None,
    namespace: NamespaceOption = None,
    close_tunnels: CloseTunnelsOption = False,
    dry_run: DryRunOption = False,
    ignore_not_found: Annotated[
        bool,
        typer.Option(
            "--ignore-not-found", help="A resource that does not exist is not an error (exit 0)."
        ),
    ] = False,
) -> None:
    """Delete the resources a file names, or one resource: KIND NAME [-n NS]."""
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
                typer.echo(f"{exc} (ignored)", err=True)


def _namespace_of(document: Document) -> str:
    return str(document["metadata"].get("namespace") or "default")


def create_peer(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Option(help="The remote peer's name (from its certificate).")],
    host: Annotated[str | None, typer.Option(help="Its gateway's --listen host.")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Its gateway's --listen port.")
    ] = None,
    gateway: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST:PORT",
            help="One of its gateways' --listen address; repeat for each replica (heartbeats "
            "and tunnels use the first that answers).",
            show_default=False,
        ),
    ] = None,
    dials_in: Annotated[
        bool,
        typer.Option(
            "--dials-in",
            help="It accepts no connections (NAT, firewall): it keeps a link to this gateway "
            "instead, and its tunnels travel over that link. No address is then needed.",
        ),
    ] = False,
) -> None:
    """Add (or update) a remote peer and the addresses of its gateways."""
    if (host is None) != (port is None):
        raise typer.BadParameter("give both --host and --port, or neither (with --dials-in)")
    with usage_errors("--gateway"):
        gateways = [documents.parse_gateway(text) for text in gateway or []]
    if host is not None and port is not None:
        gateways.insert(0, {"host": host, "port": port})
    if not gateways and not dials_in:
        raise typer.BadParameter(
            "give --gateway HOST:PORT (or --host and --port), or --dials-in for a peer that "
            "dials in"
        )
    doc = documents.peer_document(name=name, gateways=gateways, dials_in=dials_in)
    _apply_one(ctx, doc)


def create_export(
    ctx: typer.Context,
    *,
    name: NameOption,
    host: Annotated[str, typer.Option(help="Host of the local service.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the local service.")],
    namespace: NamespaceOption = None,
    protocol: ProtocolOption = "TCP",
) -> None:
    """Export a local service to the peers that policies allow."""
    doc = documents.export_document(
        name=name, namespace=namespace or "default", host=host, port=port, protocol=protocol
    )
    _apply_one(ctx, doc)


def create_import(
    ctx: typer.Context,
    *,
    name: NameOption,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Local port to listen on; 0 leases one.")
    ],
    source: Annotated[
        list[str],
        typer.Option(
            help="PEER[:NS/EXPORT]; repeat for more. A bare PEER means its export named like "
            "this import, in this import's namespace.",
            show_default=False,
        ),
    ],
    namespace: NamespaceOption = None,
    lb: Annotated[
        Literal["round-robin", "random", "static"], typer.Option(help="Load-balancing scheme.")
    ] = "round-robin",
    protocol: ProtocolOption = "TCP",
) -> None:
    """Import a remote export: the gateway opens a local listener for it."""
    with usage_errors("--source"):
        doc = documents.import_document(
            name=name,
            namespace=namespace or "default",
            port=port,
            sources=source,
            lb_scheme=lb,
            protocol=protocol,
        )
    _apply_one(ctx, doc)


def create_policy(
    ctx: typer.Context,
    *,
    name: NameOption,
    action: Annotated[Literal["allow", "deny"], typer.Option()],
    namespace: NamespaceOption = None,
    privileged: Annotated[
        bool, typer.Option("--privileged", help="Cluster-wide, evaluated before all others.")
    ] = False,
    from_: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="Source labels K=V,...; repeat for alternatives. Omitted: every source.",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            help="Destination labels K=V,...; repeat for alternatives. Omitted: every one.",
            show_default=False,
        ),
    ] = None,
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
            from_labels=from_ or [],
            to_labels=to or [],
        )
    _apply_one(ctx, doc)

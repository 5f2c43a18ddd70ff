"""The management commands: each talks to one gateway's admin API through ``AdminClient``.

``apply``/``delete -f`` parse documents locally (``clusterlink.api``) before sending them, so a
bad file is reported with its field even when no gateway runs; the gateway validates again and
stays the authority. ``create peer|export|import|policy`` build one document from flags and go
through the same ``apply`` path. Each command fetches its data once and hands the plain dicts to
``render``, whatever the ``-o`` format.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from clusterlink.cli import documents, render
from clusterlink.cli.context import client_of, usage_errors
from clusterlink.client import Changes, Document
from clusterlink.errors import ValidationError

__all__ = [
    "apply",
    "create_export",
    "create_import",
    "create_peer",
    "create_policy",
    "delete",
    "get",
    "status",
]

FileOption = Annotated[
    str, typer.Option("-f", "--filename", help="YAML or JSON documents; - reads stdin.")
]
NamespaceOption = Annotated[
    str | None,
    typer.Option("-n", "--namespace", help="Namespace.", show_default="default"),
]
NameOption = Annotated[str, typer.Option(help="Resource name.")]


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
        typer.echo(f"{str(kind).lower()}.clusterlink.net/{ref} {result.get('outcome')}")
    if results.tunnels_closed is not None:
        typer.echo(f"{results.tunnels_closed} open tunnel(s) no longer allowed: closed")


def _apply_one(ctx: typer.Context, document: Document) -> None:
    with client_of(ctx) as client:
        _echo_results(client.apply([document]))


CloseTunnelsOption = Annotated[
    bool,
    typer.Option(
        "--close-tunnels",
        help="Also reset open tunnels the change no longer allows "
        "(by default a change applies to new connections only).",
    ),
]


def apply(
    ctx: typer.Context, filename: FileOption, *, close_tunnels: CloseTunnelsOption = False
) -> None:
    """Create or update every document in the file (multi-document YAML or JSON)."""
    docs = _documents_in(filename)
    with client_of(ctx) as client:
        _echo_results(client.apply(docs, close_tunnels=close_tunnels))


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
) -> None:
    """Delete the resources a file names, or one resource: KIND NAME [-n NS]."""
    if filename is not None and (kind or name or namespace):
        ctx.fail("give either -f FILE or KIND NAME [-n NS], not both")
    if filename is None and not (kind and name):
        ctx.fail("give -f FILE, or KIND and NAME")
    docs = _documents_in(filename) if filename is not None else []
    with client_of(ctx) as client:
        if kind and name:
            _echo_results(
                client.delete(kind, name, namespace or "default", close_tunnels=close_tunnels)
            )
        else:
            _echo_results(client.delete_documents(docs, close_tunnels=close_tunnels))


def get(
    ctx: typer.Context,
    *,
    kind: Annotated[str, typer.Argument(help="peer, export, import, policy, ... (any form)")],
    name: Annotated[str | None, typer.Argument(show_default=False)] = None,
    namespace: NamespaceOption = None,
    all_namespaces: Annotated[
        bool, typer.Option("-A", "--all-namespaces", help="List every namespace.")
    ] = False,
    output: Annotated[Literal["table", "json", "yaml"], typer.Option("-o", "--output")] = "table",
) -> None:
    """Show one resource, or list a kind; -o json/yaml prints the stored documents."""
    if all_namespaces and (name or namespace):
        ctx.fail("-A lists every namespace; it takes no NAME and no -n")
    from clusterlink.api import kind_info

    info = kind_info(kind)
    with client_of(ctx) as client:
        if name:
            data: Document = client.get(info.name, name, namespace or "default")
            docs = [data]
        else:
            docs = client.list(info.name, None if all_namespaces else namespace or "default")
            data = {"items": docs}
    if output != "table":
        typer.echo(render.dump(data, output), nl=False)
    elif docs:
        render.print_sections([(None, render.resource_table(info.name, docs))])
    else:
        where = f" in namespace {namespace or 'default'}"
        shown = where if info.namespaced and not all_namespaces else ""
        typer.echo(f"no {info.plural} found{shown}", err=True)


def status(
    ctx: typer.Context,
    *,
    output: Annotated[Literal["table", "json"], typer.Option("-o", "--output")] = "table",
) -> None:
    """This gateway, its peers (reachable, last heartbeat, RTT), exports and imports."""
    with client_of(ctx) as client:
        data = client.status()
    if output == "json":
        typer.echo(render.dump(data, output), nl=False)
    else:
        render.print_sections(render.status_sections(data))


def create_peer(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Option(help="The remote peer's name (from its certificate).")],
    host: Annotated[str | None, typer.Option(help="Its gateway's --listen host.")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Its gateway's --listen port.")
    ] = None,
    dials_in: Annotated[
        bool,
        typer.Option(
            "--dials-in",
            help="It accepts no connections (NAT, firewall): it keeps a link to this gateway "
            "instead, and its tunnels travel over that link. --host/--port may then be left out.",
        ),
    ] = False,
) -> None:
    """Add (or update) a remote peer and the address of its gateway."""
    if (host is None) != (port is None):
        raise typer.BadParameter("give both --host and --port, or neither (with --dials-in)")
    if host is None and not dials_in:
        raise typer.BadParameter("give --host and --port, or --dials-in for a peer that dials in")
    doc = documents.peer_document(name=name, host=host, port=port, dials_in=dials_in)
    _apply_one(ctx, doc)


def create_export(
    ctx: typer.Context,
    *,
    name: NameOption,
    host: Annotated[str, typer.Option(help="Host of the local service.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the local service.")],
    namespace: NamespaceOption = None,
) -> None:
    """Export a local service to the peers that policies allow."""
    doc = documents.export_document(
        name=name, namespace=namespace or "default", host=host, port=port
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
) -> None:
    """Import a remote export: the gateway opens a local listener for it."""
    with usage_errors("--source"):
        doc = documents.import_document(
            name=name, namespace=namespace or "default", port=port, sources=source, lb_scheme=lb
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

"""``get``, ``describe`` and ``status``: what a gateway holds, in the views kubectl users expect.

``get`` takes one kind, several (``exports,imports``) or ``all``; ``-o name`` prints
``KIND.clusterlink.net/NAME`` lines to feed ``xargs``, ``-o wide`` adds columns, ``json`` and
``yaml`` print the stored documents. ``describe`` puts everything about one resource on one
page: its spec, its status, its conditions and the recent tunnels that went through it (or
that it decided), so "why does my import not work" needs one command. Each command fetches its
data once and hands plain dicts to ``render``; nothing here changes a gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from clusterlink.cli.context import client_of
from clusterlink.kind_names import KIND_NAMES, KindNames, kind_names

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from clusterlink.client import AdminClient, Document

__all__ = ["describe", "get", "status"]

ALL_KINDS = tuple(kind.plural for kind in KIND_NAMES)
_GROUP = "clusterlink.net"
_FLOWS_SHOWN = 10

namespace_option = click.option("-n", "--namespace", help="Namespace.", show_default="default")


def complete_kind(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The kinds a shell offers for a KIND: each plural (and ``all`` after ``get``)."""
    from click.shell_completion import CompletionItem

    offered = (*ALL_KINDS, "all") if ctx.command.name == "get" else ALL_KINDS
    return [CompletionItem(kind) for kind in offered if kind.startswith(incomplete.lower())]


def _kinds(ctx: click.Context, text: str) -> list[KindNames]:
    """``import``, ``exports,imports`` or ``all``, each kind once, in the order given."""
    names = ALL_KINDS if text == "all" else [part for part in text.split(",") if part]
    if not names:
        ctx.fail(f"{text!r} names no kind; e.g. imports, or exports,imports, or all")
    infos: list[KindNames] = []
    for name in names:
        info = kind_names(name)
        if info not in infos:
            infos.append(info)
    return infos


@click.command("get")
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name", required=False)
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List every namespace.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "wide", "name", "json", "yaml"]),
    default="table",
    help="wide: more columns; name: KIND.GROUP/NAME lines.",
)
@click.pass_context
def get(
    ctx: click.Context,
    *,
    kind: str,
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    output: str,
) -> None:
    """Show one resource, or list one kind, several (exports,imports) or all.

    KIND is peer, export, import, policy, ... (any form); KIND,KIND; or all.
    """
    if all_namespaces and (name or namespace):
        ctx.fail("-A lists every namespace; it takes no NAME and no -n")
    infos = _kinds(ctx, kind)
    if name and len(infos) > 1:
        ctx.fail("a NAME needs exactly one kind")
    where = None if all_namespaces else namespace or "default"
    with client_of(ctx) as client:
        if name:
            one = client.get(infos[0].name, name, namespace or "default")
            found = [(infos[0], [one])]
        else:
            found = [(info, client.list(info.name, where)) for info in infos]
    docs = [doc for _, kind_docs in found for doc in kind_docs]
    if output in ("json", "yaml"):
        from clusterlink.cli import render

        data = docs[0] if name else {"items": docs}
        click.echo(render.dump(data, output), nl=False)
    elif output == "name":
        for doc in docs:
            click.echo(f"{str(doc.get('kind')).lower()}.{_GROUP}/{doc['metadata']['name']}")
    elif docs:
        _print_tables(found, wide=output == "wide")
    else:
        _say_none_found(infos, where if all(i.namespaced for i in infos) else None)


def _print_tables(found: list[tuple[KindNames, list[Document]]], *, wide: bool) -> None:
    """One table per kind; with several kinds each is headed by its plural and empty ones
    are left out (as kubectl does)."""
    from clusterlink.cli import render

    several = len(found) > 1
    sections: list[render.Section] = [
        (
            info.plural.upper() if several else None,
            render.resource_table(info.name, docs, wide=wide),
        )
        for info, docs in found
        if docs
    ]
    click.echo(render.render_sections(sections), nl=False)


def _say_none_found(infos: list[KindNames], namespace: str | None) -> None:
    what = infos[0].plural if len(infos) == 1 else "resources"
    shown = f" in namespace {namespace}" if namespace else ""
    click.echo(f"no {what} found{shown}", err=True)


@click.command("describe")
@click.argument("kind", shell_complete=complete_kind)
@click.argument("name")
@namespace_option
@click.pass_context
def describe(ctx: click.Context, kind: str, name: str, namespace: str | None) -> None:
    """One resource on one page: spec, status, conditions and its recent tunnels.

    KIND is peer, export, import, policy, ... (any form).
    """
    info = kind_names(kind)
    with client_of(ctx) as client:
        doc = client.get(info.name, name, namespace or "default")
        flows = _flows_of(client, info.name, doc)
    click.echo(describe_text(doc, flows), nl=False)


def _flows_of(client: AdminClient, kind: str, doc: Document) -> list[Document]:
    """The newest tunnel records that went through this resource, or that it decided."""
    meta = doc.get("metadata") or {}
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    matches: dict[str, Any] = {
        "Import": lambda f: f.get("direction") == "egress" and f.get("resource") == ref,
        "Export": lambda f: f.get("direction") == "ingress" and f.get("resource") == ref,
        "Peer": lambda f: f.get("peer") == meta.get("name"),
        "AccessPolicy": lambda f: f.get("policy") == ref,
        "PrivilegedAccessPolicy": lambda f: f.get("policy") == meta.get("name"),
    }
    items = client.flows(limit=1000)["items"]
    return [item for item in items if matches[kind](item)][-_FLOWS_SHOWN:]


def describe_text(doc: Document, flows: list[Document]) -> str:
    """The page of ``describe``: headed blocks, nested fields indented as YAML."""
    from clusterlink.cli.render import dump

    meta = doc.get("metadata") or {}
    status = dict(doc.get("status") or {})
    conditions = status.pop("conditions", None) or []
    lines = [f"Name:        {meta.get('name')}"]
    if meta.get("namespace"):
        lines.append(f"Namespace:   {meta.get('namespace')}")
    lines.append(f"Kind:        {doc.get('kind')}")
    labels = meta.get("labels") or {}
    lines.append(f"Labels:      {','.join(f'{k}={v}' for k, v in labels.items()) or '<none>'}")
    for heading, block in (("Spec", doc.get("spec")), ("Status", status)):
        lines.append(f"{heading}:")
        dumped = dump(block, "yaml") if block else ""
        lines.extend(f"  {line}" for line in dumped.splitlines() or ["<none>"])
    lines.append("Conditions:")
    lines.extend(_condition_lines(conditions))
    lines.append(f"Recent tunnels (newest {_FLOWS_SHOWN}):")
    lines.extend(_flow_lines(flows))
    return "".join(line + "\n" for line in lines)


def _condition_lines(conditions: list[Document]) -> list[str]:
    from clusterlink.cli.render import render_rows

    columns = (("TYPE", "type"), ("STATUS", "status"), ("REASON", "reason"), ("MESSAGE", "message"))
    text = render_rows(columns, conditions)
    return [f"  {line}" for line in text.splitlines()] or ["  <none>"]


def _flow_lines(flows: list[Document]) -> list[str]:
    from clusterlink.cli.render import render_rows

    columns = (
        ("STARTED", "startedAt"),
        ("DIRECTION", "direction"),
        ("PEER", "peer"),
        ("CLIENT", "client"),
        ("DECISION", "decision"),
        ("POLICY", "policy"),
        ("BYTES-UP", "bytesUp"),
        ("BYTES-DOWN", "bytesDown"),
        ("REASON", "reason"),
    )
    text = render_rows(columns, flows)
    return [f"  {line}" for line in text.splitlines()] or ["  <none>"]


@click.command("status")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml"]), default="table")
@click.pass_context
def status(ctx: click.Context, output: str) -> None:
    """This gateway, its peers (reachable, last heartbeat, RTT), exports and imports."""
    from clusterlink.cli import render

    with client_of(ctx) as client:
        data = client.status()
    if output == "table":
        click.echo(render.render_sections(render.status_sections(data)), nl=False)
    else:
        click.echo(render.dump(data, output), nl=False)

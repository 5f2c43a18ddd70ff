"""``clusterlink explain``: which policy would decide a connection, without opening one.

The gateway answers (``POST /v1/explain``) from its current resources with the same
attribute builders and decision order as the data path; this module only checks the flags
and prints. One data source, two renderings: ``-o json`` prints the answer as it came, the
table one line per tier in decision order, the deciding tier marked ``*``, and the decision.
"""

from __future__ import annotations

import json
from typing import Any

import click

from clusterlink.cli.context import client_of, usage_errors
from clusterlink.cli.documents import parse_label

__all__ = ["explain"]


@click.command("explain")
@click.option(
    "--import",
    "import_",
    help="Explain egress: a client of this Import, NAMESPACE/NAME or NAME.",
)
@click.option("--export", help="Explain ingress: a peer asking for this Export, NAMESPACE/NAME.")
@click.option(
    "--peer",
    help="With --export: the calling peer. With --import: only its source at this peer.",
)
@click.option("--client-ip", help="The client's address (needed with --import).")
@click.option("--client-namespace", help="The client pod's namespace (Kubernetes).")
@click.option("--client-service-account", help="The client pod's service account (Kubernetes).")
@click.option(
    "--client-label",
    multiple=True,
    help="A label of the client pod, K=V; repeat for more.",
    show_default=False,
)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def explain(
    ctx: click.Context,
    *,
    import_: str | None,
    export: str | None,
    peer: str | None,
    client_ip: str | None,
    client_namespace: str | None,
    client_service_account: str | None,
    client_label: tuple[str, ...],
    output: str,
) -> None:
    """Which policy would decide a connection, tier by tier: privileged deny, privileged
    allow, deny, allow, default deny."""
    if (import_ is None) == (export is None):
        raise click.BadParameter("give --import (egress) or --export (ingress)")
    if export is not None and peer is None:
        raise click.BadParameter("--export needs --peer: the peer asking for it")
    if import_ is not None and client_ip is None:
        raise click.BadParameter("--import needs --client-ip: the client's address")
    with usage_errors("--client-label"):
        labels = dict(parse_label(item) for item in client_label)
    given = {
        "import": import_,
        "export": export,
        "peer": peer,
        "clientIp": client_ip,
        "clientNamespace": client_namespace,
        "clientServiceAccount": client_service_account,
        "clientLabels": labels or None,
    }
    body = {key: value for key, value in given.items() if value is not None}
    with client_of(ctx) as client:
        answer = client.explain(body)
    if output == "json":
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo("\n\n".join(render(answer, trace) for trace in answer["traces"]))


def render(answer: dict[str, Any], trace: dict[str, Any]) -> str:
    """One trace as lines: what is decided, one line per tier, the decision."""
    if answer["direction"] == "egress":
        head = (
            f"egress: a client of import {answer['resource']} "
            f"to peer {trace['peer']}, export {trace['export']}"
        )
    else:
        head = f"ingress: peer {trace['peer']} asking for export {answer['resource']}"
    lines = [head]
    if trace["problem"]:
        lines.append(f"problem: {trace['problem']}")
    width = max(len(tier["tier"]) for tier in trace["tiers"])
    for tier in trace["tiers"]:
        mark = "*" if tier["deciding"] else " "
        lines.append(f"{mark} {tier['tier']:<{width}}  {_outcome(tier)}")
    lines.append(f"decision: {trace['summary']}")
    return "\n".join(lines)


def _outcome(tier: dict[str, Any]) -> str:
    matched = ", ".join(tier["matched"])
    if tier["tier"] == "default deny":
        return "no policy matched: deny" if tier["deciding"] else "not reached"
    if not tier["reached"]:
        return f"not reached (would match {matched})" if matched else "not reached"
    checked = f"{tier['checked']} checked"
    return f"matched {matched} ({checked})" if matched else f"no match ({checked})"

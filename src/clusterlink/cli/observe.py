"""What an operator watches: ``flows`` (the recent tunnels) and ``dashboard`` (a web page).

Both read the gateway through its admin API with this peer's admin certificate and change
nothing. ``flows --follow`` asks for the records after the last one it printed, once a
second, so it shows each tunnel once (when it opened, or was refused) and again when it ended.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from clusterlink.cli.context import address_option, client_of

__all__ = ["dashboard", "flows"]

_COLUMNS = (
    ("ID", "id"),
    ("STARTED", "startedAt"),
    ("DIRECTION", "direction"),
    ("RESOURCE", "resource"),
    ("PEER", "peer"),
    ("CLIENT", "client"),
    ("PROTOCOL", "protocol"),
    ("DECISION", "decision"),
    ("POLICY", "policy"),
    ("BYTES-UP", "bytesUp"),
    ("BYTES-DOWN", "bytesDown"),
    ("DURATION", "durationS"),
    ("REASON", "reason"),
)
_FOLLOW_EVERY_S = 1.0


@click.command("flows")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new records until Ctrl-C.")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=50, help="At most this many, the newest."
)
@click.pass_context
def flows(ctx: click.Context, output: str, follow: bool, limit: int) -> None:
    """The recent tunnels of this gateway: opened, refused (with the deciding policy), ended."""
    with client_of(ctx) as client:
        widths: list[int] = []
        answer = client.flows(limit=limit)
        _print(answer["items"], output, header=True, widths=widths)
        if not follow:
            return
        last = int(answer["last"])
        try:
            while True:
                time.sleep(_FOLLOW_EVERY_S)  # a follower's pace, not a wait for an event
                answer = client.flows(after=last)
                _print(answer["items"], output, header=False, widths=widths)
                last = int(answer["last"])
        except KeyboardInterrupt:
            return


def _print(items: list[dict[str, Any]], output: str, *, header: bool, widths: list[int]) -> None:
    if output == "json":
        for item in items:
            click.echo(json.dumps(item, separators=(",", ":")))
        return
    from clusterlink.cli.render import render_rows

    shown = [_shown(item) for item in items]
    click.echo(render_rows(_COLUMNS, shown, header=header, widths=widths), nl=False)


def _shown(item: dict[str, Any]) -> dict[str, Any]:
    duration = item.get("durationS")
    ended = item.get("endedAt") is not None or item.get("decision") != "allowed"
    return {
        **item,
        "startedAt": str(item.get("startedAt", "")).replace("T", " "),
        "durationS": f"{duration:.3f}s"
        if isinstance(duration, float | int)
        else ("" if ended else "open"),
    }


@click.command("dashboard")
@click.option(
    "--listen",
    default="127.0.0.1:8480",
    callback=address_option,
    help="Where the page is served, HOST:PORT.",
)
@click.pass_context
def dashboard(ctx: click.Context, listen: str) -> None:
    """A local web page with this gateway's peers, imports, exports and tunnels, live."""
    import asyncio

    from aiohttp import web

    from clusterlink.addresses import parse_address
    from clusterlink.dashboard.server import make_app

    host, port = parse_address(listen)
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(
            f"warning: the dashboard on {listen} shows this gateway's state to anyone who can "
            "reach that address (it needs no certificate)",
            err=True,
        )
    with client_of(ctx) as client:
        app = make_app(client)

        async def serve() -> None:
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound = runner.addresses[0]
            click.echo(
                f"dashboard of peer {client.peer} on http://{bound[0]}:{bound[1]}/", err=True
            )
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            return

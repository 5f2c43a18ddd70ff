"""The ``clusterlink`` command: the table of contents of DESIGN §6.

This module only assembles the command tree; each command lives in the module for its job
(``fabric``: certificates on disk, ``rotate``: replacing them, ``join``: joining sites without
moving a key, ``gateway``: running a gateway, ``deploy``: the Kubernetes objects of a peer,
``manage``: changes through the admin API, ``show``: reading it, ``completion``: shell
completion).
Heavy modules (the gateway, asyncio servers, httpx, cryptography) are imported inside the
commands that need them, so ``--help``, ``--version`` and usage errors answer at once.

Exit status: 0 success; 1 with one ``error: ...`` line on stderr (see ``OneLineErrors``);
2 for usage errors (click's own handling, including a missing ``--peer-dir``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clusterlink import __version__
from clusterlink.cli import (
    completion,
    demo,
    deploy,
    explain,
    fabric,
    gateway,
    join,
    manage,
    observe,
    rotate,
    show,
)
from clusterlink.cli.context import PEER_DIR_ENV, Globals, OneLineErrors, address_option

__all__ = ["app", "run"]

_SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="clusterlink",
    cls=OneLineErrors,
    help="Connect services across sites through mutual-TLS gateways.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=_SETTINGS,
)
create_app = typer.Typer(
    help="Create a fabric, a peer certificate or key (local files), or a resource (on a gateway).",
    no_args_is_help=True,
)
install_app = typer.Typer(
    help="Install a certificate that the fabric signed for this site (local files).",
    no_args_is_help=True,
)
gateway_app = typer.Typer(help="Run this peer's gateway.", no_args_is_help=True)
deploy_app = typer.Typer(
    help="Write what a Kubernetes cluster needs to run a peer's gateway.", no_args_is_help=True
)
rotate_app = typer.Typer(
    help="Replace certificates (local files): a peer's own, or the CAs a peer trusts.",
    no_args_is_help=True,
)
app.add_typer(create_app, name="create")
app.add_typer(gateway_app, name="gateway")
app.add_typer(rotate_app, name="rotate")
app.add_typer(install_app, name="install")
app.add_typer(deploy_app, name="deploy")

create_app.command("fabric")(fabric.create_fabric)
create_app.command("peer-cert")(fabric.create_peer_cert)
create_app.command("peer-key")(join.create_peer_key)
create_app.command("peer")(manage.create_peer)
create_app.command("export")(manage.create_export)
create_app.command("import")(manage.create_import)
create_app.command("policy")(manage.create_policy)
gateway_app.command("run")(gateway.gateway_run)
deploy_app.command("peer")(deploy.deploy_peer)
rotate_app.command("peer-cert")(rotate.rotate_peer_cert)
rotate_app.command("ca-bundle")(rotate.rotate_ca_bundle)
install_app.command("peer-cert")(join.install_peer_cert)
app.command()(manage.apply)
app.command()(manage.delete)
app.command()(show.get)
app.command()(show.describe)
app.command()(show.status)
app.command()(join.sign)
app.command()(join.invite)
app.command()(join.link)
app.command()(observe.flows)
app.command()(observe.dashboard)
app.command()(explain.explain)
app.command()(demo.demo)
app.command()(completion.completion)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"clusterlink {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    ctx: typer.Context,
    peer_dir: Annotated[
        Path | None,
        typer.Option(
            envvar=PEER_DIR_ENV,
            help="The peer directory whose gateway to manage (from `create peer-cert`, or "
            "`create peer-key` and `install peer-cert`).",
            show_default=False,
        ),
    ] = None,
    admin: Annotated[
        str | None,
        typer.Option(
            callback=address_option,
            help="The admin API's HOST:PORT.",
            show_default="from PEER_DIR/gateway.json",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Connect services across sites through mutual-TLS gateways."""
    ctx.obj = Globals(peer_dir=peer_dir, admin=admin)


def run() -> None:
    """The console script ``clusterlink`` (and ``python -m clusterlink``)."""
    app(prog_name="clusterlink")

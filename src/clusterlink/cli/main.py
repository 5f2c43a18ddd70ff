"""The ``clusterlink`` command: the table of contents of DESIGN §6.

This module only names the command tree (``COMMANDS``); each command lives in the module for
its job (``fabric``: certificates on disk, ``rotate``: replacing them, ``join``: joining sites
without moving a key, ``gateway``: running a gateway, ``deploy``: the Kubernetes objects of a peer,
``manage``: changes through the admin API, ``show``: reading it, ``completion``: shell
completion).
A command's module is imported only when that command runs (``lazy``), and heavy modules (the
gateway, asyncio servers, pydantic, cryptography, rich, YAML) only inside the commands that need
them, so every command starts fast; tests/unit/test_cli_imports.py keeps it so.

Exit status: 0 success; 1 with one ``error: ...`` line on stderr (see ``OneLineErrors``);
2 with one ``error: ...`` line for usage errors, including a missing ``--peer-dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clusterlink import __version__
from clusterlink.cli.context import PEER_DIR_ENV, Globals, OneLineErrors, address_option
from clusterlink.cli.lazy import Entry, LazyGroup

__all__ = ["app", "run"]

_SETTINGS = {"help_option_names": ["-h", "--help"]}

# The command tree: each command is "module:function" under clusterlink.cli, imported when used.
COMMANDS: dict[str, Entry] = {
    "create": (
        "Create a fabric, a peer certificate or key (local files), or a resource (on a gateway).",
        {
            "fabric": "fabric:create_fabric",
            "peer-cert": "fabric:create_peer_cert",
            "peer-key": "join:create_peer_key",
            "peer": "manage:create_peer",
            "export": "manage:create_export",
            "import": "manage:create_import",
            "policy": "manage:create_policy",
        },
    ),
    "gateway": ("Run this peer's gateway.", {"run": "gateway:gateway_run"}),
    "rotate": (
        "Replace certificates (local files): a peer's own, or the CAs a peer trusts.",
        {"peer-cert": "rotate:rotate_peer_cert", "ca-bundle": "rotate:rotate_ca_bundle"},
    ),
    "install": (
        "Install a certificate that the fabric signed for this site (local files).",
        {"peer-cert": "join:install_peer_cert"},
    ),
    "deploy": (
        "Write what a Kubernetes cluster needs to run a peer's gateway.",
        {"peer": "deploy:deploy_peer"},
    ),
    "apply": "manage:apply",
    "delete": "manage:delete",
    "get": "show:get",
    "describe": "show:describe",
    "status": "show:status",
    "sign": "join:sign",
    "invite": "join:invite",
    "link": "join:link",
    "flows": "observe:flows",
    "dashboard": "observe:dashboard",
    "explain": "explain:explain",
    "demo": "demo:demo",
    "completion": "completion:completion",
}


class _Root(OneLineErrors, LazyGroup):
    """The ``clusterlink`` group: one-line errors, commands built when used."""

    entries = COMMANDS


app = typer.Typer(
    name="clusterlink",
    cls=_Root,
    help="Connect services across sites through mutual-TLS gateways.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings=_SETTINGS,
)


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

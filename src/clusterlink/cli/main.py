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

import click

from clusterlink import __version__
from clusterlink.cli.context import PEER_DIR_ENV, Globals, OneLineErrors, address_option
from clusterlink.cli.lazy import Entry, LazyGroup

__all__ = ["app", "run"]

# The command tree: each is "module:command" under clusterlink.cli, imported when used.
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


@click.group(
    "clusterlink",
    cls=_Root,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.option(
    "--peer-dir",
    type=click.Path(path_type=Path),
    envvar=PEER_DIR_ENV,
    show_envvar=True,
    help="The peer directory whose gateway to manage (from `create peer-cert`, or "
    "`create peer-key` and `install peer-cert`).",
)
@click.option(
    "--admin",
    callback=address_option,
    help="The admin API's HOST:PORT.",
    show_default="from PEER_DIR/gateway.json",
)
@click.version_option(
    __version__, prog_name="clusterlink", message="%(prog)s %(version)s", help="Print the version."
)
@click.pass_context
def app(ctx: click.Context, peer_dir: Path | None, admin: str | None) -> None:
    """Connect services across sites through mutual-TLS gateways."""
    ctx.obj = Globals(peer_dir=peer_dir, admin=admin)


def run() -> None:
    """The console script ``clusterlink`` (and ``python -m clusterlink``)."""
    app.main(prog_name="clusterlink")

"""Command groups whose commands are imported only when they are used.

Building every command of the tree (importing its module, reading its signature, making its
click parameters) costs more than most commands' own work, and a run uses one command. So the
tree is a table of ``"module:function"`` names (see ``main``), and a command's module is
imported, and its click command built, the first time the group is asked for it: to run it,
to complete it, or to list it in ``--help``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import typer
import typer.main
from typer._click.core import Command, Context
from typer.core import TyperGroup

__all__ = ["Entry", "LazyGroup"]

# "module:function" under clusterlink.cli, or a sub-group: (its help, its entries).
Entry = str | tuple[str, Mapping[str, "Entry"]]


class LazyGroup(TyperGroup):
    """A group of ``entries``, each built on first use (and then kept)."""

    entries: Mapping[str, Entry] = {}

    def list_commands(self, ctx: Context) -> list[str]:
        return [*self.commands, *(name for name in self.entries if name not in self.commands)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in self.entries:
            self.commands[cmd_name] = _build(cmd_name, self.entries[cmd_name])
        return self.commands.get(cmd_name)


def _build(name: str, entry: Entry) -> Command:
    if isinstance(entry, str):
        module, _, function = entry.partition(":")
        callback: Any = getattr(importlib.import_module(f"clusterlink.cli.{module}"), function)
        app = typer.Typer()
        app.command(name)(callback)
        return typer.main.get_command(app)
    help_text, entries = entry
    group = LazyGroup(name=name, help=help_text, no_args_is_help=True)
    group.entries = entries
    return group

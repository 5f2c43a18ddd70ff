"""Command groups whose commands are imported only when they are used.

Importing every command's module costs more than most commands' own work, and a run uses one
command. So the tree is a table of ``"module:command"`` names (see ``main``): each names a
``click.Command`` that its module builds with click's decorators, and the module is imported
the first time the group is asked for that command: to run it, to complete it, or to list it
in ``--help``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping

import click

__all__ = ["Entry", "LazyGroup"]

# "module:command" under clusterlink.cli, or a sub-group: (its help, its entries).
Entry = str | tuple[str, Mapping[str, "Entry"]]


class LazyGroup(click.Group):
    """A group of ``entries``, each built on first use (and then kept)."""

    entries: Mapping[str, Entry] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands, *(name for name in self.entries if name not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.entries:
            self.commands[cmd_name] = _build(cmd_name, self.entries[cmd_name])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The ``Commands`` of ``--help``, each with its whole first sentence: click would cut
        them to the terminal's width, and the sentence is all a reader gets to choose by."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _build(name: str, entry: Entry) -> click.Command:
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        command = getattr(importlib.import_module(f"clusterlink.cli.{module}"), attribute)
        if not isinstance(command, click.Command) or command.name != name:
            raise TypeError(f"clusterlink.cli.{entry} is not the click command {name!r}")
        return command
    help_text, entries = entry
    group = LazyGroup(name=name, help=help_text, no_args_is_help=True)
    group.entries = entries
    return group

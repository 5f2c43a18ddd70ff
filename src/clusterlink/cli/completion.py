"""``clusterlink completion bash|zsh|fish``: the script that makes a shell complete our words.

The script is click's own: it calls ``clusterlink`` back with ``_CLUSTERLINK_COMPLETE`` set,
and the root group answers with the commands, options and choices of the words typed so far
(see ``context.OneLineErrors``). Printing the script instead of installing it lets users
choose: ``source <(clusterlink completion bash)`` in a shell, or a file under their
completion folder.
"""

from __future__ import annotations

import click

from clusterlink.cli.context import COMPLETE_VAR

__all__ = ["completion"]


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print a completion script: source <(clusterlink completion bash).

    SHELL is your shell: bash, zsh or fish.
    """
    from click.shell_completion import BashComplete, FishComplete, ShellComplete, ZshComplete

    shells: dict[str, type[ShellComplete]] = {
        "bash": BashComplete,
        "zsh": ZshComplete,
        "fish": FishComplete,
    }
    script = shells[shell](ctx.find_root().command, {}, "clusterlink", COMPLETE_VAR)
    click.echo(script.source(), nl=False)

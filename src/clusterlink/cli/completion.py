"""``clusterlink completion bash|zsh|fish``: the script that makes a shell complete our words.

The script calls ``clusterlink`` back with ``_CLUSTERLINK_COMPLETE`` set, and the root group
answers with the commands, options and choices of the words typed so far (see
``context.OneLineErrors``). Printing the script instead of installing it lets users choose:
``source <(clusterlink completion bash)`` in a shell, or a file under their completion folder.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

__all__ = ["COMPLETE_VAR", "completion"]

COMPLETE_VAR = "_CLUSTERLINK_COMPLETE"


def completion(
    shell: Annotated[Literal["bash", "zsh", "fish"], typer.Argument(help="Your shell.")],
) -> None:
    """Print a completion script: source <(clusterlink completion bash)."""
    from typer._completion_shared import get_completion_script

    typer.echo(
        get_completion_script(prog_name="clusterlink", complete_var=COMPLETE_VAR, shell=shell)
    )

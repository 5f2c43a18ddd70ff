"""What every command shares: the global options, the one error handler, flag checks.

The error contract (DESIGN §6) lives in exactly one place, :class:`OneLineErrors`: any
``ClusterLinkError`` or ``OSError`` that escapes a command becomes one ``error: ...`` line on
stderr and exit status 1. Usage errors stay click's (exit 2). Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from clusterlink.errors import ClusterLinkError

if TYPE_CHECKING:
    from clusterlink.client import AdminClient

__all__ = [
    "Globals",
    "OneLineErrors",
    "address_option",
    "client_of",
    "peer_dir_of",
    "usage_errors",
]

PEER_DIR_ENV = "CLUSTERLINK_PEER_DIR"


@dataclass(frozen=True, slots=True)
class Globals:
    """The options given before the command (``clusterlink --peer-dir DIR get ...``)."""

    peer_dir: Path | None
    admin: str | None


class OneLineErrors(TyperGroup):
    """The root command group: turns our errors into one stderr line and exit status 1."""

    # `ctx` is click's Context; typer only re-exports a subclass of it, and narrowing the
    # parameter type of an override would break substitutability.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # stdout closed by the reader (`| head`): typer exits quietly
        except (ClusterLinkError, OSError) as exc:
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(1) from exc


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror.lower()}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def peer_dir_of(ctx: typer.Context, given: Path | None = None) -> Path:
    """The peer directory: ``given`` (a command's own option), else the global one."""
    globals_ = ctx.find_object(Globals)
    peer_dir = given or (globals_.peer_dir if globals_ else None)
    if peer_dir is None:
        ctx.fail(f"missing --peer-dir: pass --peer-dir DIR or set {PEER_DIR_ENV}")
    return peer_dir


def client_of(ctx: typer.Context) -> AdminClient:
    """A client of the admin API of the gateway that the global options point at."""
    from clusterlink.client import AdminClient

    globals_ = ctx.find_object(Globals)
    admin = globals_.admin if globals_ else None
    return AdminClient.from_peer_dir(peer_dir_of(ctx), admin=admin)


@contextmanager
def usage_errors(flag: str) -> Iterator[None]:
    """Turn a ``ValueError`` from parsing ``flag``'s values into a usage error (exit 2)."""
    try:
        yield
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


def address_option(value: str | None) -> str | None:
    """Option callback: ``HOST:PORT`` or a usage error."""
    from clusterlink.client import parse_address

    if value is not None:
        try:
            parse_address(value)
        except ClusterLinkError as exc:
            raise typer.BadParameter(str(exc)) from None
    return value

"""What every command shares: the global options, the one error handler, flag checks.

The error contract (DESIGN §6) lives in exactly one place, :class:`OneLineErrors`: any
``ClusterLinkError`` or ``OSError`` that escapes a command becomes one ``error: ...`` line on
stderr and exit status 1; a usage error becomes one ``error: ...`` line naming the ``--help``
to read, and exit status 2 (click's own display is a usage dump of several lines, which
scripts and eyes both have to dig through). Anything else is a bug and keeps its traceback.

kubectl users put ``--peer-dir`` and ``--admin`` after the command as often as before it;
:func:`hoist_globals` moves them to the front for the commands that talk to a gateway, so
both orders mean the same.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.exceptions import NoArgsIsHelpError

from clusterlink.errors import ClusterLinkError

if TYPE_CHECKING:
    from clusterlink.client import AdminClient

__all__ = [
    "COMPLETE_VAR",
    "Globals",
    "OneLineErrors",
    "address_option",
    "client_of",
    "hoist_globals",
    "peer_dir_of",
    "usage_errors",
]

PEER_DIR_ENV = "CLUSTERLINK_PEER_DIR"
# A shell asking for completions calls us back with this set (see ``completion``).
COMPLETE_VAR = "_CLUSTERLINK_COMPLETE"


@dataclass(frozen=True, slots=True)
class Globals:
    """The options given before the command (``clusterlink --peer-dir DIR get ...``)."""

    peer_dir: Path | None
    admin: str | None


GLOBAL_OPTIONS = ("--peer-dir", "--admin")

# The commands that talk to a gateway: for them a global option may come anywhere. Others
# (`install peer-cert --peer-dir`, `gateway run --peer-dir`) have an option of that name of
# their own, which must stay where it is.
_MANAGEMENT = frozenset(
    {
        "apply",
        "delete",
        "get",
        "describe",
        "status",
        "invite",
        "link",
        "flows",
        "dashboard",
        "explain",
    }
)
_MANAGEMENT_CREATE = frozenset({"peer", "export", "import", "policy"})


def hoist_globals(args: Sequence[str]) -> list[str]:
    """``args`` with ``--peer-dir``/``--admin`` given after a management command moved first.

    Scanning stops at ``--``; anything not recognised is left exactly where it was, so click
    still reports it.
    """
    args = list(args)
    start = 0
    while start < len(args) and _option_name(args[start]) in GLOBAL_OPTIONS:
        start += 1 if "=" in args[start] else 2
    if start >= len(args):
        return args
    command = args[start]
    is_create = (
        command == "create"
        and args[start + 1 : start + 2]
        and args[start + 1] in (_MANAGEMENT_CREATE)
    )
    if command not in _MANAGEMENT and not is_create:
        return args
    moved: list[str] = []
    rest: list[str] = []
    index = start + 1
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if _option_name(arg) in GLOBAL_OPTIONS:
            takes = 1 if "=" in arg else 2
            moved.extend(args[index : index + takes])
            index += takes
            continue
        rest.append(arg)
        index += 1
    return [*args[:start], *moved, command, *rest]


def _option_name(arg: str) -> str:
    return arg.partition("=")[0] if arg.startswith("--") else arg


class OneLineErrors(click.Group):
    """The root command group: our errors become one stderr line and exit status 1, usage
    errors one line and exit status 2."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        # click's own standalone mode prints a usage dump; the error contract is ours, so
        # click always runs non-standalone (whatever `standalone_mode` a caller passes) and
        # every outcome becomes an exit status here. A shell asking for completions is
        # answered (and exits) inside click, before any parsing.
        args = hoist_globals(sys.argv[1:] if args is None else args)
        try:
            code = super().main(
                args,
                prog_name or "clusterlink",
                complete_var or COMPLETE_VAR,
                standalone_mode=False,
                **extra,
            )
        except NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except click.UsageError as exc:
            click.echo(f"error: {_usage_line(exc)}", err=True)
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            code = exc.exit_code
        except click.Abort:
            click.echo("error: aborted", err=True)
            code = 1
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise  # stdout closed by the reader (`| head`): click exits quietly
        except (ClusterLinkError, OSError) as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(1)


def _usage_line(exc: click.UsageError) -> str:
    """``no such option: --bogus; see `clusterlink status --help```: one line, with where to
    look next."""
    message = " ".join(exc.format_message().split())
    message = message[:1].lower() + message[1:] if message[1:2].islower() else message
    if exc.ctx is None:
        return message
    return f"{message.rstrip('.')}; see `{exc.ctx.command_path} --help`"


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror.lower()}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def peer_dir_of(ctx: click.Context, given: Path | None = None) -> Path:
    """The peer directory: ``given`` (a command's own option), else the global one."""
    globals_ = ctx.find_object(Globals)
    peer_dir = given or (globals_.peer_dir if globals_ else None)
    if peer_dir is None:
        ctx.fail(f"missing --peer-dir: pass --peer-dir DIR or set {PEER_DIR_ENV}")
    return peer_dir


def client_of(ctx: click.Context) -> AdminClient:
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
        raise click.BadParameter(str(exc), param_hint=flag) from None


def address_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Option callback: ``HOST:PORT`` or a usage error. click calls it for an option not
    given too (``None``), so the client (and ``http.client``, ``ssl``) is imported only to
    check a given address."""
    if value is None:
        return value
    from clusterlink.client import parse_address

    try:
        parse_address(value)
    except ClusterLinkError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value

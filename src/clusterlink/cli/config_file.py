"""``gateway run --config FILE``: the flags of a command, written down once in YAML.

A service manager starts the same gateway for months; its settings belong in a file an
operator can read, diff and review, not in a unit's command line. The file's keys are the
command's long flags without ``--`` (``metrics-listen: 127.0.0.1:9090``, ``label: [site=a]``),
so there is nothing new to learn and the ``--help`` page documents both.

The file becomes click's ``default_map`` for the command: every value goes through the same
conversion and checks as the flag would, and a flag given on the command line (or its
environment variable) still wins. An unknown key is a usage error naming it, so a typo is
never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

__all__ = ["load_into_context"]


def load_into_context(
    ctx: click.Context, param: click.Parameter, value: Path | None
) -> Path | None:
    """Eager option callback: read ``value`` into ``ctx.default_map``, keyed by flag."""
    if value is None or ctx.resilient_parsing:
        return value
    flags = _flags_of(ctx, exclude=param.name)
    settings = _read(value)
    defaults: dict[str, Any] = dict(ctx.default_map or {})
    for key, setting in settings.items():
        name = flags.get(str(key))
        if name is None:
            raise click.BadParameter(
                f"{value}: unknown key {key!r}; the keys are the flags of "
                f"`{ctx.command_path}` without '--' (e.g. {next(iter(flags), 'listen')})"
            )
        defaults[name] = _flag_value(setting)
    ctx.default_map = defaults
    return value


def _flags_of(ctx: click.Context, *, exclude: str | None) -> dict[str, str]:
    """``{"metrics-listen": "metrics_listen", ...}``: every long flag of the command."""
    flags: dict[str, str] = {}
    for param in ctx.command.params:
        if param.name in (exclude, "help") or param.name is None:
            continue
        for option in param.opts:
            if option.startswith("--"):
                flags[option[2:]] = param.name
    return flags


def _read(path: Path) -> dict[Any, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"{path}: {(exc.strerror or str(exc)).lower()}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise click.BadParameter(f"{path} is not valid YAML{line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} must hold a mapping of flag: value")
    return data


def _flag_value(setting: Any) -> Any:
    """A repeatable flag may also be written as a mapping (``label: {site: a}``)."""
    if isinstance(setting, dict):
        return [f"{key}={value}" for key, value in setting.items()]
    return setting

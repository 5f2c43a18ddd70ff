"""Log set-up for the gateway: one line per event, as text for people or JSON for machines.

Text lines read ``2026-11-25T19:00:00.123Z INFO  egress  <message>``; the logger name is the
part of the gateway that speaks (``egress``, ``ingress``, ``health``, ``admin``, ...). Logs go
to stderr; nothing is buffered.

JSON lines carry ``time``, ``level``, ``logger`` and ``message``, and for the events an
operator queries (a tunnel opened, refused or closed, a peer turning reachable or not, a
limit hit) the facts as fields of their own: ``event``, ``direction``, ``import``,
``export``, ``peer``, ``client``, ``decision``, ``policy``, ``bytes_up``, ``bytes_down``,
``duration_s``, ``reason``, each only where it applies. The call site passes them with
``extra=fields(...)``; the text format leaves them out, because its message already says the
same in words.

Why the standard library and not structlog: every part of the gateway already logs through
``logging`` (and so do aiohttp and the rate limiter ``log_throttle``), the fields are a fixed
set that one formatter can place, and a second logging pipeline would be one more dependency
for no field we could not carry in ``extra``. Only the names above leave as fields, so a
caller cannot put something into the JSON by accident (a key, a token): what a line may
carry is decided here.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final

__all__ = ["FIELD_NAMES", "fields", "setup_logging"]

_PREFIX = "clusterlink."
_ATTRIBUTE: Final = "clusterlink_fields"  # where ``fields`` puts them on the LogRecord

FIELD_NAMES: Final = (
    "event",
    "direction",
    "import",
    "export",
    "peer",
    "client",
    "decision",
    "policy",
    "bytes_up",
    "bytes_down",
    "duration_s",
    "reason",
)
"""The fields a JSON line may carry beside time, level, logger and message, in this order."""


def fields(
    event: str,
    *,
    direction: str | None = None,
    import_: str | None = None,
    export: str | None = None,
    peer: str | None = None,
    client: str | None = None,
    decision: str | None = None,
    policy: str | None = None,
    bytes_up: int | None = None,
    bytes_down: int | None = None,
    duration_s: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """``extra=`` for a log call: the facts of ``event`` as JSON fields (None: not given).

    Keyword arguments, not a free dict, so a misspelt field is a type error, not a JSON key
    nobody queries.
    """
    given = {
        "event": event,
        "direction": direction,
        "import": import_,
        "export": export,
        "peer": peer,
        "client": client,
        "decision": decision,
        "policy": policy,
        "bytes_up": bytes_up,
        "bytes_down": bytes_down,
        "duration_s": None if duration_s is None else round(duration_s, 6),
        "reason": reason,
    }
    return {_ATTRIBUTE: {key: value for key, value in given.items() if value is not None}}


def _when(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def _who(record: logging.LogRecord) -> str:
    return record.name.removeprefix(_PREFIX)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_when(record)} {record.levelname:<7} {_who(record):<9} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _when(record),
            "level": record.levelname.lower(),
            "logger": _who(record),
        }
        given = getattr(record, _ATTRIBUTE, None)
        if isinstance(given, dict):
            entry.update((name, given[name]) for name in FIELD_NAMES if name in given)
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)  # other libraries: warnings only
    logging.getLogger("clusterlink").setLevel(level.upper())

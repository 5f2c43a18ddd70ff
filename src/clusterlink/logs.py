"""Log set-up for the gateway: one line per event, as text for people or JSON for machines.

Text lines read ``2026-11-25T19:00:00.123Z INFO  egress  <message>``; the logger name is the
part of the gateway that speaks (``egress``, ``ingress``, ``health``, ``admin``, ...). JSON
lines carry the same fields as keys. Logs go to stderr; nothing is buffered.
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["setup_logging"]

_PREFIX = "clusterlink."


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
        entry = {
            "time": _when(record),
            "level": record.levelname.lower(),
            "logger": _who(record),
            "message": record.getMessage(),
        }
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

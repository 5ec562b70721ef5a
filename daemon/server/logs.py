"""Structured logs: one line per event, `key=value` fields (or JSON lines with --log-json).

Call sites log an event name plus fields: `log.info("job_done", extra={"fields": {"job": jid, "steps": 40}})`,
or through `event(log, "job_done", job=jid, steps=40)`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def _fmt_value(v: Any) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' ="\n'):
        return json.dumps(s)
    return s


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [ts, record.levelname.lower(), record.getMessage()]
        for k, v in getattr(record, "fields", {}).items():
            parts.append(f"{k}={_fmt_value(v)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {"ts": record.created, "level": record.levelname.lower(), "event": record.getMessage()}
        d.update(
            {
                k: v if isinstance(v, (int, float, bool, type(None))) else str(v)
                for k, v in getattr(record, "fields", {}).items()
            }
        )
        if record.exc_info:
            d["exception"] = self.formatException(record.exc_info)
        return json.dumps(d)


def setup_logging(
    verbose: bool = False, json_lines: bool = False, stream: Any = None, level: int | None = None
) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root = logging.getLogger("draggan")
    root.handlers[:] = [handler]
    root.setLevel(level if level is not None else (logging.DEBUG if verbose else logging.INFO))
    root.propagate = False

"""Structured logs: one line per event, `key=value` fields (or JSON lines with --log-json).

Call sites log an event name plus fields: `log.info("job_done", extra={"fields": {"job": jid, "steps": 40}})`,
or through `event(log, "job_done", job=jid, steps=40)`.

Field values often come from clients (`hello.client`, a header's `session`, refused values quoted in error
messages), so no value reaches the log raw: a value with a space, `=`, a quote, a backslash or any control or
invisible formatting character (ESC, CR, TAB, DEL, C1 controls, Unicode line separators, bidirectional overrides)
is written as a JSON string literal with those characters as `\\uXXXX` escapes. A line is therefore always one
line, cannot move the cursor or recolour a terminal, and a quoted value decodes with `json.loads`. JSON-lines
output escapes the same characters.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any


def event(logger: logging.Logger, name: str, level: int = logging.INFO, /, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


# Characters json.dumps(ensure_ascii=False) leaves alone but a terminal or log viewer may act on: DEL, C1
# controls, line/paragraph separators, zero-width and bidirectional formatting characters, BOM.
_UNSAFE_AFTER_JSON = re.compile("[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_NEEDS_QUOTES = re.compile('[\\x00-\\x20"=\\\\]|' + _UNSAFE_AFTER_JSON.pattern)


def worth_logging(count: int) -> bool:
    """Throttle for log lines a flood could repeat: the first 10, then every 1000th (with the running count)."""
    return count <= 10 or count % 1000 == 0


def escape_text(s: str) -> str:
    """`s` as a JSON string literal with every control or invisible formatting character escaped."""
    return _UNSAFE_AFTER_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(s, ensure_ascii=False))


def _fmt_value(v: Any) -> str:
    s = str(v)
    if s == "" or _NEEDS_QUOTES.search(s):
        return escape_text(s)
    return s


_CONTROL_IN_TEXT = re.compile("[\x00-\x09\x0b-\x1f" + _UNSAFE_AFTER_JSON.pattern[1:])


def _safe_lines(text: str) -> str:
    """Free text (an event name, a traceback) with control and formatting characters shown as `\\xNN` /
    `\\uXXXX`; only its line breaks stay."""

    def esc(m: re.Match[str]) -> str:
        o = ord(m.group())
        return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"

    return _CONTROL_IN_TEXT.sub(esc, text)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [ts, record.levelname.lower(), _safe_lines(record.getMessage())]
        for k, v in getattr(record, "fields", {}).items():
            parts.append(f"{k}={_fmt_value(v)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + _safe_lines(self.formatException(record.exc_info))
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
        return _UNSAFE_AFTER_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(d))


def setup_logging(
    verbose: bool = False, json_lines: bool = False, stream: Any = None, level: int | None = None
) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else KeyValueFormatter())
    root = logging.getLogger("draggan")
    root.handlers[:] = [handler]
    root.setLevel(level if level is not None else (logging.DEBUG if verbose else logging.INFO))
    root.propagate = False

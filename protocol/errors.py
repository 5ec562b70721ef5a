"""Exceptions shared by the client and the daemon."""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """A message that breaks the protocol; `code` is one of spec.ErrorCode, `field` names the culprit if known."""

    def __init__(self, code: str, message: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    def to_content(self) -> dict[str, Any]:
        content: dict[str, Any] = {"status": "error", "code": self.code, "message": self.message}
        if self.field is not None:
            content["field"] = self.field
        if self.details:
            content["details"] = self.details
        return content


class DaemonError(Exception):
    """The daemon answered a request with an error reply (or a job ended with an error)."""

    def __init__(self, code: str, message: str, content: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.content = content or {}


class DaemonUnreachable(Exception):
    """No daemon answered in time (not running, wrong endpoint, or a wrong secret: the daemon drops those)."""

"""Resumable HTTP downloads with a progress bar and a checksum, for `draggan models pull | add URL`.

The bytes go to `DEST.part` next to the destination. When that file exists, the next attempt asks the server for
the rest (`Range: bytes=N-`, with `If-Range` set to the validator the first response gave, kept in
`DEST.part.json`); a server that answers 200 instead of 206, or whose file changed, starts over. Nothing is moved
to `DEST` here: the caller checks the finished `.part` (checksum, then the safe loaders) and renames it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHUNK = 1 << 16
USER_AGENT = "draggan-studio-models/1"


class DownloadError(Exception):
    """A download that did not complete; `resumable` when the partial file was kept for the next attempt."""

    def __init__(self, message: str, resumable: bool = False):
        super().__init__(message)
        self.resumable = resumable


@dataclass
class Downloaded:
    path: Path  # the finished .part file
    size: int
    sha256: str
    resumed_from: int  # bytes already there when the (last) attempt started; 0 = fresh


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_state(part: Path) -> dict:
    try:
        data = json.loads(_state_path(part).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def discard_partial(dest: Path) -> None:
    part = part_path(dest)
    part.unlink(missing_ok=True)
    _state_path(part).unlink(missing_ok=True)


def partial_size(dest: Path) -> int:
    try:
        return part_path(dest).stat().st_size
    except OSError:
        return 0


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


class ProgressBar:
    """A one-line bar on a terminal; on anything else (a pipe, a log) a line every 10 %."""

    def __init__(self, total: int | None, start: int = 0, stream: IO[str] | None = None, width: int = 30):
        self.total, self.done, self.stream, self.width = total, start, stream or sys.stderr, width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_tenth = -1 if not total else start * 10 // total
        self._last_draw = 0.0
        self._t0, self._start = time.monotonic(), start

    def update(self, n: int) -> None:
        self.done += n
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or (self.total and self.done >= self.total):
                self._last_draw = now
                self.stream.write("\r" + self._line())
                self.stream.flush()
        elif self.total:
            tenth = self.done * 10 // self.total
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.stream.write(self._line() + "\n")
                self.stream.flush()

    def _line(self) -> str:
        rate = (self.done - self._start) / max(time.monotonic() - self._t0, 1e-6)
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            sizes = f"{human_size(self.done)} / {human_size(self.total)}"
            return f"[{bar}] {frac * 100:5.1f}% {sizes} {human_size(int(rate))}/s"
        return f"{human_size(self.done)} {human_size(int(rate))}/s"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + "\n")
            self.stream.flush()


def download(
    url: str,
    dest: Path,
    *,
    expected_size: int | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    progress: IO[str] | None = None,
    on_headers: Callable[[int | None, int], None] | None = None,
) -> Downloaded:
    """Fetch `url` into `part_path(dest)`, resuming what an earlier attempt left; retry a cut `retries` times.

    `on_headers(total_size_or_None, already_have)` is called once the server has answered, before any byte is
    written, so the caller can show the size. Returns the finished partial file with its sha256.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    attempt = 0
    told = False
    while True:
        try:
            have = _attempt(url, part, expected_size, timeout, progress, None if told else on_headers)
            told = True
            break
        except DownloadError as exc:
            told = True
            if not exc.resumable or attempt >= retries:
                raise
            attempt += 1
            print(f"{exc}; resuming (try {attempt} of {retries})", file=progress or sys.stderr)
            time.sleep(min(0.25 * 2**attempt, 8.0))
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    size = part.stat().st_size
    _state_path(part).unlink(missing_ok=True)
    return Downloaded(part, size, digest.hexdigest(), have)


def _attempt(
    url: str,
    part: Path,
    expected_size: int | None,
    timeout: float,
    progress: IO[str] | None,
    on_headers: Callable[[int | None, int], None] | None,
) -> int:
    have = part.stat().st_size if part.exists() else 0
    state = _read_state(part) if have else {}
    if have and state.get("url") != url:
        have, state = 0, {}  # a partial file from another URL: start again
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
        validator = state.get("etag") or state.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: we may already have it all
            total = _total_from_content_range(exc.headers.get("Content-Range"))
            if total == have or (total is None and expected_size == have):
                if on_headers:
                    on_headers(have, have)
                return have
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: the server refused to resume; the partial file was removed", True) from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason})", resumable=True) from None
    with resp:
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html"):
            raise DownloadError(
                f"{url}: the server sent a web page, not a checkpoint (a sign-in or confirmation page?); "
                "download the file in a browser and use `draggan models add FILE`"
            )
        if resp.status == 206 and have:
            start = _start_from_content_range(resp.headers.get("Content-Range"))
            if start != have:
                raise DownloadError(f"{url}: the server resumed at byte {start}, not {have}")
            total = _total_from_content_range(resp.headers.get("Content-Range"))
            mode = "ab"
        else:
            have, mode = 0, "wb"  # 200: the whole file (the server ignored Range, or the file changed)
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is None:
            total = expected_size
        if expected_size is not None and total is not None and total != expected_size:
            raise DownloadError(f"{url}: the server offers {total} bytes, the catalogue says {expected_size}")
        new_state = {
            "url": url,
            "etag": resp.headers.get("ETag") or "",
            "last_modified": resp.headers.get("Last-Modified") or "",
            "total": total,
        }
        if mode == "ab" and state:
            new_state = state | {"total": total}
        _state_path(part).write_text(json.dumps(new_state))
        if on_headers:
            on_headers(total, have)
        bar = ProgressBar(total, have, progress)
        got = have
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as exc:  # a reset, a timeout, a short read
                        f.flush()
                        os.fsync(f.fileno())
                        raise DownloadError(
                            f"{url}: the connection broke after {human_size(got)} ({type(exc).__name__})", True
                        ) from None
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if total is not None and got != total:
        raise DownloadError(f"{url}: the connection closed after {got} of {total} bytes", resumable=True)
    return have


def _start_from_content_range(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0]) if value else None
    except (IndexError, ValueError):
        return None


def _total_from_content_range(value: str | None) -> int | None:
    try:
        total = value.rsplit("/", 1)[1] if value else "*"
        return int(total) if total != "*" else None
    except (IndexError, ValueError):
        return None

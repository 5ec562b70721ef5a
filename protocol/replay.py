"""Replay protection for the daemon: a message is accepted once, and only while its `header.date` is fresh.

The rule (PROTOCOL.md §5): `header.date` must be an RFC 3339 / ISO 8601 UTC time within ±`max_skew` seconds
(default 300) of the receiver's clock, and a `msg_id` already accepted while its date was inside that window is
refused. A message's id therefore only has to be remembered until its date leaves the window: after that the
date check refuses any copy of it. The memory is bounded (`capacity` ids): when it is full the ids with the
oldest dates are forgotten and the window's lower edge moves up past them, so a forgotten id can still never be
accepted twice (its date is now too old). Honest clients, whose dates are "now", never notice.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from .errors import ProtocolError
from .spec import ErrorCode

DEFAULT_MAX_SKEW = 300.0  # seconds either side of the receiver's clock
DEFAULT_CAPACITY = 100_000  # msg_ids remembered at most (about 20 MB with uuid4 hex ids, 30 MB with 128-char ones)

_DATE_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_date(value: str) -> float:
    """Seconds since the epoch for an RFC 3339 time (`2026-01-02T03:04:05.678Z`; an offset such as `+01:00`
    is accepted too); ValueError for anything else."""
    m = _DATE_RE.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not an RFC 3339 UTC time: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    frac = m.group(7) or ""
    micro = int((frac + "000000")[:6])
    tz = timezone.utc
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if offset >= timedelta(hours=24):
            raise ValueError(f"offset out of range in {value!r}")
        tz = timezone(offset if m.group(9) == "+" else -offset)
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).timestamp()


class ReplayError(ProtocolError):
    """A message refused by replay protection (`field` is `msg_id` or `date`)."""


class ReplayGuard:
    """Remembers accepted msg_ids until their dates leave the ±max_skew window; not thread-safe."""

    def __init__(
        self,
        max_skew: float = DEFAULT_MAX_SKEW,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_skew = float(max_skew)
        self.capacity = max(1, int(capacity))
        self.clock = clock
        self._seen: dict[str, float] = {}  # msg_id -> its date (epoch seconds)
        self._by_date: list[tuple[float, str]] = []  # min-heap of (date, msg_id)
        self.floor = float("-inf")  # dates at or below this are refused: their ids may have been forgotten

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, msg_id: str, date: str) -> None:
        """Accept (and remember) the message or raise ProtocolError (`bad_header` for a date that is not a
        date, ReplayError `replay_rejected` for a stale date or a reused id)."""
        try:
            ts = parse_date(date)
        except (ValueError, OverflowError):
            raise ProtocolError(
                ErrorCode.BAD_HEADER,
                f"header.date must be an ISO 8601 UTC time such as 2026-01-02T03:04:05.678Z, got {date!r}",
                field="date",
            ) from None
        now = self.clock()
        self._expire(now)
        skew = ts - now
        if abs(skew) > self.max_skew:
            raise ReplayError(
                ErrorCode.REPLAY_REJECTED,
                f"header.date {date} is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the daemon's clock "
                f"(at most {self.max_skew:.0f} s allowed): an old or replayed message, or a wrong clock on one side",
                field="date",
                daemon_date=_iso(now),
                max_skew=self.max_skew,
            )
        if msg_id in self._seen:
            raise ReplayError(
                ErrorCode.REPLAY_REJECTED,
                "this msg_id was already used: a replayed message (a client must send a new msg_id every time)",
                field="msg_id",
            )
        if ts <= self.floor:
            raise ReplayError(
                ErrorCode.REPLAY_REJECTED,
                f"header.date {date} is older than the oldest message the daemon still remembers (it is flooded "
                "with messages); send it again with a fresh date",
                field="date",
                daemon_date=_iso(now),
            )
        self._seen[msg_id] = ts
        heapq.heappush(self._by_date, (ts, msg_id))
        while len(self._seen) > self.capacity:
            old_ts, old_id = heapq.heappop(self._by_date)
            self._seen.pop(old_id, None)
            self.floor = max(self.floor, old_ts)

    def _expire(self, now: float) -> None:
        edge = now - self.max_skew  # a date below this is refused by the date check anyway
        heap = self._by_date
        while heap and heap[0][0] < edge:
            _, old_id = heapq.heappop(heap)
            self._seen.pop(old_id, None)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

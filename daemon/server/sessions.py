"""Editing sessions: who owns them, what they hold, the undo history, and the caps that bound memory.

A session is created by open_session (its pixels are counted against the caps at once, before preparation),
filled in on the worker thread (model, prepared region or seed image), and mutated only by its own jobs, one at
a time. The store is shared by the socket thread and the worker, so every method takes the store's lock.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from draggan_protocol.errors import ProtocolError
from draggan_protocol.spec import ErrorCode

MAX_HISTORY = 32


@dataclass(frozen=True)
class Look:
    """How a state's picture is made from the layer (PROTOCOL.md §6, drag, 1.1): the `output` mode, every pair
    dragged since the fit (`focus`, model pixels: the motion is limited around them) and the `new_content` share
    of unexplained appearance change (None = the engine's default)."""

    output: str = "transfer"
    focus: tuple[tuple[float, float, float, float], ...] = ()
    new_content: float | None = None


@dataclass
class EditState:
    """One point in a session's history: a latent, the generator it belongs to (PTI may tune a copy), the
    prepared region whose mask/selection applies, and the rendered image once known."""

    ws: torch.Tensor
    generator: Any
    prepared: Any | None = None
    image: torch.Tensor | None = None  # [1, 3, R, R] render of ws, cached
    drafts: dict[int, torch.Tensor] = field(default_factory=dict)  # drafts of ws by block (draft previews compare)
    handles: list[tuple[float, float]] | None = None  # last handle positions (layer coordinates)
    look: Look = Look()  # how the drag that made this state asked for its picture


class FrameStore:
    """The frames one drag keeps (PROTOCOL.md §6, drag `frames`): each the raw RGBA8 pixels of the session's
    changed rectangle, zlib-compressed, within a byte budget.

    A frame is labelled by `step`, the number of latent updates the picture shows (0 = the drag's start); one is
    kept for every step that is a multiple of `every`, and the final picture (the result) always. When a frame
    would take the store over `budget` bytes, every other kept frame is dropped (the first stays) and `every`
    doubles, so the frames stay evenly spaced; a store never holds more than `budget` bytes, or two frames
    when one alone is bigger than the budget. Written by the worker, read by the socket thread: one lock.
    """

    def __init__(self, every: int, budget: int, rect: tuple[int, int, int, int], output: str) -> None:
        self.every = max(1, int(every))
        self.asked_every = self.every
        self.budget = max(1, int(budget))
        self.rect = tuple(int(v) for v in rect)
        self.output = output
        self.frames: list[tuple[int, bool, bytes]] = []  # (step, final, zlib of RGBA8 rows)
        self.bytes = 0
        self.thinned = 0  # how often every other frame was dropped
        self.lock = threading.Lock()

    @property
    def frame_bytes(self) -> int:
        return 4 * self.rect[2] * self.rect[3]

    def wants(self, step: int) -> bool:
        """Whether a frame of `step` would be kept now (so the caller can skip making one that would not)."""
        return step % self.every == 0

    def add(self, step: int, rgba: np.ndarray, final: bool = False) -> bool:
        """Keep the frame of `step` (RGBA8, the rectangle's size); the final frame is always kept. Returns
        whether it was."""
        w, h = self.rect[2], self.rect[3]
        if rgba.shape != (h, w, 4) or rgba.dtype != np.uint8:
            raise ValueError(f"a frame must be {w}x{h} RGBA8, got {rgba.shape} {rgba.dtype}")
        packed = zlib.compress(np.ascontiguousarray(rgba).tobytes(), 1)
        with self.lock:
            if final and self.frames and self.frames[-1][0] == step:
                self._drop(len(self.frames) - 1)  # the same latent: the final picture replaces it
            while self.frames and self.bytes + len(packed) > self.budget and len(self.frames) > 1:
                self._thin()
            if not final and (not self.wants(step) or (self.frames and self.bytes + len(packed) > self.budget)):
                return False
            self.frames.append((int(step), bool(final), packed))
            self.bytes += len(packed)
            return True

    def _drop(self, i: int) -> None:
        self.bytes -= len(self.frames[i][2])
        del self.frames[i]

    def _thin(self) -> None:
        kept = [f for i, f in enumerate(self.frames) if i % 2 == 0 or f[1]]
        self.frames = kept
        self.bytes = sum(len(f[2]) for f in kept)
        self.every *= 2
        self.thinned += 1

    def __len__(self) -> int:
        with self.lock:
            return len(self.frames)

    def read(self, start: int, count: int) -> list[tuple[int, bool, bytes]]:
        """Frames start … start+count−1 as (step, final, raw RGBA8 bytes)."""
        with self.lock:
            chosen = self.frames[start : start + count]
        return [(step, final, zlib.decompress(packed)) for step, final, packed in chosen]

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": len(self.frames),
                "every": self.every,
                "asked_every": self.asked_every,
                "thinned": self.thinned,
                "bytes_kept": self.bytes,
                "budget_bytes": self.budget,
                "output": self.output,
            }


@dataclass
class Session:
    session_id: str
    owner: bytes  # routing identity of the client that opened it
    model_name: str
    source: str  # "layer" | "seed"
    width: int
    height: int
    offset: tuple[int, int]
    name: str = ""
    layer: np.ndarray | None = None  # [H, W, 4] uint8 RGBA (layer sessions; seed sessions once rendered)
    selection: np.ndarray | None = None
    region: tuple[int, int, int, int] | None = None
    seed: int = 0
    psi: float = 0.7
    generator: Any = None  # the model's generator (shared, frozen)
    prepared: Any = None  # PreparedRegion for layer sessions
    resolution: int = 0
    history: list[EditState] = field(default_factory=list)
    inversion: dict[str, Any] | None = None  # stages of the last inversion
    frames: FrameStore | None = None  # the frames the last drag kept (None: it kept none)
    ready: bool = False  # preparation finished
    active_job: str | None = None  # invert/drag job queued or running on this session
    pending_tasks: int = 0  # open/result tasks queued or running
    closing: bool = False
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def inverted(self) -> bool:
        return bool(self.history)

    @property
    def busy(self) -> bool:
        return self.active_job is not None or self.pending_tasks > 0

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def push(self, state: EditState) -> None:
        self.history.append(state)
        if len(self.history) > MAX_HISTORY:
            del self.history[1]  # keep the initial state: reset goes back to it

    def current(self) -> EditState | None:
        return self.history[-1] if self.history else None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "session_id": self.session_id,
            "model": self.model_name,
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "offset": list(self.offset),
            "resolution": self.resolution,
            "inverted": self.inverted,
            "history_depth": max(0, len(self.history) - 1),
            "busy": self.busy,
        }
        if self.prepared is not None:
            m = self.prepared.map
            d["region"] = list(m.region)
            d["crop"] = [m.x0, m.y0, m.side, m.side]
        return d


class SessionStore:
    def __init__(self, max_sessions: int, max_per_client: int, max_total_pixels: int) -> None:
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client
        self.max_total_pixels = max_total_pixels
        self.sessions: dict[str, Session] = {}
        self.lock = threading.RLock()

    @property
    def total_pixels(self) -> int:
        return sum(s.pixels for s in self.sessions.values())

    def create(self, owner: bytes, **fields: Any) -> Session:
        """Reserve a session, or raise SESSION_LIMIT / PIXEL_LIMIT with numbers a person can act on."""
        with self.lock:
            if len(self.sessions) >= self.max_sessions:
                raise ProtocolError(
                    ErrorCode.SESSION_LIMIT,
                    f"the daemon already holds {len(self.sessions)} sessions (limit {self.max_sessions}); "
                    "close some first",
                )
            mine = sum(1 for s in self.sessions.values() if s.owner == owner)
            if mine >= self.max_per_client:
                raise ProtocolError(
                    ErrorCode.SESSION_LIMIT,
                    f"this client already holds {mine} sessions (limit {self.max_per_client}); close some first",
                )
            s = Session(session_id=uuid.uuid4().hex, owner=owner, **fields)
            total = self.total_pixels + s.pixels
            if total > self.max_total_pixels:
                raise ProtocolError(
                    ErrorCode.PIXEL_LIMIT,
                    f"open sessions would hold {total / 1e6:.1f} megapixels (limit {self.max_total_pixels / 1e6:.1f}); "
                    "close sessions or send a smaller layer or region",
                )
            self.sessions[s.session_id] = s
            return s

    def fair_victim(self, owner: bytes) -> Session | None:
        """When the daemon is full: the session to free so that `owner` gets its fair share, else None.

        A fair share is max_sessions divided among the clients holding sessions (the newcomer counted). A client
        below it may take the least recently used idle session of the client holding the most, if that one holds
        more than its share; so a few clients (or one client under several connections) can fill the daemon
        only until someone else needs a place, and no one waits for an idle timeout of an hour.
        """
        with self.lock:
            if len(self.sessions) < self.max_sessions:
                return None
            held: dict[bytes, list[Session]] = {}
            for s in self.sessions.values():
                if not s.closing:
                    held.setdefault(s.owner, []).append(s)
            share = max(self.max_sessions // len(set(held) | {owner}), 1)
            if len(held.get(owner, [])) >= share:
                return None
            biggest = max(held, key=lambda o: len(held[o]), default=None)
            if biggest is None or biggest == owner or len(held[biggest]) <= share:
                return None
            idle = [s for s in held[biggest] if not s.busy]
            return min(idle, key=lambda s: s.last_used) if idle else None

    def get_owned(self, session_id: str, owner: bytes) -> Session:
        with self.lock:
            s = self.sessions.get(session_id)
            if s is None or s.closing:
                raise ProtocolError(
                    ErrorCode.SESSION_NOT_FOUND, f"no session {session_id!r} (closed or expired)", field="session_id"
                )
            if s.owner != owner:
                raise ProtocolError(ErrorCode.FORBIDDEN, "this session belongs to another client", field="session_id")
            s.touch()
            return s

    def remove(self, session_id: str) -> Session | None:
        with self.lock:
            return self.sessions.pop(session_id, None)

    def owned_by(self, owner: bytes) -> list[Session]:
        with self.lock:
            return [s for s in self.sessions.values() if s.owner == owner]

    def idle(self, older_than: float) -> list[Session]:
        now = time.monotonic()
        with self.lock:
            return [s for s in self.sessions.values() if not s.busy and now - s.last_used > older_than]

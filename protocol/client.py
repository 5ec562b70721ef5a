"""The client library that plugins and scripts use: stdlib + msgpack (+ pyzmq when present).

Two ways to use it:

Blocking, for scripts::

    with Client.connect() as c:                      # reads the connection file
        s = c.open_seed_session(seed=3)
        done = c.drag(s["session_id"], [(10, 20, 30, 20)], on_progress=lambda m: print(m.content["step"]))
        img = c.get_result(s["session_id"])          # Image(width, height, offset, rect, pixels)

Non-blocking, for GUI event loops (call `poll()` from a timer; it also sends the heartbeats)::

    req = c.send("drag", {...})                      # returns the request's msg_id at once
    for msg in c.poll():                             # replies and events; msg.parent == req for this job
        ...

Every message is signed with the connection file's secret; a daemon that does not answer (not running, wrong
secret) surfaces as DaemonUnreachable after the timeout, never as a hang. With the pure-Python transport a
refused connection raises TransportError (an OSError) already when the Client is built. A missing connection
file raises FileNotFoundError from `Client.connect()`: no daemon is running.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import parameters
from .connection import ConnectionInfo, read_connection_file
from .errors import DaemonError, DaemonUnreachable, ProtocolError
from .framing import Message, decode, encode, make_header
from .jobs import LOST, LOST_AFTER, REFUSED, Job
from .signing import Signer, plain_credentials
from .spec import DEFAULT_LIMITS
from .transport import Transport, open_transport

log = logging.getLogger("draggan_protocol.client")

ProgressCallback = Callable[[Message], None]
Point = Sequence[float]  # (handle_x, handle_y, target_x, target_y) in layer pixels


@dataclass
class Image:
    """Pixels returned by the daemon. `rect` is (x, y, w, h) in layer coordinates; `offset` is where the top-left
    pixel goes in the document (layer offset + rect origin)."""

    width: int
    height: int
    format: str
    offset: tuple[int, int]
    rect: tuple[int, int, int, int]
    pixels: bytes


@dataclass
class Frame(Image):
    """One frame a drag kept (get_frames): `step` drag steps ran before its picture (0 = the drag's start);
    `final` marks the result's picture (the last frame)."""

    step: int = 0
    final: bool = False


class Client:
    """A DEALER-side connection to the daemon. Not thread-safe: use it from one thread."""

    def __init__(
        self,
        endpoint: str,
        key: bytes | str,
        *,
        curve: tuple[bytes, bytes, bytes] | None = None,
        transport: Transport | None = None,
        client_name: str = "draggan-protocol",
        heartbeat_interval: float = 5.0,
        transport_kind: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = uuid.uuid4().hex
        self.client_name = client_name
        self.signer = Signer(key)
        self.transport = transport or open_transport(
            endpoint,
            identity=self.client_id.encode("ascii"),
            curve=curve,
            plain=None if curve else plain_credentials(key),
            prefer=transport_kind,
        )
        self.heartbeat_interval = heartbeat_interval
        self._inbox: deque[Message] = deque(maxlen=4096)  # unclaimed messages; bounded for scripts that never poll
        self._last_tx = 0.0
        self.last_rx: float | None = None  # monotonic time of the last message from the daemon
        self.daemon_info: dict[str, Any] | None = None
        self._heartbeats: set[str] = set()
        self.limits: dict[str, Any] | None = None  # the daemon's, once it said hello (None: the spec's defaults)
        self._job_started: dict[str, float] = {}  # request msg_id -> when the job was sent (for silence)

    # ------------------------------------------------------------------ construction
    @classmethod
    def connect(cls, path: str | Path | None = None, **kwargs: Any) -> Client:
        """A client for the daemon described by the connection file (default location when `path` is None)."""
        info = read_connection_file(path)
        return cls.from_info(info, **kwargs)

    @classmethod
    def from_info(cls, info: ConnectionInfo, **kwargs: Any) -> Client:
        return cls(info.endpoint, info.key_bytes, curve=info.curve_tuple(), **kwargs)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ low level
    def send(self, msg_type: str, content: dict[str, Any] | None = None, buffers: Sequence[Any] = ()) -> str:
        """Sign and send one request; returns its msg_id (replies and job events carry it as `parent`)."""
        header = make_header(msg_type, self.client_id)
        frame_bytes = (self.limits or {}).get("max_frame_bytes", DEFAULT_LIMITS["max_frame_bytes"])
        self.transport.send_multipart(encode(header, content or {}, list(buffers), self.signer, frame_bytes))
        self._last_tx = time.monotonic()
        return header["msg_id"]

    def _receive(self, timeout: float | None) -> Message | None:
        frames = self.transport.recv_multipart(timeout)
        if frames is None:
            return None
        try:
            msg = decode(frames, self.signer, self.limits)
        except ProtocolError as exc:
            log.warning("dropping a malformed message from the daemon: %s", exc)
            return None
        if msg.msg_type == "hello_reply" and isinstance(msg.content.get("limits"), dict):
            self.adopt_limits(msg.content["limits"])  # signed: the daemon's own, e.g. a larger --max-frame-bytes
        self.last_rx = time.monotonic()
        if msg.msg_type == "heartbeat_reply" and msg.parent in self._heartbeats:
            self._heartbeats.discard(msg.parent)
            return None
        return msg

    def adopt_limits(self, limits: dict[str, Any]) -> None:
        """Take the daemon's announced limits (hello_reply.limits) for decoding and for the transport's caps."""
        self.limits = dict(limits)
        set_limits = getattr(self.transport, "set_limits", None)
        if set_limits is not None:
            set_limits(self.limits)

    def heartbeat_if_due(self) -> None:
        if time.monotonic() - self._last_tx >= self.heartbeat_interval:
            self._heartbeats.add(self.send("heartbeat"))
            if len(self._heartbeats) > 64:  # replies never came; keep the set bounded
                self._heartbeats.clear()

    def poll(self, timeout: float = 0.0) -> list[Message]:
        """Everything that has arrived (replies and events), waiting at most `timeout` seconds for the first.

        Also sends a heartbeat when one is due, so calling this from a GUI timer keeps the client's sessions alive.
        """
        self.heartbeat_if_due()
        out = list(self._inbox)
        self._inbox.clear()
        if out:
            timeout = 0.0
        deadline = time.monotonic() + timeout
        while True:
            msg = self._receive(max(0.0, deadline - time.monotonic()))
            if msg is not None:
                out.append(msg)
                deadline = 0.0  # drain what is already there, then return
                continue
            if out or time.monotonic() >= deadline:
                return out

    def alive(self, within: float | None = None) -> bool:
        """Whether the daemon said anything recently (default: three heartbeat intervals). For GUIs that poll:
        a daemon that stopped answering heartbeats is gone, and the GUI can say so instead of waiting."""
        return self.daemon_silent_for() <= (3 * self.heartbeat_interval if within is None else within)

    def daemon_silent_for(self) -> float:
        """Seconds since the daemon last said anything (inf when it never did)."""
        return float("inf") if self.last_rx is None else time.monotonic() - self.last_rx

    def wait_for(self, match: Callable[[Message], bool], timeout: float) -> Message:
        """Block until a message satisfying `match` arrives; others are kept for later `poll()` calls."""
        for i, msg in enumerate(self._inbox):
            if match(msg):
                del self._inbox[i]
                return msg
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DaemonUnreachable(
                    f"no answer from the daemon at {self.endpoint} within {timeout:.0f} s "
                    "(is it running? does the connection file's secret match?)"
                )
            self.heartbeat_if_due()
            msg = self._receive(min(left, self.heartbeat_interval))
            if msg is None:
                continue
            if match(msg):
                return msg
            self._inbox.append(msg)

    def request(
        self, msg_type: str, content: dict[str, Any] | None = None, buffers: Sequence[Any] = (), timeout: float = 30.0
    ) -> Message:
        """Send a request and return its reply; an error reply raises DaemonError."""
        msg_id = self.send(msg_type, content, buffers)
        reply = self.wait_for(
            lambda m: m.parent == msg_id and (m.msg_type.endswith("_reply") or m.msg_type == "error"), timeout
        )
        if reply.is_error:
            raise DaemonError(reply.content.get("code", "unknown"), reply.content.get("message", ""), reply.content)
        return reply

    # ------------------------------------------------------------------ jobs
    def start_job(
        self,
        msg_type: str,
        content: dict[str, Any],
        buffers: Sequence[Any] = (),
        *,
        fit_first: bool = False,
        max_steps: int = 0,
        lost_after: float | None = None,
    ) -> Job:
        """Send the request that starts a job and return its tracker (non-blocking; drive it with `follow`).

        `lost_after` defaults to four heartbeat intervals (at least LOST_AFTER): the daemon answers every heartbeat
        within milliseconds, even while it computes."""
        limit = lost_after if lost_after is not None else max(LOST_AFTER, 4 * self.heartbeat_interval)
        job = Job(msg_type, fit_first=fit_first, max_steps=max_steps, lost_after=limit)
        job.start(self.send, msg_type, content, buffers)
        self._job_started[job.request_id or ""] = time.monotonic()
        return job

    def follow(self, job: Job, timeout: float = 0.0) -> list[Message]:
        """The job's messages that have arrived, waiting at most `timeout` s for the first; other messages are kept
        for `poll()`. Sends heartbeats, and ends the job LOST when the daemon has been silent too long."""
        self.heartbeat_if_due()
        mine: list[Message] = []
        kept: list[Message] = []
        for m in self._inbox:
            (mine if job.handle(m, self.send) else kept).append(m)
        self._inbox.clear()
        self._inbox.extend(kept)
        deadline = time.monotonic() + (0.0 if mine else timeout)
        while not job.finished:
            msg = self._receive(max(0.0, deadline - time.monotonic()))
            if msg is None:
                if time.monotonic() >= deadline:
                    break
                continue
            if job.handle(msg, self.send):
                mine.append(msg)
                deadline = 0.0  # drain what is already there, then return
            else:
                self._inbox.append(msg)
        started = self._job_started.get(job.request_id or "", time.monotonic())
        job.check(min(self.daemon_silent_for(), time.monotonic() - started))
        if job.finished:
            self._job_started.pop(job.request_id or "", None)
        return mine

    def iter_job(
        self,
        msg_type: str,
        content: dict[str, Any],
        buffers: Sequence[Any] = (),
        silence_timeout: float | None = None,
        job: Job | None = None,
    ) -> Iterator[Message]:
        """Start a job and yield its messages (reply, job_queued, progress, ...) up to and including job_done.

        A refused request raises DaemonError, a daemon that stops answering for `silence_timeout` s (default: see
        `start_job`) DaemonUnreachable. Interrupting the iteration (KeyboardInterrupt, or closing the generator
        early) cancels the job. Pass `job` (from `start_job`, not yet followed) to read its fraction and words."""
        job = job or self.start_job(msg_type, content, buffers, lost_after=silence_timeout)
        try:
            while not job.finished:
                for msg in self.follow(job, 0.25):
                    if job.state == REFUSED and msg.msg_type != "job_done":
                        break
                    yield msg
            if job.state == REFUSED and not job.result:  # the request itself was refused
                raise DaemonError(job.error_code or "unknown", str(job.refusal.get("message", "")), job.refusal)
            if job.state == LOST:
                raise DaemonUnreachable(job.error)
        finally:
            if not job.finished:
                self._cancel_quietly(job)

    def _cancel_quietly(self, job: Job) -> None:
        try:
            if job.job_id is not None:
                self.request("cancel", {"job_id": job.job_id}, timeout=5.0)
            end = time.monotonic() + 30.0
            while not job.finished and time.monotonic() < end:
                self.follow(job, 0.25)
        except (DaemonError, DaemonUnreachable):
            pass

    def run_job(
        self,
        msg_type: str,
        content: dict[str, Any],
        buffers: Sequence[Any] = (),
        on_progress: ProgressCallback | None = None,
        silence_timeout: float | None = None,
        job: Job | None = None,
    ) -> dict[str, Any]:
        """Run a job to the end; returns job_done's content; a failed job raises DaemonError."""
        job = job or self.start_job(msg_type, content, buffers, lost_after=silence_timeout)
        for msg in self.iter_job(msg_type, content, buffers, job=job):
            if on_progress is not None and msg.msg_type in ("progress", "job_queued"):
                on_progress(msg)
        if job.state == REFUSED:
            raise DaemonError(job.error_code or "internal_error", job.result.get("message", "job failed"), job.result)
        return job.result

    # ------------------------------------------------------------------ operations (blocking)
    def hello(self, timeout: float = 10.0) -> dict[str, Any]:
        self.daemon_info = self.request("hello", {"client": self.client_name}, timeout=timeout).content
        return self.daemon_info

    def list_models(self) -> list[dict[str, Any]]:
        return self.request("list_models").content["models"]

    def status(self) -> dict[str, Any]:
        return self.request("status").content

    def open_layer_session(
        self,
        pixels: bytes,
        width: int,
        height: int,
        *,
        offset: tuple[int, int] = (0, 0),
        format: str = "RGBA8",
        selection: bytes | None = None,
        region: tuple[int, int, int, int] | None = None,
        model: str | None = None,
        name: str = "",
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Upload a layer (RGBA8/BGRA8, straight alpha, row-major) and open an editing session on it."""
        return self.request(
            "open_session",
            *layer_session_request(pixels, width, height, offset, format, selection, region, model, name),
            timeout=timeout,
        ).content

    def open_seed_session(
        self, seed: int = 0, *, model: str | None = None, psi: float = 0.7, offset: tuple[int, int] = (0, 0)
    ) -> dict[str, Any]:
        return self.request("open_session", seed_session_request(seed, model, psi, offset), timeout=60.0).content

    def invert(
        self,
        session_id: str,
        preset: str = "fast",
        pti: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        return self.run_job("invert", invert_request(session_id, preset, pti), on_progress=on_progress)

    def drag(
        self,
        session_id: str,
        points: Sequence[Point],
        *,
        mask: bytes | None = None,
        params: dict[str, Any] | None = None,
        preview_every: int = parameters.default("preview_every"),
        preview_seconds: float | None = None,
        output: str | None = None,
        on_progress: ProgressCallback | None = None,
        frames: int | None = None,
        frames_max_bytes: int | None = None,
        preview_detail: str | None = None,
    ) -> dict[str, Any]:
        """Drag handles to targets; returns job_done's content (state, steps, arrival fields). Blocks until done.

        `frames` k keeps a frame every k steps (and the result's), fetched afterwards with `get_frames`."""
        content, buffers = drag_request(
            session_id,
            points,
            mask,
            params,
            preview_every,
            preview_seconds,
            output,
            frames=frames,
            frames_max_bytes=frames_max_bytes,
            preview_detail=preview_detail,
        )
        return self.run_job("drag", content, buffers, on_progress=on_progress)

    def suggest_models(
        self, session_id: str, steps: int = 30, on_progress: ProgressCallback | None = None
    ) -> list[dict[str, Any]]:
        """Every model the daemon serves, fitted briefly to the session's layer: the ranking, best first."""
        return self.run_job("suggest_models", suggest_request(session_id, steps), on_progress=on_progress)["ranking"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("cancel", {"job_id": job_id}).content

    def undo(self, session_id: str) -> dict[str, Any]:
        return self.request("undo", {"session_id": session_id}).content

    def reset(self, session_id: str) -> dict[str, Any]:
        return self.request("reset", {"session_id": session_id}).content

    def get_result(
        self,
        session_id: str,
        area: str = "layer",
        format: str = "RGBA8",
        timeout: float = 120.0,
        output: str | None = None,
    ) -> Image:
        reply = self.request("get_result", result_request(session_id, area, format, output), timeout=timeout)
        return image_from_message(reply)

    def get_frames(
        self,
        session_id: str,
        format: str = "RGBA8",
        start: int = 0,
        count: int | None = None,
        timeout: float = 60.0,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> list[Frame]:
        """The frames the session's last drag kept (all of them by default), fetched in as many get_frames
        replies as the daemon's reply budget asks for. `on_chunk(received, total)` after each reply."""
        out: list[Frame] = []
        at: int | None = start
        while at is not None and (count is None or len(out) < count):
            want = None if count is None else count - len(out)
            reply = self.request("get_frames", frames_request(session_id, at, want, format), timeout=timeout)
            out.extend(frames_from_message(reply))
            if on_chunk is not None:
                on_chunk(len(out), int(reply.content["total"]) - start)
            at = reply.content.get("next")
        return out

    def close_session(self, session_id: str) -> dict[str, Any]:
        return self.request("close_session", {"session_id": session_id}).content

    def shutdown(self) -> dict[str, Any]:
        return self.request("shutdown").content


# ---------------------------------------------------------------------- request builders (for the poll API too)
def layer_session_request(
    pixels: bytes,
    width: int,
    height: int,
    offset: tuple[int, int] = (0, 0),
    format: str = "RGBA8",
    selection: bytes | None = None,
    region: tuple[int, int, int, int] | None = None,
    model: str | None = None,
    name: str = "",
) -> tuple[dict[str, Any], list[Any]]:
    """(content, buffers) of an open_session request for a layer; `selection` is A8 (255 = selected)."""
    content: dict[str, Any] = {
        "source": "layer",
        "layer": {"width": width, "height": height, "format": format, "offset": list(offset), "buffer": 0},
        "name": name,
    }
    buffers: list[Any] = [pixels]
    if selection is not None:
        content["selection"] = {"format": "A8", "buffer": 1}
        buffers.append(selection)
    if region is not None:
        content["region"] = [int(v) for v in region]
    if model:
        content["model"] = model
    return content, buffers


def seed_session_request(
    seed: int, model: str | None = None, psi: float | None = 0.7, offset: tuple[int, int] = (0, 0)
) -> dict[str, Any]:
    """The content of an open_session request for the model's own picture number `seed` (psi None: the daemon's)."""
    content: dict[str, Any] = {"source": "seed", "seed": int(seed), "offset": [int(v) for v in offset]}
    if psi is not None:
        content["psi"] = float(psi)
    if model:
        content["model"] = model
    return content


def invert_request(session_id: str, preset: str = "fast", pti: bool | None = None) -> dict[str, Any]:
    """The content of an invert (fit) request."""
    content: dict[str, Any] = {"session_id": session_id, "preset": str(preset)}
    if pti is not None:
        content["pti"] = bool(pti)
    return content


def result_request(
    session_id: str, area: str = "layer", format: str = "RGBA8", output: str | None = None
) -> dict[str, Any]:
    """The content of a get_result request: `area` layer (the whole layer) or changed (the changed rectangle)."""
    content: dict[str, Any] = {"session_id": session_id, "area": area, "format": format}
    if output is not None:
        content["output"] = output
    return content


def suggest_request(session_id: str, steps: int = 30) -> dict[str, Any]:
    """The content of a suggest_models request: fit the session's layer briefly into every model, best first."""
    return {"session_id": session_id, "steps": int(steps)}


def drag_request(
    session_id: str,
    points: Sequence[Point],
    mask: bytes | None = None,
    params: dict[str, Any] | None = None,
    preview_every: int = parameters.default("preview_every"),
    preview_seconds: float | None = None,
    output: str | None = None,
    invert_preset: str | None = None,
    invert_params: dict[str, Any] | None = None,
    frames: int | None = None,
    frames_max_bytes: int | None = None,
    preview_detail: str | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """(content, buffers) of a drag request; `mask` is A8 at layer size, 255 = may change (like a selection).

    `output` is `transfer` (the layer's own pixels, moved) or `generator` (the generator's picture); None leaves
    it to the daemon (transfer from protocol 1.1 on). `frames` k (≥ 1) keeps a frame every k steps and the
    result's (None or 0: none), within `frames_max_bytes` compressed bytes (None: the daemon's budget).
    `preview_detail` `draft` or `full` (None: the daemon's default, draft; PROTOCOL.md §6, 2.1)."""
    content: dict[str, Any] = {
        "session_id": session_id,
        "points": [[float(v) for v in p] for p in points],
        "params": dict(params or {}),
        "preview_every": int(preview_every),
    }
    if output is not None:
        content["output"] = str(output)
    if invert_preset is not None:
        content["invert_preset"] = str(invert_preset)
    if invert_params is not None:
        content["invert_params"] = dict(invert_params)
    if preview_seconds is not None:
        content["preview_seconds"] = float(preview_seconds)
    if preview_detail is not None:
        content["preview_detail"] = str(preview_detail)
    if frames:
        content["frames"] = {"every": int(frames)}
        if frames_max_bytes is not None:
            content["frames"]["max_bytes"] = int(frames_max_bytes)
    buffers: list[Any] = []
    if mask is not None:
        content["mask"] = {"format": "A8", "buffer": 0}
        buffers.append(mask)
    return content, buffers


def frames_request(session_id: str, start: int = 0, count: int | None = None, format: str = "RGBA8") -> dict[str, Any]:
    """The content of a get_frames request: frames `start` … (`count` of them, None: as many as one reply takes)."""
    content: dict[str, Any] = {"session_id": session_id, "start": int(start), "format": format}
    if count is not None:
        content["count"] = int(count)
    return content


def frames_from_message(msg: Message) -> list[Frame]:
    """The frames one get_frames reply carries (buffer 0 holds them one after another, each `frame_bytes`)."""
    d = msg.content
    buf = memoryview(msg.buffers[d.get("buffer", 0)])
    size = int(d["frame_bytes"])
    if len(buf) != size * len(d["frames"]):
        raise ProtocolError("bad_buffer", f"get_frames_reply: {len(buf)} bytes for {len(d['frames'])} frames")
    return [
        Frame(
            width=d["width"],
            height=d["height"],
            format=d["format"],
            offset=tuple(d["offset"]),
            rect=tuple(d["rect"]),
            pixels=bytes(buf[i * size : (i + 1) * size]),
            step=int(f["step"]),
            final=bool(f["final"]),
        )
        for i, f in enumerate(d["frames"])
    ]


def image_from_message(msg: Message, key: str | None = None) -> Image:
    """The Image a get_result reply (key None) or a progress event's preview (key 'preview') carries."""
    d = msg.content if key is None else msg.content[key]
    buf = msg.buffers[d.get("buffer", 0)]
    return Image(
        width=d["width"],
        height=d["height"],
        format=d["format"],
        offset=tuple(d["offset"]),
        rect=tuple(d["rect"]),
        pixels=bytes(buf),
    )

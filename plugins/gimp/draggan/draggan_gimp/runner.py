"""One drag, from the layer's pixels to the dragged result, spoken through the daemon's client library.

Nothing here imports GIMP: the plug-in passes the layer's bytes in and gets the result's bytes out, and reports
progress through a small `Feedback` object. That keeps the daemon conversation (timeouts, cancel, the daemon
dying mid-run) testable against a real daemon without GIMP.

The conversation uses the client's non-blocking API (send + poll) rather than its blocking helpers, because a
drag step on a CPU can take longer than any fixed reply timeout: liveness is judged by the daemon answering
heartbeats, not by how soon the next step arrives: the client asks every second, and a daemon that has not
answered for LOST_AFTER seconds is gone (killed, crashed, its machine asleep), reported within a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from draggan_protocol import (
    Client,
    ConnectionInfo,
    DaemonError,
    DaemonUnreachable,
    Image,
    Message,
    default_connection_file,
    read_connection_file,
)
from draggan_protocol.client import (
    Frame,
    drag_request,
    frames_from_message,
    frames_request,
    image_from_message,
    layer_session_request,
    result_request,
    seed_session_request,
)
from draggan_protocol.jobs import HEARTBEAT_INTERVAL, LOST, LOST_AFTER, REFUSED, Job
from draggan_protocol.outcome import START_DAEMON, arrival_text, error_text, fallback_text, lost_text, region_warning
from draggan_protocol.progress import plural
from draggan_protocol.transport import HandshakeRefused

from .errors import Cancelled, DaemonLost, PluginError
from .pairs import Pair
from .params import RunSettings
from .pixels import Selection

CLIENT_NAME = "gimp-draggan"
HELLO_TIMEOUT = 5.0  # a daemon that is up answers hello in milliseconds
# Heartbeats every HEARTBEAT_INTERVAL s, the daemon gone after LOST_AFTER s of silence (draggan_protocol.jobs);
# LOST_AFTER also bounds the 'timeout' setting (old profiles remember 60 s).
POLL_INTERVAL = 0.1
CLOSE_TIMEOUT = 1.0
# Preview steps carry the measured arrival that the progress text shows: every few steps with a preview layer,
# else one every couple of seconds (each preview costs the daemon a motion estimate and a picture).
PREVIEW_EVERY = 5
MEASURE_SECONDS = 2.0


class Feedback(Protocol):
    """How the run talks back to its host (GIMP's progress bar, a test's recorder)."""

    def status(self, text: str) -> None: ...

    def progress(self, fraction: float, text: str) -> None: ...

    def preview(self, image: Image) -> None: ...

    def message(self, text: str) -> None:
        """A warning the person should read even after the run (e.g. a region many times the model's size)."""

    def stop_requested(self) -> bool: ...


class JobWatcher(Protocol):
    """Told which job is running so that it can cancel it should this process die (see watchdog.py)."""

    def arm(self, job_id: str) -> None: ...

    def disarm(self) -> None: ...


@dataclass
class LayerInput:
    """The source layer as the daemon needs it: straight-alpha RGBA8 rows, size and offset in the image."""

    pixels: bytes
    width: int
    height: int
    offset: tuple[int, int] = (0, 0)
    name: str = ""


@dataclass
class DragOutcome:
    image: Image  # the result at the layer's size (or the model's image, for a seed session)
    state: str  # 'done' or 'cancelled' (a cancelled drag still returns the state it reached)
    steps: int
    handles: list[Any] = field(default_factory=list)
    phases: list[str] = field(default_factory=list)  # what the daemon did: 'invert', 'drag'
    reached: bool = False  # job_done's `reached`: from protocol 1.1 on the measured arrival, not the tracker's
    summary: str = ""  # the outcome in plain words (outcome_text)
    warnings: list[str] = field(default_factory=list)  # told to the person during the run
    frames: list[bytes] = field(default_factory=list)  # with 'frames': whole-layer RGBA8 pictures, first to last
    frame_steps: list[int] = field(default_factory=list)  # the drag steps before each frame's picture
    frames_image: Any = None  # the image the frames were opened as (set by apply.drag_into)


def frame_layer_name(number: int, frame_ms: int) -> str:
    """A frame layer's name as GIMP's animation playback and GIF export read it: the first "(NNms)" is the frame's
    time, "(replace)" says it replaces the frame before (the frames may be partly transparent)."""
    return f"Frame {number} ({int(frame_ms)}ms) (replace)"


def whole_frames(result: Image, frames: Sequence[Frame]) -> list[bytes]:
    """Each frame (the changed rectangle) pasted into the result's whole picture (outside the rectangle every frame
    is the layer as it was, which the result is there), as RGBA8 rows of the result's size."""
    width, height, stride = result.width, result.height, 4 * result.width
    out = []
    for f in frames:
        picture = bytearray(result.pixels)
        x, y, w, h = f.rect
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + w, width), min(y + h, height)
        for row in range(top, bottom):
            src = (row - y) * 4 * w + 4 * (left - x)
            dst = row * stride + 4 * left
            picture[dst : dst + 4 * (right - left)] = f.pixels[src : src + 4 * (right - left)]
        out.append(bytes(picture))
    return out


@dataclass
class Connection:
    """A client that has said hello, what the daemon said, and the connection file it came from."""

    client: Client
    hello: dict[str, Any]
    info: ConnectionInfo

    def close(self) -> None:
        self.client.close()

    def curve_text(self) -> list[str] | None:
        """The CURVE keys as text, for the watchdog (None on loopback, where the daemon needs none)."""
        keys = self.info.curve_tuple()
        return [k.decode("ascii") for k in keys] if keys else None


def refused_text(endpoint: str, exc: Exception) -> str:
    return f"The DragGAN daemon at {endpoint} did not let the plug-in in: {exc}."


def connect(settings: RunSettings, hello_timeout: float = HELLO_TIMEOUT) -> Connection:
    """Connect and say hello; PluginError in plain words when there is no daemon or it does not answer."""
    path = Path(settings.connection_file).expanduser() if settings.connection_file else default_connection_file()
    try:
        conn_info = read_connection_file(path)
        client = Client.from_info(conn_info, client_name=CLIENT_NAME, heartbeat_interval=HEARTBEAT_INTERVAL)
    except FileNotFoundError:
        raise PluginError(
            f"The DragGAN daemon is not running (there is no connection file at {path}).\n"
            f"Start it with: {START_DAEMON}."
        ) from None
    except HandshakeRefused as exc:  # it runs, but not for this file's key (or it is full): not "start it"
        raise PluginError(refused_text(conn_info.endpoint, exc)) from None
    except (ValueError, OSError) as exc:
        raise PluginError(f"The DragGAN daemon's connection file {path} cannot be used: {exc}") from None
    try:
        info = client.hello(timeout=hello_timeout)
    except HandshakeRefused as exc:  # (pyzmq hears it here, when the handshake has been answered)
        client.close()
        raise PluginError(refused_text(conn_info.endpoint, exc)) from None
    except DaemonUnreachable:
        client.close()
        raise PluginError(
            f"The DragGAN daemon at {client.endpoint} does not answer within {hello_timeout:.0f} s.\n"
            f"It may have stopped without removing {path}, or that file belongs to another daemon.\n"
            f"Start it again with: {START_DAEMON}."
        ) from None
    except DaemonError as exc:
        client.close()
        raise PluginError(f"The DragGAN daemon refused to talk to this plug-in: {exc.message}") from None
    return Connection(client, info, conn_info)


def describe_daemon(info: dict[str, Any]) -> str:
    """One line about a daemon that answered hello, for the dialog."""
    device = info.get("device") or "unknown device"
    if isinstance(device, dict):
        device = device.get("name") or device.get("type") or "unknown device"
    models = info.get("models") or []
    names = [m.get("name", "?") if isinstance(m, dict) else str(m) for m in models]
    version = info.get("protocol_version") or info.get("version") or "?"
    return f"running on {device}, protocol {version}, models: {', '.join(names) if names else 'none'}"


def model_names(info: dict[str, Any]) -> list[str]:
    models = info.get("models") or []
    return [m.get("name", "") if isinstance(m, dict) else str(m) for m in models]


def default_model(info: dict[str, Any]) -> str | None:
    """The model the daemon uses when none is named (hello's `default_model`, else the one marked default)."""
    if info.get("default_model"):
        return str(info["default_model"])
    for m in info.get("models") or []:
        if isinstance(m, dict) and m.get("default"):
            return str(m.get("name") or "") or None
    return None


def drag_points(pairs: Sequence[Pair]) -> list[tuple[float, float, float, float]]:
    return [(p.hx, p.hy, p.tx, p.ty) for p in pairs]


class Conversation:
    """Requests and jobs over one client, with silence detection and cancel."""

    def __init__(
        self,
        client: Client,
        feedback: Feedback,
        timeout: float,
        watcher: JobWatcher | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.feedback = feedback
        self.timeout = timeout
        self.watcher = watcher
        self.clock = clock
        self._pending: list[Message] = []  # arrived alongside a reply, not yet looked at (a job's first events)

    def _poll(self) -> list[Message]:
        if self._pending:
            out, self._pending = self._pending, []
            return out
        return self.client.poll(POLL_INTERVAL)

    def _check_alive(self, what: str) -> None:
        silent = self.client.daemon_silent_for()
        if silent > min(self.timeout, LOST_AFTER):
            raise DaemonLost(lost_while(silent, what))

    def request(self, msg_type: str, content: dict[str, Any], buffers: Sequence[Any] = (), what: str = "") -> Message:
        """Send a request and wait for its reply while the daemon keeps answering heartbeats."""
        msg_id = self.client.send(msg_type, content, buffers)
        while True:
            batch = self._poll()
            for i, msg in enumerate(batch):
                if msg.parent == msg_id and msg.msg_type.endswith("_reply"):
                    self._pending = batch[i + 1 :]  # a fast job's events may ride along (_poll emptied it)
                    if msg.is_error:
                        raise daemon_error_to_plugin_error(msg.content, what or msg_type)
                    return msg
            self._check_alive(what or f"waiting for {msg_type}")

    def job(
        self,
        msg_type: str,
        content: dict[str, Any],
        buffers: Sequence[Any],
        what: str,
        on_progress: Callable[[Message, Job], None],
        fit_first: bool = False,
        max_steps: int = 0,
    ) -> dict[str, Any]:
        """Run a job to its end with the client core's tracker; stops (cancels) it when the feedback asks to.

        Returns job_done's content (done or stopped); a refused job raises PluginError, a lost daemon DaemonLost."""
        job = Job(msg_type, fit_first=fit_first, max_steps=max_steps, lost_after=min(self.timeout, LOST_AFTER))
        job.start(self.client.send, msg_type, content, buffers)
        send = self.client.send
        try:
            while not job.finished:
                for msg in self._poll():
                    kind = job.handle(msg, send)
                    if kind == "reply" and self.watcher is not None and job.job_id is not None:
                        self.watcher.arm(job.job_id)
                    elif kind == "queued" or (kind == "reply" and job.queue_position > 0):
                        self.feedback.status("DragGAN: " + lower_first(job.text))
                    elif kind == "progress":
                        on_progress(msg, job)
                if not job.finished and self.feedback.stop_requested():
                    job.cancel(send)
                if not job.finished:
                    job.check(self.client.daemon_silent_for())
        finally:
            if self.watcher is not None:
                self.watcher.disarm()
        if job.state == LOST:
            raise DaemonLost(lost_while(self.client.daemon_silent_for(), what))
        if job.state == REFUSED:
            raise daemon_error_to_plugin_error(job.refusal, what)
        return job.result


def lower_first(text: str) -> str:
    """The client core's words inside GIMP's "DragGAN: …" progress line."""
    return text[:1].lower() + text[1:]


def lost_while(silent_for: float, what: str) -> str:
    return lost_text(silent_for, what) + " The layer is unchanged."


def daemon_error_to_plugin_error(content: dict[str, Any], what: str) -> PluginError:
    """An error reply to a request (not a job) in the client core's words."""
    return PluginError(f"DragGAN failed while {what}: {error_text(content.get('code'), content.get('message', ''))}")


def selection_mask(selection: Selection | None) -> bytes | None:
    """The selection as the daemon's A8 mask (255 = may change), or None when it selects the whole layer."""
    if selection is None or selection.covers_everything:
        return None
    return selection.mask


def outcome_text(done: dict[str, Any]) -> str:
    """A finished drag in plain words: how far the handles really moved, and any fallback to the generator."""
    sentences = [arrival_text(done), fallback_text(done)]
    return " ".join(t.rstrip(".") + "." for t in sentences if t)


def finished_text(done: dict[str, Any], summary: str) -> str:
    """The progress bar's last words: the steps taken and whether the handles arrived (the outcome)."""
    return f"DragGAN: done after {plural(int(done.get('steps') or 0), 'step')}. {summary}"


def seed_pairs_problem(pairs: Sequence[Pair], size: tuple[int, int], offset: tuple[int, int], seed: int) -> str:
    """Why a seed run cannot drag these pairs ("" when it can): every handle and target must lie on the picture.

    Without fitting, the daemon drags the model's own picture for `seed` (the model's size, its top-left corner
    at the layer's); the strokes were drawn on the image, so only those on that square mean anything.
    """
    w, h = size
    ox, oy = offset
    outside = [p for p in pairs if not all(0.0 <= x <= w - 1 and 0.0 <= y <= h - 1 for x, y in (p.handle, p.target))]
    if not outside:
        return ""
    first = outside[0]
    where = f"({first.handle[0] + ox:.0f}, {first.handle[1] + oy:.0f}) -> ({first.target[0] + ox:.0f}, "
    where += f"{first.target[1] + oy:.0f})"
    others = f" and {plural(len(outside) - 1, 'other stroke')}" if len(outside) > 1 else ""
    return (
        f"Without 'Fit my layer into the model first', DragGAN drags the model's own picture number {seed} instead "
        f"of your layer: {w} × {h} px, from ({ox}, {oy}) to ({ox + w - 1}, {oy + h - 1}) in the image. Stroke "
        f"{first.index + 1}, {where}{others}, does not lie on it.\n"
        "Turn 'Fit my layer into the model first' on to drag your layer, or draw the strokes inside that square."
    )


def run_drag(
    client: Client,
    layer: LayerInput,
    selection: Selection | None,
    pairs: Sequence[Pair],
    settings: RunSettings,
    feedback: Feedback,
    watcher: JobWatcher | None = None,
) -> DragOutcome:
    """Open a session, drag (the daemon fits the layer into the model first), fetch the result, close.

    With `invert_first` off, the session starts from the model's own image for `settings.seed` instead of the
    layer (for layers the model made, or to try a model), its top-left corner at the layer's; the selection does
    not apply then, and pairs that do not lie on that picture are refused before anything is dragged.
    """
    if not pairs:
        raise PluginError("There is nothing to drag: no usable path strokes.")
    talk = Conversation(client, feedback, settings.timeout, watcher)
    model = settings.model or None
    feedback.status("DragGAN: sending the layer to the daemon")
    if settings.invert_first:
        content, buffers = layer_session_request(
            layer.pixels,
            layer.width,
            layer.height,
            offset=layer.offset,
            selection=selection_mask(selection),
            model=model,
            name=layer.name,
        )
    else:
        content, buffers = seed_session_request(settings.seed, model, psi=None, offset=layer.offset), []
    session = talk.request("open_session", content, buffers, "opening a session").content
    session_id = session["session_id"]
    warnings: list[str] = []
    lost = False
    try:
        if not settings.invert_first:
            size = (int(session.get("width") or 0), int(session.get("height") or 0))
            problem = seed_pairs_problem(pairs, size, layer.offset, int(settings.seed))
            if problem:
                raise PluginError(problem)
        warning = region_warning(session)
        if warning:
            warnings.append(warning)
            feedback.message(warning)
        content, buffers = drag_request(
            session_id,
            drag_points(pairs),
            params=settings.drag_parameters(),
            preview_every=PREVIEW_EVERY if settings.preview_layer else 0,
            preview_seconds=None if settings.preview_layer else MEASURE_SECONDS,
            output=settings.output,
            preview_detail=settings.preview_detail,
            frames=settings.frames or None,
        )
        phases: list[str] = []

        def on_progress(msg: Message, job: Job) -> None:
            phases[:] = job.phases
            feedback.progress(job.fraction, "DragGAN: " + lower_first(job.text))
            if settings.preview_layer and isinstance(msg.content.get("preview"), dict):
                feedback.preview(image_from_message(msg, "preview"))

        # A new layer session is fitted first, inside the drag job: say what really happens first.
        feedback.status("DragGAN: fitting your layer into the model" if settings.invert_first else "DragGAN: dragging")
        done = talk.job(
            "drag", content, buffers, "dragging", on_progress, fit_first=settings.invert_first, max_steps=settings.steps
        )
        if done.get("state") == "cancelled":
            if feedback.stop_requested():
                raise Cancelled()
            raise PluginError(
                "The DragGAN daemon stopped the drag before it finished (it may be shutting down); "
                "the layer is unchanged."
            )
        feedback.status("DragGAN: fetching the result")
        result = talk.request("get_result", result_request(session_id), (), "fetching the result")
        image = image_from_message(result)
        frames: list[Frame] = []
        at = 0 if settings.frames and done.get("frames") else None
        while at is not None:  # in as many replies as the daemon's reply budget asks for
            feedback.status(f"DragGAN: fetching the frames ({len(frames)} of {done['frames'].get('total', '?')})")
            reply = talk.request("get_frames", frames_request(session_id, at), (), "fetching the frames")
            frames += frames_from_message(reply)
            at = reply.content.get("next")
        handles = list(done.get("handles") or [])
        summary = outcome_text(done)
        feedback.progress(1.0, finished_text(done, summary))
        return DragOutcome(
            image,
            done.get("state", "done"),
            int(done.get("steps", 0)),
            handles,
            phases,
            reached=bool(done.get("reached")),
            summary=summary,
            warnings=warnings,
            frames=whole_frames(image, frames),
            frame_steps=[f.step for f in frames],
        )
    except DaemonLost:
        lost = True
        raise
    finally:
        if not lost:  # free the daemon's memory now rather than at its idle timeout; never hide the real outcome
            try:
                client.request("close_session", {"session_id": session_id}, timeout=CLOSE_TIMEOUT)
            except (DaemonError, DaemonUnreachable, OSError):
                pass

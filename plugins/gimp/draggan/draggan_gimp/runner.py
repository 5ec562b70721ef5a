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
from draggan_protocol.client import drag_request, image_from_message, layer_session_request
from draggan_protocol.outcome import START_DAEMON, arrival_text, fallback_text, has_arrival, large_region_text

from .errors import Cancelled, DaemonLost, PluginError
from .pairs import Pair
from .params import RunSettings
from .pixels import Selection

CLIENT_NAME = "gimp-draggan"
HELLO_TIMEOUT = 5.0  # a daemon that is up answers hello in milliseconds
HEARTBEAT_INTERVAL = 1.0
# The daemon's socket loop answers a heartbeat within milliseconds even while its worker computes, so four missed
# answers in a row mean it is gone. This bounds the 'timeout' setting (old profiles remember 60 s).
LOST_AFTER = 4 * HEARTBEAT_INTERVAL
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
    except (ValueError, OSError) as exc:
        raise PluginError(f"The DragGAN daemon's connection file {path} cannot be used: {exc}") from None
    try:
        info = client.hello(timeout=hello_timeout)
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
    return [(p.handle[0], p.handle[1], p.target[0], p.target[1]) for p in pairs]


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
            raise DaemonLost(
                f"The DragGAN daemon stopped answering while {what} (nothing for {silent:.0f} s; a working daemon "
                "answers every second).\n"
                f"It may have crashed or been stopped; the layer is unchanged. Start it again with: {START_DAEMON}."
            )

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
        on_progress: Callable[[Message], None],
    ) -> dict[str, Any]:
        """Run a job to its job_done; stops (cancels) it when the feedback asks to. Returns job_done's content."""
        reply = self.request(msg_type, content, buffers, what)
        job_id = reply.content["job_id"]
        if self.watcher is not None:
            self.watcher.arm(job_id)
        cancel_sent = False
        try:
            while True:
                for msg in self._poll():
                    if msg.content.get("job_id") != job_id:
                        continue
                    if msg.msg_type == "job_done":
                        if msg.content.get("state") == "failed":
                            raise daemon_error_to_plugin_error(msg.content, what)
                        return msg.content
                    if msg.msg_type == "job_queued":
                        pos = msg.content.get("position")
                        self.feedback.status(f"DragGAN: waiting for the daemon (queue position {pos})")
                    elif msg.msg_type == "progress":
                        on_progress(msg)
                    elif msg.msg_type == "error":
                        raise daemon_error_to_plugin_error(msg.content, what)
                if not cancel_sent and self.feedback.stop_requested():
                    self.client.send("cancel", {"job_id": job_id})
                    cancel_sent = True
                self._check_alive(what)
        finally:
            if self.watcher is not None:
                self.watcher.disarm()


def daemon_error_to_plugin_error(content: dict[str, Any], what: str) -> PluginError:
    code = content.get("code", "error")
    message = content.get("message") or "no details"
    hints = {
        "model_not_found": "Pick another model in the dialog (or leave it empty for the daemon's default).",
        "pixel_limit": "The daemon holds too many pixels; close other sessions or use a smaller layer.",
        "session_limit": "The daemon has too many open sessions; close other editors using it.",
        "too_large": "The layer is larger than the daemon accepts; crop it or select a smaller region.",
        "queue_full": "The daemon is busy; try again in a moment.",
        "invalid_input": "",
    }
    hint = hints.get(code, "")
    return PluginError(f"DragGAN failed while {what}: {message} ({code}).{(' ' + hint) if hint else ''}")


def selection_mask(selection: Selection | None) -> bytes | None:
    """The selection as the daemon's A8 mask (255 = may change), or None when it selects the whole layer."""
    if selection is None or selection.covers_everything:
        return None
    return selection.mask


def outcome_text(done: dict[str, Any]) -> str:
    """A finished drag in plain words: how far the handles really moved, and any fallback to the generator."""
    sentences = [arrival_text(done), fallback_text(done)]
    return " ".join(t.rstrip(".") + "." for t in sentences if t)


def region_warning(session: dict[str, Any]) -> str:
    """The large-region warning for an open_session reply ("" when the region is not many times the model)."""
    region = session.get("region")
    try:
        side = max(float(region[2]), float(region[3]))
        resolution = int(session.get("resolution") or 0)
    except (TypeError, ValueError, IndexError):
        return ""
    return large_region_text(side, resolution)


FIT_SHARE = 0.5  # of the progress bar, for a run that fits the layer before it drags
STAGE_WORDS = {  # the fit's stages (PROTOCOL.md, invert), in the words of someone who never read the paper
    "w": "overall look",
    "w+": "details",
    "pti": "adjusting the model to your picture",
}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _toward_targets(arrival: dict[str, Any] | None) -> float:
    """How far the slowest handle has come, as a share of its asked move (0 without measured fields)."""
    if arrival is None:
        return 0.0
    try:
        shares = [float(m) / float(a) for m, a in zip(arrival["moved"], arrival["asked"], strict=True) if float(a) > 0]
    except (KeyError, TypeError, ValueError):
        return 0.0
    return min(max(min(shares), 0.0), 1.0) if shares else 0.0


def progress_text(
    content: dict[str, Any], steps: int, arrival: dict[str, Any] | None = None, fit_first: bool = False
) -> tuple[float, str]:
    """Progress-bar fraction (of the whole run) and text for a progress event: fitting the layer, then dragging.

    `fit_first`: the run fits the layer before it drags, so the fit fills the first FIT_SHARE of the bar and the
    drag the rest. The drag's share is the larger of its steps (out of the most it may take) and how far the
    slowest handle has really come (`arrival`: the latest drag event that carried measured arrival fields), since a
    drag ends early when the handles arrive. Its words follow the step count, so the bar says how far the content
    has moved, not where the point tracker thinks it is.
    """
    step = int(content.get("step") or 0)
    if content.get("phase") == "invert":
        stage = STAGE_WORDS.get(str(content.get("stage") or ""), "")
        fit_steps = int(content.get("fit_steps") or 0)
        if fit_steps:  # one bar over all stages
            share = min(int(content.get("fit_step") or 0) / fit_steps, 1.0)
        else:
            total = int(content.get("steps") or 0)
            share = min(step / total, 1.0) if total else 0.0
        words = f" ({stage})" if stage else ""
        text = f"DragGAN: fitting your layer into the model{words}, {int(100 * share)}%"
        return (FIT_SHARE if fit_first else 1.0) * share, text
    total = int(content.get("max_steps") or steps) or 1
    share = max(min(step / total, 1.0), _toward_targets(arrival))
    text = f"DragGAN: dragging, step {step} (at most {total})"
    if arrival is not None:
        text += " – " + arrival_text(arrival)
    base = FIT_SHARE if fit_first else 0.0
    return base + (1.0 - base) * share, text


def finished_text(done: dict[str, Any], summary: str) -> str:
    """The progress bar's last words: the steps taken and whether the handles arrived (the outcome)."""
    return f"DragGAN: done after {_plural(int(done.get('steps') or 0), 'step')}. {summary}"


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
    others = f" and {_plural(len(outside) - 1, 'other stroke')}" if len(outside) > 1 else ""
    return (
        f"Without 'Fit my layer into the model first', DragGAN drags the model's own picture number {seed} instead "
        f"of your layer: {w} × {h} px, from ({ox}, {oy}) to ({ox + w - 1}, {oy + h - 1}) in the image. Stroke "
        f"{first.stroke + 1}, {where}{others}, does not lie on it.\n"
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
        content, buffers = {"source": "seed", "seed": int(settings.seed), "offset": list(layer.offset)}, []
        if model:
            content["model"] = model
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
        )
        phases: list[str] = []
        latest: dict[str, Any] | None = None  # the last drag event with measured arrival fields
        shown = 0.0  # the bar never goes back (a handle's measured progress can)

        def on_progress(msg: Message) -> None:
            nonlocal latest, shown
            c = msg.content
            if not phases or phases[-1] != c.get("phase"):
                phases.append(str(c.get("phase")))
            if c.get("phase") == "drag" and has_arrival(c):
                latest = c
            fraction, text = progress_text(c, settings.steps, latest, fit_first=settings.invert_first)
            shown = max(shown, fraction)
            feedback.progress(shown, text)
            if settings.preview_layer and isinstance(c.get("preview"), dict):
                feedback.preview(image_from_message(msg, "preview"))

        # A new layer session is fitted first, inside the drag job: say what really happens first.
        feedback.status("DragGAN: fitting your layer into the model" if settings.invert_first else "DragGAN: dragging")
        done = talk.job("drag", content, buffers, "dragging", on_progress)
        if done.get("state") == "cancelled":
            if feedback.stop_requested():
                raise Cancelled()
            raise PluginError(
                "The DragGAN daemon stopped the drag before it finished (it may be shutting down); "
                "the layer is unchanged."
            )
        feedback.status("DragGAN: fetching the result")
        result = talk.request("get_result", {"session_id": session_id, "area": "layer"}, (), "fetching the result")
        image = image_from_message(result)
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

"""The editing state machine behind the docker's buttons: Fit, Drag, Stop, Reset, Apply.

Every request is sent without waiting; replies and job events come back through the DaemonLink's `message`
signal, so Krita stays responsive. Phases:

    idle ──Fit/Drag──► opening ──► queued ──► fitting / dragging ──► done ──Apply──► idle
                                         ◄── Stop (cancel) ──┘         └─Reset──► idle

A session on the daemon is kept while the same layer, area and pixels are edited, so a second drag continues from
the first and the (slow) fit happens once. The source layer is only ever read; previews and results go to their
own layer, made when the first preview arrives (a drag refused at once leaves no layer and no undo step). When
anything fails the preview layer is removed and the reason is shown in plain words.

An edit belongs to the document it was started on: its previews, Apply and Reset act there, and its status and
errors are shown only while that document is the active one.

Krita runs its event loop inside node calls, so a reply can be handled while the controller is itself changing the
document; the link never hands out a message inside another (see DaemonLink), and a request is sent only after
the document work it needs is done.

How far a drag got is said with the daemon's measured arrival (where the content under each handle really went,
protocol 1.1), in the wording of `draggan_protocol.outcome` that every client shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from draggan_protocol import jobs
from draggan_protocol.client import (
    drag_request,
    frames_from_message,
    frames_request,
    invert_request,
    layer_session_request,
    result_request,
    suggest_request,
)
from draggan_protocol.outcome import arrival_text, error_text, fallback_text, ranking_text, region_warning
from draggan_protocol.progress import plural, queued_words
from PyQt5.QtCore import QObject, QTimer, pyqtSignal

from . import geometry
from .document import Capture, DocumentError, KritaDocument, doc_key, find_by_id, node_id
from .link import DaemonLink
from .settings import Params

IDLE = "idle"
OPENING = "opening"
QUEUED = "queued"
FITTING = "fitting"
DRAGGING = "dragging"
STOPPING = "stopping"
DONE = "done"
APPLYING = "applying"
BUSY_PHASES = (OPENING, QUEUED, FITTING, DRAGGING, STOPPING, APPLYING)
MOST_FRAMES = 100  # a drag that keeps frames keeps about this many at most (one every steps / 100 steps)


def frame_every(steps: int) -> int:
    """The drag `frames.every` for a drag of at most `steps` steps: every step up to MOST_FRAMES steps."""
    return max(1, -(-int(steps) // MOST_FRAMES))


@dataclass
class Session:
    session_id: str
    capture_key: tuple[Any, ...]
    layer_id: str
    layer_name: str
    rect: geometry.Rect
    model: str
    inverted: bool = False
    warning: str = ""  # a standing caution about the region (the client core's region_warning), or ""


def sentence(text: str) -> str:
    """`text` ending with a full stop (the shared wording comes without one), or "" for nothing."""
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


class EditController(QObject):
    changed = pyqtSignal()
    finished = pyqtSignal(str)  # a job ended: "done" | "cancelled" | "failed"
    suggested = pyqtSignal(str)  # "Suggest" found the model that reproduces the layer best (its name)

    def __init__(self, link: DaemonLink, app: Any, params: Params, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.link = link
        self.app = app
        self.params = params
        self.phase = IDLE
        self.status = ""
        self.error = ""
        self.progress = (0, 0)  # (value, maximum)
        self.queue_position = 0
        self.session: Session | None = None
        self.source_id: str | None = None  # the paint layer last seen active
        self.job: jobs.Job | None = None  # the fit or drag running now (the client core's tracker)
        self.last_done: dict[str, Any] = {}
        self.previews_shown = 0
        self.keep_frames = False  # ask the drag to keep frames, for Apply as animation
        self.animation: dict[str, Any] = {}  # what the last Apply as animation made (for the status and tests)
        self._frames: list[Any] = []  # frames fetched so far by Apply as animation
        self._pending: dict[str, str] = {}  # msg_id -> what the reply is for
        self._after_open: str | None = None  # "fit" | "drag" once the session is open
        self._capture: Capture | None = None
        self._kdoc: KritaDocument | None = None  # the active document
        self._work: KritaDocument | None = None  # the document the session, the job and the status are about
        self._status_key: str | None = None  # the document `status` and `error` were said about
        self._pairs: list[geometry.Pair] = []
        self._status_timer = QTimer(self)  # while a session upload waits behind other work: ask where we are
        self._status_timer.setInterval(1000)
        self._status_timer.timeout.connect(self._ask_status)
        link.message.connect(self._on_message)
        link.lost.connect(self._on_lost)

    # ------------------------------------------------------------------ what the docker shows
    @property
    def job_id(self) -> str | None:
        return self.job.job_id if self.job is not None else None

    @property
    def arrival(self) -> dict[str, Any]:
        """The latest drag event with measured arrival fields ({} before the first)."""
        return self.job.arrival if self.job is not None else {}

    @property
    def busy(self) -> bool:
        return self.phase in BUSY_PHASES

    @property
    def warning(self) -> str:
        """A standing caution about the open edit (a region many times the model's size), else ""."""
        s = self.session
        return "" if s is None else s.warning

    def document(self) -> KritaDocument | None:
        doc = self.app.activeDocument()
        if doc is None:
            return None
        if self._kdoc is None or self._kdoc.doc is not doc:
            kdoc = KritaDocument(doc)
            if self._kdoc is not None and self._kdoc.key == kdoc.key:
                kdoc = self._kdoc
                kdoc.doc = doc
            self._kdoc = kdoc
        return self._kdoc

    def work_document(self) -> KritaDocument | None:
        """The document the open edit is about (the active one when there is none); None once it is closed."""
        work = self._work
        if work is None:
            return self.document()
        for doc in self.app.documents():
            if doc_key(doc) == work.key:
                work.doc = doc  # a live wrapper: the one kept may outlive its document
                return work
        return None

    def on_work_document(self) -> bool:
        """Whether the active document is the one the open edit (its preview, Apply, Reset) is about."""
        kdoc = self.document()
        return self._work is None or (kdoc is not None and kdoc.key == self._work.key)

    def shows_status(self) -> bool:
        """Whether `status` and `error` are about the active document (they are not shown on another one)."""
        kdoc = self.document()
        return self._status_key is None or (kdoc is not None and kdoc.key == self._status_key)

    def observe_active_layer(self) -> tuple[Any | None, str]:
        """Remember the paint layer the person works on (drawing points makes the points layer active); returns
        the source choice it saw (as `source_choice` would, without choosing twice)."""
        kdoc = self.document()
        if kdoc is None:
            return None, ""
        node, why = kdoc.choose_source(self.source_id)
        active = kdoc.doc.activeNode()
        # An editable active layer is the choice itself; for an active group, the group's layer the docker names.
        if node is not None and (kdoc.editable(active) or (active is not None and active.type() == "grouplayer")):
            self.source_id = node_id(node)
        return node, why

    def source_choice(self) -> tuple[Any | None, str]:
        """The source layer and, when it is not just the active layer, why it is this one (see choose_source)."""
        kdoc = self.document()
        return (None, "") if kdoc is None else kdoc.choose_source(self.source_id)

    def source(self) -> Any | None:
        return self.source_choice()[0]

    def _session_source(self) -> Any | None:
        """The layer the open session was made from, in its own document."""
        kdoc, s = self.work_document(), self.session
        if kdoc is None or s is None:
            return None
        return find_by_id(kdoc.doc, s.layer_id)

    # ------------------------------------------------------------------ buttons
    def fit(self) -> None:
        self._start("fit")

    def drag(self) -> None:
        self._start("drag")

    def suggest(self) -> None:
        """Rank the daemon's models for the source layer (suggest_models); the best is then offered (`suggested`)."""
        self._start("suggest")

    def stop(self) -> None:
        if self.job is not None and not self.job.finished and self.phase in (QUEUED, FITTING, DRAGGING):
            try:
                self.job.cancel(self.link.send)  # before the reply named the job: sent when it does
            except ConnectionError as exc:
                self._fail(str(exc))
                return
            self._set_phase(STOPPING, "Stopping after the current step…")
        elif self.phase == OPENING:
            self._after_open = None
            self._set_phase(IDLE, "Stopped before starting.")

    def reset(self) -> None:
        """Back to the fitted layer: forget the drags on the daemon and remove the preview."""
        if self.busy or not self.on_work_document():
            return
        kdoc = self.work_document()
        if kdoc is not None:
            kdoc.remove_preview()
        if self.session is not None and self.link.ready:
            try:
                self._request("reset", {"session_id": self.session.session_id}, "reset")
            except ConnectionError:
                pass
        self.error = ""
        self._set_phase(IDLE, "Reset: the preview is gone; the next drag starts from the fitted layer.")

    def apply(self) -> None:
        """Make the result a normal layer named after the source (fetching the final pixels first)."""
        if self.phase != DONE or self.session is None or not self.on_work_document():
            return
        try:
            self._request("get_result", result_request(self.session.session_id, "changed", "BGRA8"), "apply")
        except ConnectionError as exc:
            self._fail(str(exc))
            return
        self._set_phase(APPLYING, "Writing the result layer…")

    @property
    def has_frames(self) -> bool:
        """Whether the finished drag kept frames (Apply as animation can use them)."""
        return self.phase == DONE and bool((self.last_done.get("frames") or {}).get("total"))

    def apply_animation(self) -> None:
        """Put the drag's frames above the source: on the timeline (one animated layer, a frame per kept step)
        where Krita can, else as a group of layers, one per frame. The source is only read."""
        if not self.has_frames or self.session is None or not self.on_work_document():
            return
        self._frames = []
        try:
            self._request("get_frames", frames_request(self.session.session_id, 0, None, "BGRA8"), "frames")
        except ConnectionError as exc:
            self._fail(str(exc))
            return
        self._set_phase(APPLYING, "Fetching the frames…")

    def _on_frames(self, msg: Any) -> None:
        c = msg.content
        self._frames += frames_from_message(msg)
        if c.get("next") is not None and self.session is not None:  # the daemon's reply budget: ask for the rest
            self._request(
                "get_frames", frames_request(self.session.session_id, int(c["next"]), None, "BGRA8"), "frames"
            )
            self._set_phase(APPLYING, f"Fetching the frames ({len(self._frames)} of {c.get('total')})…")
            return
        kdoc = self.work_document()
        source = self._session_source()
        if kdoc is None or source is None or self.session is None:
            self._fail("The source layer is gone; drag again.", keep_session=True)
            return
        frames = [(f.step, f.pixels, (f.offset[0], f.offset[1], f.width, f.height)) for f in self._frames]
        self._frames = []
        n = len(frames)
        self.animation = {"frames": n, "timeline": False}
        layer = None
        if kdoc.prepare_timeline(self.app, n):  # first, so that the time switch lies below the animated layer
            try:
                layer = kdoc.add_animation(self.app, source, self.session.layer_name, frames)
            except Exception as exc:  # a Krita that cannot take the animated layer: the frames go in as a group
                self.animation["timeline_error"] = f"{type(exc).__name__}: {exc}"
        if layer is not None:
            self.animation.update(group=layer.name(), timeline=True)
            text = f"Applied as the animated layer “{layer.name()}”: {plural(n, 'frame')} on the timeline, from 0."
        else:
            group = kdoc.add_frames_group(source, self.session.layer_name, frames)
            self.animation["group"] = group.name()
            text = (
                f"Applied as the layer group “{group.name()}”: {plural(n, 'frame')}, one layer each, the first at the "
                "bottom."
            )
        self._set_phase(IDLE, text + " The source layer is unchanged.")

    # ------------------------------------------------------------------ starting work
    def _start(self, action: str) -> None:
        if self.busy:
            return
        self.error = ""
        kdoc = self.document()
        if kdoc is not None and (self._work is None or self._work.key != kdoc.key):
            self._work = kdoc  # what is said from now on is about this document
            self._status_key = kdoc.key
        if not self.link.ready:
            self._fail(self.link.detail or self.link.not_running_text())
            return
        if kdoc is None:
            self._fail("Open an image first.")
            return
        source, why = kdoc.choose_source(self.source_id)
        try:
            kdoc.check_source(source, why)
            if action == "drag":
                self._pairs = kdoc.pairs()
                if not self._pairs:
                    kdoc.ensure_points_layer()
                    raise DocumentError(
                        f"No points yet: draw straight lines from each handle to its target on the "
                        f"“{kdoc.points_layer().name()}” vector layer (line tool), then press Drag."
                    )
            limits = self.link.limits()
            capture = kdoc.capture(source, limits.get("max_layer_pixels"))
        except DocumentError as exc:
            self._fail(str(exc), keep_session=True)
            return
        self.source_id = capture.layer_id
        self._capture = capture
        model = self.params.model or ""
        s = self.session
        if s is not None and s.capture_key == capture.key and s.model == model:
            self._continue(action)
            return
        if s is not None:
            self._close_session()
        self._after_open = action
        x, y, w, h = capture.rect
        content, buffers = layer_session_request(
            capture.pixels,
            w,
            h,
            offset=(x, y),
            format="BGRA8",
            selection=capture.selection,
            region=capture.region,
            model=model,
            name=capture.layer_name,
        )
        try:
            self._request("open_session", content, "open", buffers)
        except ConnectionError as exc:
            self._fail(str(exc))
            return
        self._set_phase(OPENING, f"Sending “{capture.layer_name}” ({w}×{h}) to the daemon…")

    def _continue(self, action: str) -> None:
        s = self.session
        assert s is not None
        try:
            if action == "fit":
                self._start_job("invert", invert_request(s.session_id, self.params.invert_preset), [])
                self._set_phase(QUEUED, "Fitting the layer into the model…")
            elif action == "suggest":
                self._start_job("suggest_models", suggest_request(s.session_id), [])
                self._set_phase(QUEUED, "Trying each model on the layer…")
            else:
                dx, dy = -s.rect[0], -s.rect[1]
                points = [p.shifted(dx, dy).as_list() for p in self._pairs]
                content, buffers = drag_request(
                    s.session_id,
                    points,
                    params=self.params.drag_params(),
                    preview_every=self.params.preview_every,
                    preview_detail=self.params.preview_detail,
                    output=self.params.output,
                    invert_preset=self.params.invert_preset,
                    frames=frame_every(self.params.steps) if self.keep_frames else None,
                )
                # Nothing is added to the document here: the preview layer comes with the first preview, so a drag
                # the daemon refuses leaves neither a layer nor an undo step behind.
                self._start_job("drag", content, buffers, fit_first=not s.inverted)
                self.previews_shown = 0
                self._set_phase(QUEUED, f"Dragging {plural(len(points), 'point')}…")
        except ConnectionError as exc:
            self._fail(str(exc))

    # ------------------------------------------------------------------ messages
    def _start_job(self, kind: str, content: dict[str, Any], buffers: list[Any], fit_first: bool = False) -> None:
        job = jobs.Job(kind, fit_first=fit_first, max_steps=self.params.steps if kind == "drag" else 0)
        job.start(self.link.send, kind, content, buffers)  # a ConnectionError leaves no job behind
        self.job = job
        self.progress = (0, 0)

    def _request(self, msg_type: str, content: dict[str, Any], purpose: str, buffers: list[Any] | None = None) -> str:
        msg_id = self.link.send(msg_type, content, buffers or [])
        self._pending[msg_id] = purpose
        return msg_id

    def _on_message(self, msg: Any) -> None:
        job = self.job
        if job is not None:
            kind = job.handle(msg, self.link.send)
            if kind is not None:
                self._on_job(kind, msg)
                return
        purpose = self._pending.get(msg.parent or "")
        if purpose is None:
            return
        if msg.msg_type.endswith("_reply"):
            del self._pending[msg.parent]
            self._on_reply(purpose, msg)

    def _on_reply(self, purpose: str, msg: Any) -> None:
        c = msg.content
        if msg.is_error:
            if purpose in ("cancel", "reset", "close"):
                return  # nothing depends on these; the job's own events tell the rest
            self._fail(error_text(c.get("code"), c.get("message", "")))
            return
        if purpose == "status":
            if self.phase == OPENING:
                mine = [j for j in c.get("jobs") or [] if j.get("kind") == "open"]
                if mine and int(mine[0].get("position", 0)) > 0:
                    self._on_queued(int(mine[0]["position"]), OPENING)
            return
        if purpose == "open":
            cap = self._capture
            assert cap is not None
            self.session = Session(
                session_id=c["session_id"],
                capture_key=cap.key,
                layer_id=cap.layer_id,
                layer_name=cap.layer_name,
                rect=cap.rect,
                model=self.params.model or "",
                inverted=bool(c.get("inverted")),
                warning=region_warning(c),
            )
            action, self._after_open = self._after_open, None
            if action is None:
                self._set_phase(IDLE, "Ready.")
            else:
                self._continue(action)
        elif purpose == "preview_final":
            self._show_image(c, msg.buffers)
            self._set_phase(DONE, self._done_text())
        elif purpose == "frames":
            self._on_frames(msg)
        elif purpose == "apply":
            self._show_image(c, msg.buffers)
            kdoc = self.work_document()
            name = self.session.layer_name if self.session else "layer"
            layer = kdoc.finish_preview(name) if kdoc is not None else None
            if layer is None:
                self._fail("The preview layer was removed before Apply; drag again.", keep_session=True)
                return
            self._set_phase(IDLE, f"Applied as the new layer “{layer.name()}”. The source layer is unchanged.")

    def _ask_status(self) -> None:
        if self.phase != OPENING or not self.link.ready:
            self._status_timer.stop()
            return
        if "status" not in self._pending.values():
            self._request("status", {}, "status")

    def _on_queued(self, position: int, phase: str = QUEUED) -> None:
        """An upload (OPENING) or a job waiting behind other work on the daemon."""
        self.queue_position = position
        if position > 0:
            self._set_phase(phase, sentence(queued_words(position)))
        elif self.phase in (QUEUED, OPENING):
            self._set_phase(QUEUED, "Starting…")

    def _on_job(self, kind: str, msg: Any) -> None:
        """A message of the running job, already taken in by its tracker (self.job)."""
        job = self.job
        assert job is not None
        if kind in ("reply", "queued"):
            if job.state == jobs.QUEUED and self.phase != STOPPING:
                self._on_queued(job.queue_position)
        elif kind == "progress":
            self._on_progress(msg)
        elif kind == "done":
            self._on_done(job)

    def _on_progress(self, msg: Any) -> None:
        job = self.job
        assert job is not None
        self.queue_position = 0
        self.progress = (round(1000 * job.fraction), 1000)  # fit and drag on one bar
        c = msg.content
        if job.phase in ("invert", "suggest"):
            if self.phase != STOPPING:
                self._set_phase(FITTING, sentence(job.text))
            return
        if "preview" in c:
            self._show_image(c["preview"], msg.buffers, rgba=c["preview"].get("format") == "RGBA8")
            self.previews_shown += 1
        if self.phase != STOPPING:
            words = (sentence(job.text), sentence(fallback_text(job.arrival)))
            self._set_phase(DRAGGING, " ".join(filter(None, words)))

    def _on_done(self, job: jobs.Job) -> None:
        c = job.result
        self.last_done = dict(c)
        if job.state in (jobs.REFUSED, jobs.LOST):
            if job.error_code == "session_not_found":
                self.session = None  # expired on the daemon: a new one next time
            self._fail(job.error)
            self.finished.emit("failed")
            return
        state = "cancelled" if job.state == jobs.STOPPED else "done"
        if job.kind == "suggest_models":
            ranking = list(c.get("ranking") or [])
            best = next((str(r["model"]) for r in ranking if r.get("psnr_db") is not None), "")
            tail = " The model box now names it; Fit or Drag uses it." if best and best != self.params.model else ""
            self._set_phase(IDLE, sentence(ranking_text(ranking)) + tail)
            if best:
                self.suggested.emit(best)
            self.finished.emit(state)
            return
        if self.session is not None:
            self.session.inverted = True
        if job.kind == "invert":
            fitted = "Fitted." if state == "done" else "Fitting stopped; the part fitted so far is kept."
            self._set_phase(IDLE, f"{fitted} Draw lines on the points layer and press Drag.")
            self.finished.emit(state)
            return
        if job.steps <= 0:
            kdoc = self.work_document()
            if kdoc is not None:
                kdoc.remove_preview()
            self._set_phase(IDLE, "Stopped before the first step; nothing changed.")
            self.finished.emit(state)
            return
        # The last preview may be a few steps old: fetch the final pixels for the preview layer.
        try:
            content = result_request(self.session.session_id, "changed", "BGRA8")
            self._request("get_result", content, "preview_final")
        except (ConnectionError, AttributeError) as exc:
            self._fail(str(exc))
            return
        self.finished.emit(state)

    def _done_text(self) -> str:
        """How the drag ended, in plain words: the measured outcome, a fallback if any, what to do next."""
        c = self.last_done
        verb = "Stopped" if c.get("state") == "cancelled" else "Done"
        parts = [f"{verb} after {plural(int(c.get('steps', 0) or 0), 'step')}.", sentence(arrival_text(c))]
        fallback = fallback_text(c)
        if fallback:
            parts.append(sentence(fallback))
        elif self.params.output == "transfer" and "output" not in c:
            parts.append("An older daemon: the result is the generator's picture, not your moved pixels.")
        if (c.get("frames") or {}).get("total"):
            parts.append(
                f"{plural(int(c['frames']['total']), 'frame')} kept: Apply as animation puts them on the timeline."
            )
        parts.append("Apply keeps it as a new layer; Reset discards it.")
        return " ".join(parts)

    def _show_image(self, desc: dict[str, Any], buffers: list[Any], rgba: bool = False) -> None:
        kdoc = self.work_document()
        if kdoc is None or self.session is None:
            return
        data = bytes(buffers[int(desc.get("buffer", 0))])
        if rgba or desc.get("format") == "RGBA8":
            data = geometry.rgba_to_bgra(data)
        layer = kdoc.preview_layer()
        if layer is None:
            source = self._session_source()
            if source is None:
                return
            layer = kdoc.ensure_preview(source)
        x, y = int(desc["offset"][0]), int(desc["offset"][1])
        kdoc.write_pixels(layer, data, x, y, int(desc["width"]), int(desc["height"]))

    # ------------------------------------------------------------------ failures
    def _on_lost(self, reason: str) -> None:
        was_busy = self.busy or self.phase == DONE
        self.session = None
        if self.job is not None:
            self.job.lose(reason)  # the job ends LOST: nothing more can come for it
        self._pending.clear()
        if was_busy:
            self._fail(f"{sentence(reason)} The document is as it was before the drag.")
        else:
            self.changed.emit()

    def _fail(self, text: str, keep_session: bool = False) -> None:
        kdoc = self.work_document()
        if kdoc is not None and self.phase in BUSY_PHASES + (DONE,):
            kdoc.remove_preview()
        if not keep_session and self.phase == OPENING:
            self.session = None
        if self.job is not None:
            self.job.lose(text)  # given up on here: a late message of it is not taken for a new job's
        self._after_open = None
        # A lost link is reported once with what it meant for the document; the send that noticed it fails with
        # the bare reason right after, which must not replace the fuller message.
        if not (text and self.error.startswith(text)):
            self.error = text
        self._set_phase(IDLE, "")

    def _close_session(self) -> None:
        s, self.session = self.session, None
        if s is not None and self.link.ready:
            try:
                self._request("close_session", {"session_id": s.session_id}, "close")
            except ConnectionError:
                pass

    def note(self, status: str) -> None:
        """A status line about the active document (no change of phase)."""
        kdoc = self.document()
        self.error = ""
        self.status = status
        self._status_key = kdoc.key if kdoc is not None else None
        self.changed.emit()

    def _set_phase(self, phase: str, status: str) -> None:
        self.phase = phase
        self.status = status
        work = self._work or self._kdoc
        self._status_key = work.key if work is not None else None
        if phase == OPENING and not self._status_timer.isActive():
            self._status_timer.start()
        if phase in (IDLE, DONE):
            self.queue_position = 0
        self.changed.emit()

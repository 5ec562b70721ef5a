"""One job (a fit or a drag) followed from its request to exactly one ending, without ever blocking.

Every client follows jobs the same way: Krita's docker from a QTimer, GIMP's plug-in from its run loop, `draggan
edit` and scripts through `Client.run_job`. So the rules live here once:

- A job ends in exactly one terminal state: DONE (job_done `done`), STOPPED (job_done `cancelled`), REFUSED (an
  error reply to the request, or job_done `failed`), or LOST (the daemon stopped answering heartbeats, or the
  connection went away). No UI that follows a `Job` can stay "busy": either a message ends it or `check` does.
- Nothing here waits. The owner hands in every message it receives (`handle` says whether it was the job's) and
  calls `check` with how long the daemon has been silent; sending goes through the owner's `send`.
- Progress is one fraction of the whole job (fit and drag on one bar, never going back) and plain words
  (`draggan_protocol.progress`); errors are the shared plain words (`draggan_protocol.outcome.error_text`).

A daemon answers heartbeats within milliseconds even while its worker computes, so a client that heartbeats every
HEARTBEAT_INTERVAL seconds and hears nothing for LOST_AFTER knows the daemon is gone, within a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .outcome import error_text, has_arrival, lost_text
from .progress import progress_words, queued_words

HEARTBEAT_INTERVAL = 1.0
"""Seconds between a following client's heartbeats (each is a few dozen bytes)."""

LOST_AFTER = 4.0
"""Seconds of silence after which the daemon counts as gone: four heartbeats in a row unanswered."""

SENT = "sent"  # the request is out, no reply yet
QUEUED = "queued"  # accepted, waiting behind other work
RUNNING = "running"
STOPPING = "stopping"  # cancel sent; the daemon stops after its current step
DONE = "done"
STOPPED = "stopped"
REFUSED = "refused"
LOST = "lost"
TERMINAL = (DONE, STOPPED, REFUSED, LOST)

Send = Callable[[str, dict, list], str]
"""The owner's way to send a request: (msg_type, content, buffers) → msg_id (Client.send, Krita's link.send)."""


class Job:
    """The client-side state of one job; see the module docstring for who drives it."""

    def __init__(self, kind: str, *, fit_first: bool = False, max_steps: int = 0, lost_after: float = LOST_AFTER):
        self.kind = kind  # "drag" | "invert"
        self.fit_first = fit_first  # a drag that fits the layer first: the fit fills the first part of the bar
        self.max_steps = max_steps  # the step limit asked for (the events say it too, from the daemon's side)
        self.lost_after = lost_after
        self.state = SENT
        self.request_id: str | None = None
        self.job_id: str | None = None
        self.queue_position = 0
        self.phase = ""  # the daemon's phase of the latest progress event: "invert" | "drag"
        self.phases: list[str] = []  # every phase seen, in order
        self.fraction = 0.0  # of the whole job, 0–1, never going back
        self.text = "Sending the request"
        self.arrival: dict[str, Any] = {}  # the latest drag event with measured arrival fields
        self.result: dict[str, Any] = {}  # job_done's content
        self.error_code = ""
        self.error = ""  # plain words when REFUSED or LOST
        self.refusal: dict[str, Any] = {}  # the daemon's own error content when REFUSED
        self.steps = 0  # steps reported so far (job_done's count at the end)
        self.preview_draft = False  # the latest preview was a draft (2.2); the words say so until a full one
        self.wants_stop = False  # Stop was pressed (perhaps before the reply named the job)

    # ------------------------------------------------------------------ driving
    def start(self, send: Send, msg_type: str, content: dict[str, Any], buffers: Sequence[Any] = ()) -> str:
        """Send the request that starts the job; returns its msg_id. Errors of `send` propagate (nothing sent)."""
        self.request_id = send(msg_type, content, list(buffers))
        return self.request_id

    def cancel(self, send: Send) -> bool:
        """Ask the daemon to stop after its current step; False when there is nothing to cancel (yet).

        Before the reply has named the job there is no job id to cancel: the stop is remembered and sent as soon
        as the reply comes (`wants_stop`)."""
        if self.finished:
            return False
        self.wants_stop = True
        if self.job_id is None:
            self.text = "Stopping as soon as the daemon answers"
            return False
        if self.state != STOPPING:
            send("cancel", {"job_id": self.job_id}, [])
            self.state = STOPPING
            self.text = "Stopping after the current step"
        return True

    def handle(self, msg: Any, send: Send | None = None) -> str | None:
        """Take one message; returns what it was for this job ("reply", "queued", "progress", "done") or None when
        it is not this job's. `send` lets a stop asked before the reply go out when the reply comes."""
        if self.finished:
            return None
        content: Mapping[str, Any] = msg.content if isinstance(msg.content, Mapping) else {}
        if self.job_id is None:
            if msg.parent != self.request_id or not (msg.msg_type.endswith("_reply") or msg.msg_type == "error"):
                return None
            if msg.is_error or "job_id" not in content:
                self._refuse(content)
                return "done"
            self.job_id = str(content["job_id"])
            self._queued(int(content.get("queue_position") or 0))
            if self.wants_stop and send is not None:
                self.cancel(send)
            return "reply"
        if content.get("job_id") != self.job_id:
            return None
        if msg.msg_type == "job_queued":
            self._queued(int(content.get("position") or 0))
            return "queued"
        if msg.msg_type == "progress":
            self._progress(content)
            return "progress"
        if msg.msg_type == "job_done":
            self._done(content)
            return "done"
        if msg.msg_type == "error":
            self._refuse(content)
            return "done"
        return None

    def check(self, silent_for: float) -> bool:
        """Called regularly with how long the daemon has said nothing; True when that made the job LOST."""
        if self.finished or silent_for <= self.lost_after:
            return False
        self.lose(lost_text(silent_for))
        return True

    def lose(self, reason: str) -> None:
        """The connection is gone (noticed by the owner, or by `check`): the job ends LOST with `reason`."""
        if not self.finished:
            self.state = LOST
            self.error = reason
            self.text = reason

    # ------------------------------------------------------------------ what a UI shows
    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def busy_indicator(self) -> bool:
        """True while no fraction means anything yet (sent, queued, stopping): show a busy bar instead."""
        return self.state in (SENT, QUEUED, STOPPING)

    # ------------------------------------------------------------------ transitions
    def _queued(self, position: int) -> None:
        self.queue_position = max(position, 0)
        if self.state in (SENT, QUEUED):
            self.state = QUEUED
            self.text = queued_words(self.queue_position)

    def _progress(self, c: Mapping[str, Any]) -> None:
        phase = str(c.get("phase") or "")
        if phase and (not self.phases or self.phases[-1] != phase):
            self.phases.append(phase)
        self.phase = phase
        self.queue_position = 0
        if phase == "drag":
            try:
                self.steps = int(c.get("step") or 0)
            except (TypeError, ValueError):
                pass
            if has_arrival(c):
                self.arrival = dict(c)
        if "preview" in c:
            self.preview_draft = bool(c.get("preview_draft"))
        fraction, words = progress_words(
            c,
            max_steps=self.max_steps,
            arrival=self.arrival or None,
            fit_first=self.fit_first,
            draft=self.preview_draft,
        )
        self.fraction = max(self.fraction, min(max(fraction, 0.0), 1.0))
        if self.state != STOPPING:
            self.state = RUNNING
            self.text = words

    def _done(self, c: Mapping[str, Any]) -> None:
        self.result = dict(c)
        state = c.get("state")
        if state == "failed":
            self._refuse(c)
            return
        try:
            self.steps = int(c.get("steps") or 0)
        except (TypeError, ValueError):
            pass
        if has_arrival(c):
            self.arrival = dict(c)
        self.state = STOPPED if state == "cancelled" else DONE
        if self.state == DONE:
            self.fraction = 1.0

    def _refuse(self, c: Mapping[str, Any]) -> None:
        self.state = REFUSED
        self.refusal = dict(c)
        self.error_code = str(c.get("code") or "")
        self.error = error_text(self.error_code, str(c.get("message") or ""))
        self.text = self.error

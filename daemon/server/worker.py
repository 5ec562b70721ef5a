"""The device worker: one thread that runs engine tasks one at a time, in order, and reports through `post`.

The socket thread only ever enqueues, cancels and reads positions; it never waits for the engine. Tasks are
"open" and "result" (answered with their request's reply) and the jobs "invert" and "drag" (answered at once
with a job id by the socket thread, then progress events and a final job_done from here).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from draggan_protocol.errors import ProtocolError
from draggan_protocol.spec import ErrorCode

from .engine_ops import EngineOps
from .logs import event
from .sessions import Session, SessionStore

log = logging.getLogger("draggan.worker")

# post(identity, msg_type, content, buffers, parent_msg_id)
Post = Callable[[bytes, str, dict[str, Any], list[Any], str | None], None]
JOB_KINDS = ("invert", "drag", "suggest")


@dataclass
class Task:
    kind: str  # "open" | "result" | "invert" | "drag"
    owner: bytes
    request_id: str
    session: Session
    content: dict[str, Any]
    buffers: list[Any] = field(default_factory=list)
    job_id: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None
    released: bool = False  # session/job bookkeeping done (before the final message goes out)

    @property
    def is_job(self) -> bool:
        return self.kind in JOB_KINDS


def warm_up() -> None:
    """Pay one-off import costs before serving: the first torch optimiser built in a process imports
    torch._dynamo (seconds, mostly holding the GIL). Done on the worker thread it would stall the socket loop,
    so the daemon calls this before it starts its threads. Cheap after the first call."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def new_job_id() -> str:
    return uuid.uuid4().hex


def error_content(exc: BaseException) -> dict[str, Any]:
    """The error fields a failure of engine work is reported with (in a reply or in job_done)."""
    from draggan_daemon.engine.errors import EngineInputError

    try:
        from draggan_daemon.engine.loaders import CheckpointError
    except ImportError:  # pragma: no cover - loaders always present in a full install
        CheckpointError = ()  # type: ignore[assignment]  # noqa: N806
    if isinstance(exc, ProtocolError):
        return exc.to_content()
    if isinstance(exc, EngineInputError):
        return {"status": "error", "code": ErrorCode.INVALID_INPUT, "message": str(exc)}
    if isinstance(exc, KeyError):
        return {"status": "error", "code": ErrorCode.MODEL_NOT_FOUND, "message": str(exc.args[0] if exc.args else exc)}
    if CheckpointError and isinstance(exc, CheckpointError):
        return {"status": "error", "code": ErrorCode.MODEL_LOAD_FAILED, "message": str(exc)}
    return {"status": "error", "code": ErrorCode.INTERNAL_ERROR, "message": f"{type(exc).__name__}: {exc}"}


class Worker:
    def __init__(self, ops: EngineOps, store: SessionStore, post: Post, max_queue: int = 64) -> None:
        self.ops = ops
        self.store = store
        self.post = post
        self.max_queue = max_queue
        self.queue: deque[Task] = deque()
        self.running: Task | None = None
        self.jobs: dict[str, Task] = {}  # job id -> task, queued or running
        self._cond = threading.Condition()
        self._stopping = False
        self.completed = 0
        self._threads = torch.get_num_threads()  # OpenMP settings are per thread: carry the creator's over
        self.thread = threading.Thread(target=self._loop, name="draggan-worker", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            for t in self.queue:
                t.cancel.set()
            if self.running is not None:
                self.running.cancel.set()
            self._cond.notify_all()
        self.thread.join(timeout)

    # ------------------------------------------------------------------ called from the socket thread
    def submit(self, task: Task) -> int:
        """Queue a task; returns how many tasks are ahead of it (0 = runs now)."""
        with self._cond:
            if len(self.queue) >= self.max_queue:
                raise ProtocolError(ErrorCode.QUEUE_FULL, f"{len(self.queue)} tasks are waiting; try again later")
            self.queue.append(task)
            if task.job_id:
                self.jobs[task.job_id] = task
            position = len(self.queue) - 1 + (1 if self.running is not None else 0)
            self._cond.notify_all()
            return position

    def tasks_of(self, session: Session) -> list[Task]:
        """The session's queued tasks and its running one (last), at this moment."""
        with self._cond:
            tasks = [t for t in self.queue if t.session is session]
            if self.running is not None and self.running.session is session:
                tasks.append(self.running)
        return tasks

    def queue_length(self) -> int:
        with self._cond:
            return len(self.queue) + (1 if self.running is not None else 0)

    def find_job(self, job_id: str, owner: bytes) -> Task:
        with self._cond:
            task = self.jobs.get(job_id)
        if task is None:
            raise ProtocolError(ErrorCode.JOB_NOT_FOUND, f"no queued or running job {job_id!r}", field="job_id")
        if task.owner != owner:
            raise ProtocolError(ErrorCode.FORBIDDEN, "this job belongs to another client", field="job_id")
        return task

    def cancel(self, task: Task, reason: str = "cancelled by the client") -> str:
        """Cancel a job or task; returns 'queued' (removed, reported now) or 'running' (stops within one step)."""
        with self._cond:
            task.cancel.set()
            if task in self.queue:
                self.queue.remove(task)
                self._finish_bookkeeping(task)
                was = "queued"
            else:
                was = "running"
        if was == "queued":
            self._report_cancelled_queued(task, reason)
            self._notify_positions()
        return was

    def cancel_owner(self, owner: bytes, reason: str) -> int:
        with self._cond:
            tasks = [t for t in self.queue if t.owner == owner]
            if self.running is not None and self.running.owner == owner:
                tasks.append(self.running)
        for t in tasks:
            self.cancel(t, reason)
        return len(tasks)

    def positions_for(self, owner: bytes) -> list[dict[str, Any]]:
        with self._cond:
            ordered = ([self.running] if self.running else []) + list(self.queue)
        return [
            {"job_id": t.job_id, "kind": t.kind, "session_id": t.session.session_id, "position": i}
            for i, t in enumerate(ordered)
            if t.owner == owner
        ]

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        torch.set_num_threads(self._threads)
        while True:
            with self._cond:
                while not self.queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                task = self.queue.popleft()
                self.running = task
            self._notify_positions()
            try:
                self._run(task)
            finally:
                with self._cond:
                    self.running = None
                    self._finish_bookkeeping(task)
                    self.completed += 1
                self._free_if_closing(task.session)

    def _finish_bookkeeping(self, task: Task) -> None:
        """Session and job tables once a task leaves the queue or finishes. Runs before the task's final message
        is posted, so a client that reacts to job_done at once finds the session free. Idempotent."""
        if task.released:
            return
        task.released = True
        if task.job_id:
            self.jobs.pop(task.job_id, None)
        with self.store.lock:
            s = task.session
            if task.is_job:
                if s.active_job == task.job_id:
                    s.active_job = None
            else:
                s.pending_tasks = max(0, s.pending_tasks - 1)
            s.touch()

    def _release(self, task: Task) -> None:
        with self._cond:
            self._finish_bookkeeping(task)

    def _free_if_closing(self, s: Session) -> None:
        with self.store.lock:
            if s.closing and not s.busy:
                self.store.remove(s.session_id)
                s.history.clear()
                s.layer = s.prepared = None

    def _notify_positions(self) -> None:
        with self._cond:
            queued = list(self.queue)
        for i, t in enumerate(queued):
            if t.job_id:
                self.post(t.owner, "job_queued", {"job_id": t.job_id, "position": i + 1}, [], t.request_id)

    def _report_cancelled_queued(self, task: Task, reason: str) -> None:
        if task.is_job:
            content = {"job_id": task.job_id, "kind": task.kind, "state": "cancelled", "message": reason, "steps": 0}
            self.post(task.owner, "job_done", content, [], task.request_id)
        else:
            content = {"status": "error", "code": ErrorCode.SESSION_NOT_FOUND, "message": f"cancelled: {reason}"}
            self.post(task.owner, f"{_REQUEST[task.kind]}_reply", content, [], task.request_id)
            if task.kind == "open":
                self.store.remove(task.session.session_id)

    def _run(self, task: Task) -> None:
        task.started = time.monotonic()
        s = task.session
        fields = {"kind": task.kind, "session": s.session_id[:8], "job": (task.job_id or "")[:8]}
        event(log, "task_start", logging.DEBUG, waited=round(task.started - task.enqueued, 3), **fields)
        if task.is_job and task.cancel.is_set():
            self._release(task)
            self._report_cancelled_queued(task, "cancelled before it started")
            return
        if task.kind != "open" and (s.closing or not s.ready or s.session_id not in self.store.sessions):
            self._release(task)
            content = {
                "status": "error",
                "code": ErrorCode.SESSION_NOT_FOUND,
                "message": "the session was closed, or could not be opened",
            }
            if task.is_job:
                content.pop("status")
                self.post(
                    task.owner,
                    "job_done",
                    {"job_id": task.job_id, "kind": task.kind, "state": "failed", **content},
                    [],
                    task.request_id,
                )
            else:
                self.post(task.owner, f"{_REQUEST[task.kind]}_reply", content, [], task.request_id)
            return
        try:
            if task.kind == "open":
                content = {"status": "ok", **self.ops.open(s, task.content, task.buffers)}
                self._release(task)
                self.post(task.owner, "open_session_reply", content, [], task.request_id)
            elif task.kind == "result":
                desc, frames = self.ops.result(
                    s, task.content["area"], task.content["format"], task.content.get("output")
                )
                self._release(task)
                self.post(task.owner, "get_result_reply", {"status": "ok", **desc}, frames, task.request_id)
            else:
                self._run_job(task)
        except Exception as exc:  # every failure becomes a reply; the worker never dies
            content = error_content(exc)
            level = logging.ERROR if content["code"] == ErrorCode.INTERNAL_ERROR else logging.INFO
            event(log, "task_failed", level, code=content["code"], error=content["message"], **fields)
            if content["code"] == ErrorCode.INTERNAL_ERROR:
                log.error("task_traceback\n%s", traceback.format_exc())
            if task.kind == "open":
                self.store.remove(s.session_id)
            self._release(task)
            if task.is_job:
                done = {"job_id": task.job_id, "kind": task.kind, "state": "failed", **content}
                done.pop("status", None)
                self.post(task.owner, "job_done", done, [], task.request_id)
            else:
                self.post(task.owner, f"{_REQUEST[task.kind]}_reply", content, [], task.request_id)
        else:
            event(log, "task_done", seconds=round(time.monotonic() - task.started, 3), **fields)

    def _run_job(self, task: Task) -> None:
        s = task.session

        def progress(content: dict[str, Any], frames: list[Any]) -> None:
            self.post(task.owner, "progress", content, frames, task.request_id)

        stop = task.cancel.is_set
        if task.kind == "invert":
            result = self.ops.invert(s, task.content, task.job_id or "", progress, stop)
        elif task.kind == "suggest":
            result = self.ops.suggest(s, task.content, task.job_id or "", progress, stop)
        else:
            result = self.ops.drag(s, task.content, task.buffers, task.job_id or "", progress, stop)
        done = {"job_id": task.job_id, "kind": task.kind, **result}
        self._release(task)
        self.post(task.owner, "job_done", done, [], task.request_id)


_REQUEST = {"open": "open_session", "result": "get_result"}

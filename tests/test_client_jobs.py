"""The shared job tracker (draggan_protocol.jobs): exactly one ending per job, one bar, plain words; and the same
tracker against a real daemon on loopback, including one that is SIGKILLed mid-drag."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from draggan_protocol import Client, DaemonError, DaemonUnreachable
from draggan_protocol import jobs as J
from draggan_protocol.client import drag_request
from draggan_protocol.outcome import ERROR_HINTS, START_DAEMON, error_text
from draggan_protocol.progress import DRAFT_WORDS, FIT_SHARE, progress_words
from draggan_protocol.spec import ERROR_CODES

sys.path.insert(0, str(Path(__file__).parent))
from gimp_env import spawn_daemon_process, start_daemon  # noqa: E402


def msg(msg_type: str, parent: str | None = None, **content) -> SimpleNamespace:
    return SimpleNamespace(msg_type=msg_type, parent=parent, content=content, buffers=[], is_error=msg_type == "error")


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def __call__(self, msg_type: str, content: dict, buffers: list) -> str:
        self.sent.append((msg_type, content))
        return f"m{len(self.sent)}"


def started(kind: str = "drag", **kw) -> tuple[J.Job, Sender]:
    send = Sender()
    job = J.Job(kind, **kw)
    job.start(send, kind, {"session_id": "s"})
    return job, send


ARRIVED = {"asked": [10.0], "moved": [6.0], "remaining": [4.0]}


def test_a_drag_goes_sent_queued_running_done_with_one_bar_that_never_goes_back():
    job, send = started(fit_first=True, max_steps=200)
    assert job.state == J.SENT and job.busy_indicator
    assert job.handle(msg("drag_reply", "m1", job_id="j", queue_position=2), send) == "reply"
    assert job.state == J.QUEUED and "number 2" in job.text
    assert job.handle(msg("progress", "m1", job_id="j", phase="invert", fit_step=30, fit_steps=60)) == "progress"
    assert job.fraction == pytest.approx(FIT_SHARE * 0.5) and "Fitting your layer" in job.text
    assert job.handle(msg("progress", "m1", job_id="j", phase="drag", step=10, max_steps=200, **ARRIVED))
    # the slowest handle came 6 of 10 px: more than 10 of 200 steps say
    assert job.fraction == pytest.approx(FIT_SHARE + (1 - FIT_SHARE) * 0.6)
    assert "at most 200" in job.text and "6 of 10 px" in job.text and job.phases == ["invert", "drag"]
    high = job.fraction
    job.handle(
        msg(
            "progress",
            "m1",
            job_id="j",
            phase="drag",
            step=11,
            max_steps=200,
            moved=[1.0],
            asked=[10.0],
            remaining=[9.0],
        )
    )
    assert job.fraction == high, "the bar went back"
    assert job.handle(msg("job_done", "m1", job_id="j", state="done", steps=12, **ARRIVED)) == "done"
    assert job.state == J.DONE and job.finished and job.fraction == 1.0 and job.steps == 12
    assert job.handle(msg("progress", "m1", job_id="j", phase="drag", step=13)) is None  # nothing after the end


def test_the_words_say_a_draft_preview_is_a_draft_until_a_full_one_comes():
    """A painter who sees a softer picture during the drag is told it is a draft (2.2 `preview_draft`), on the
    steps between previews too (the status line does not flicker), until a full-detail preview comes."""
    job, send = started(max_steps=20)
    job.handle(msg("drag_reply", "m1", job_id="j", queue_position=0), send)
    job.handle(msg("progress", "m1", job_id="j", phase="drag", step=1, preview={}, preview_res=64))
    assert DRAFT_WORDS not in job.text and not job.preview_draft  # a 2.1 daemon: nothing is said
    job.handle(msg("progress", "m1", job_id="j", phase="drag", step=2, preview={}, preview_res=64, preview_draft=True))
    assert job.text == "Dragging, step 2 (at most 20) – " + DRAFT_WORDS and job.preview_draft
    job.handle(msg("progress", "m1", job_id="j", phase="drag", step=3, **ARRIVED))  # no preview on this step
    assert job.text.endswith(" – " + DRAFT_WORDS) and "6 of 10 px" in job.text
    job.handle(
        msg("progress", "m1", job_id="j", phase="drag", step=4, preview={}, preview_res=256, preview_draft=False)
    )
    assert DRAFT_WORDS not in job.text


def test_messages_of_other_jobs_and_requests_are_not_taken():
    job, send = started()
    assert job.handle(msg("drag_reply", "other", job_id="x")) is None
    job.handle(msg("drag_reply", "m1", job_id="j"))
    assert job.handle(msg("progress", "m9", job_id="x", phase="drag", step=3)) is None
    assert job.handle(msg("job_done", "m9", job_id="x", state="done")) is None
    assert not job.finished


@pytest.mark.parametrize(
    ("ending", "state"),
    [
        (msg("error", "m1", code="session_not_found", message="no session s"), J.REFUSED),
        (msg("job_done", "m1", job_id="j", state="failed", code="invalid_input", message="all transparent"), J.REFUSED),
        (msg("job_done", "m1", job_id="j", state="cancelled", steps=3), J.STOPPED),
        (msg("job_done", "m1", job_id="j", state="done", steps=3), J.DONE),
    ],
)
def test_every_ending_is_exactly_one_terminal_state(ending, state):
    job, send = started()
    if ending.msg_type != "error":
        job.handle(msg("drag_reply", "m1", job_id="j"))
    assert job.handle(ending) == "done"
    assert job.state == state and job.finished and not job.busy_indicator
    if state == J.REFUSED:
        assert job.error == error_text(ending.content["code"], ending.content["message"])
        assert ending.content["message"] in job.error and job.text == job.error
    job.lose("late")  # nothing changes an ended job
    assert job.state == state


def test_a_silent_daemon_makes_the_job_lost_with_the_start_command():
    job, send = started()
    job.handle(msg("drag_reply", "m1", job_id="j"))
    assert not job.check(J.LOST_AFTER - 0.1) and job.state == J.QUEUED
    assert job.check(J.LOST_AFTER + 0.5) and job.state == J.LOST
    assert "stopped answering" in job.error and START_DAEMON in job.error
    assert not job.check(100.0)  # lost once


def test_stop_before_the_reply_is_sent_when_the_reply_names_the_job():
    job, send = started()
    assert job.cancel(send) is False and job.wants_stop and send.sent == [("drag", {"session_id": "s"})]
    job.handle(msg("drag_reply", "m1", job_id="j"), send)
    assert send.sent[-1] == ("cancel", {"job_id": "j"}) and job.state == J.STOPPING
    job.handle(msg("progress", "m1", job_id="j", phase="drag", step=4, max_steps=200))
    assert job.state == J.STOPPING and "Stopping" in job.text  # a late step does not look like it runs on
    assert job.cancel(send) and len(send.sent) == 2  # one cancel, however often Stop is pressed
    job.handle(msg("job_done", "m1", job_id="j", state="cancelled", steps=4))
    assert job.state == J.STOPPED


def test_every_error_code_a_person_can_meet_has_plain_words():
    missing = [
        c
        for c in ERROR_CODES
        if c not in ERROR_HINTS
        and c
        not in ("bad_message", "bad_header", "unknown_message_type", "bad_buffer", "job_not_found", "nothing_to_undo")
    ]
    assert not missing
    assert "too large" in error_text("too_large", "9000×9000").lower() and "(9000×9000)" in error_text(
        "too_large", "9000×9000"
    )
    assert error_text(None, "") == "The daemon reported an error."
    assert error_text("weird", "boom") == "boom"


def test_progress_words_say_at_most_only_when_a_limit_is_known():
    assert progress_words({"phase": "drag", "step": 4}) == (0.0, "Dragging, step 4")
    f, words = progress_words({"phase": "drag", "step": 50}, max_steps=200)
    assert f == 0.25 and words == "Dragging, step 50 (at most 200)"
    f, words = progress_words({"phase": "invert", "stage": "w+", "step": 3, "steps": 4})
    assert f == 0.75 and "(details)" in words and "w+" not in words


# ---------------------------------------------------------------------- against a real daemon on loopback
def test_a_real_drag_followed_without_blocking(tmp_path):
    daemon = start_daemon(tmp_path / "c.json")
    try:
        with Client(daemon.endpoint, daemon.key.encode(), heartbeat_interval=J.HEARTBEAT_INTERVAL) as c:
            sid = c.open_seed_session(seed=4)["session_id"]
            content, buffers = drag_request(sid, [(20, 20, 26, 20)], params={"steps": 6}, preview_every=2)
            job = c.start_job("drag", content, buffers, max_steps=6)
            fractions, calls = [], 0
            t_end = time.monotonic() + 120
            while not job.finished and time.monotonic() < t_end:
                t0 = time.monotonic()
                c.follow(job, 0.0)  # a GUI timer's call: returns at once
                assert time.monotonic() - t0 < 0.5
                fractions.append(job.fraction)
                calls += 1
                time.sleep(0.02)
            assert job.state == J.DONE and job.result["steps"] >= 1 and calls > 1
            assert fractions == sorted(fractions) and fractions[-1] == 1.0
            with pytest.raises(DaemonError) as refused:
                c.run_job("drag", {"session_id": "nope", "points": [[1, 1, 2, 2]], "params": {}})
            assert refused.value.code == "session_not_found"
    finally:
        daemon.server.stop()


@pytest.mark.slow
def test_a_daemon_killed_mid_drag_is_reported_within_five_seconds(tmp_path):
    conn = tmp_path / "c.json"
    proc = spawn_daemon_process(conn)
    try:
        with Client.connect(conn, heartbeat_interval=J.HEARTBEAT_INTERVAL) as c:
            sid = c.open_seed_session(seed=1)["session_id"]
            content, buffers = drag_request(sid, [(5, 5, 30, 30)], params={"steps": 5000, "stop_distance": 0})
            job = c.start_job("drag", content, buffers)
            while job.state != J.RUNNING:
                c.follow(job, 0.1)
                assert not job.finished, job.text
            proc.kill()
            killed = time.monotonic()
            while not job.finished:
                c.follow(job, 0.1)
            assert job.state == J.LOST and time.monotonic() - killed < 5.0, (job.state, time.monotonic() - killed)
            assert START_DAEMON in job.error
            with pytest.raises(DaemonUnreachable):
                c.run_job("drag", content, buffers)
    finally:
        proc.kill()
        proc.wait(10)


def test_the_client_adopts_the_daemons_announced_limits():
    """A daemon started with a larger frame limit is believed once its signed hello_reply says so (issue 14, F8:
    the pure-Python transport caps frames at the protocol's default until then)."""
    from draggan_protocol.spec import DEFAULT_LIMITS
    from test_daemon_support import client_for, running_daemon

    bigger = DEFAULT_LIMITS["max_frame_bytes"] + 2**20
    with running_daemon(limits={"max_frame_bytes": bigger}) as server:
        with client_for(server, transport_kind="zmtp") as c:
            assert c.limits is None
            c.hello()
            assert c.limits["max_frame_bytes"] == bigger and c.transport.max_frame_bytes >= bigger

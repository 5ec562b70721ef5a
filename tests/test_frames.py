"""Issue 13, item 1: a drag keeps frames (every k-th step and the result), compressed within a per-session budget,
fetched afterwards with get_frames in chunks the client's reply budget allows. Against a real daemon on loopback.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from draggan_daemon.server.sessions import FrameStore
from draggan_protocol import ErrorCode
from draggan_protocol.client import drag_request, frames_request, image_from_message
from draggan_protocol.errors import DaemonError
from draggan_protocol.validation import validate_request
from test_daemon_support import client_for, running_daemon


def pixels_of(img) -> np.ndarray:
    return np.frombuffer(img.pixels, np.uint8).reshape(img.height, img.width, 4)


def noisy_layer(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    layer = rng.integers(0, 256, (60, 80, 4), dtype=np.uint8)
    layer[..., 3] = 255
    return layer


# ---------------------------------------------------------------------- the store
def _frame(value: int, side: int = 16) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (side, side, 4), dtype=np.uint8)  # incompressible: ~1 KiB a frame


def test_the_store_thins_to_every_other_frame_and_never_passes_its_budget():
    one = len(zlib.compress(_frame(0).tobytes(), 1))
    store = FrameStore(every=1, budget=5 * one + 40, rect=(0, 0, 16, 16), output="transfer")
    kept_steps = []
    for step in range(40):
        if store.wants(step):
            store.add(step, _frame(step))
        assert store.bytes <= store.budget
        kept_steps = [f[0] for f in store.frames]
    store.add(40, _frame(40), final=True)
    assert store.bytes <= store.budget
    steps = [f[0] for f in store.frames]
    assert steps[0] == 0 and steps[-1] == 40 and store.frames[-1][1] is True
    assert store.thinned >= 3 and store.every == 2**store.thinned
    assert all(s % store.every == 0 for s in steps[:-1]), steps  # evenly spaced after thinning
    assert len(steps) <= 5 and kept_steps
    # what comes back is what went in
    step, final, raw = store.read(len(store) - 1, 1)[0]
    assert (step, final) == (40, True) and raw == _frame(40).tobytes()


def test_the_final_frame_replaces_a_frame_of_the_same_step_and_a_wrong_size_is_refused():
    store = FrameStore(every=1, budget=10**6, rect=(0, 0, 16, 16), output="generator")
    store.add(0, _frame(0))
    store.add(1, _frame(1))
    store.add(1, _frame(7), final=True)  # the last step found every handle arrived: no update, same picture
    assert [(f[0], f[1]) for f in store.frames] == [(0, False), (1, True)]
    assert store.read(1, 1)[0][2] == _frame(7).tobytes()
    with pytest.raises(ValueError):
        store.add(2, _frame(2, side=8))


def test_the_request_fields_are_checked():
    content, _ = drag_request("s", [(1, 2, 3, 4)], frames=2, frames_max_bytes=1000)
    assert validate_request("drag", content)["frames"] == {"every": 2, "max_bytes": 1000}
    assert "frames" not in validate_request("drag", drag_request("s", [(1, 2, 3, 4)])[0])
    for bad in ({"every": 0}, {"every": 5001}, {"every": 1.5}, "all"):
        with pytest.raises(Exception) as err:
            validate_request("drag", {**content, "frames": bad})
        assert "frames" in str(err.value)
    assert validate_request("get_frames", frames_request("s"))["start"] == 0
    with pytest.raises(Exception, match="start"):
        validate_request("get_frames", frames_request("s", start=-1))
    with pytest.raises(Exception, match="format"):
        validate_request("get_frames", frames_request("s", format="A8"))


# ---------------------------------------------------------------------- a real daemon
def test_frames_are_the_previews_of_their_steps_and_the_last_is_the_result():
    layer = noisy_layer()
    with running_daemon() as server, client_for(server) as c:
        assert c.hello()["capabilities"]["frames"] is True
        assert c.daemon_info["limits"]["max_frames_bytes"] > 0
        sid = c.open_layer_session(layer.tobytes(), 80, 60, region=(10, 8, 40, 40), offset=(5, 6))["session_id"]
        previews = {}

        def on_progress(m):
            if m.msg_type == "progress" and "preview" in m.content:
                previews[m.content["step"]] = pixels_of(image_from_message(m, "preview"))

        done = c.drag(
            sid,
            [(20, 20, 30, 26)],
            params={"steps": 6, "stop_distance": 0},
            preview_every=1,
            frames=1,
            on_progress=on_progress,
        )
        assert done["state"] == "done" and done["steps"] == 6
        assert done["frames"]["total"] == 7 and done["frames"]["every"] == 1 and done["frames"]["thinned"] == 0
        frames = c.get_frames(sid)
        assert [f.step for f in frames] == [0, 1, 2, 3, 4, 5, 6]
        assert [f.final for f in frames] == [False] * 6 + [True]
        assert all(f.rect == (10, 8, 40, 40) and f.offset == (15, 14) for f in frames)
        for f in frames[:-1]:  # frame k shows the latent the preview of step k + 1 shows
            assert np.array_equal(pixels_of(f), previews[f.step + 1]), f.step
        result = pixels_of(c.get_result(sid, area="changed"))
        assert np.array_equal(pixels_of(frames[-1]), result)
        # the first frame is the drag's start: with zero motion the transfer keeps the layer's own pixels
        assert np.array_equal(pixels_of(frames[0]), layer[8:48, 10:50])
        bgra = c.get_frames(sid, format="BGRA8", start=6)
        assert len(bgra) == 1 and np.array_equal(pixels_of(bgra[0])[..., [2, 1, 0, 3]], result)


def test_every_kth_step_in_generator_mode_with_previews_on_their_own_schedule():
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_seed_session(seed=4)["session_id"]
        preview_steps = []

        def on_progress(m):
            if m.msg_type == "progress" and "preview" in m.content:
                preview_steps.append(m.content["step"])

        done = c.drag(
            sid,
            [(8, 8, 20, 14)],
            params={"steps": 9, "stop_distance": 0},
            preview_every=4,
            output="generator",
            frames=3,
            on_progress=on_progress,
        )
        assert preview_steps == [4, 8]
        frames = c.get_frames(sid)
        assert [f.step for f in frames] == [0, 3, 6, 9] and frames[-1].final
        assert not np.array_equal(pixels_of(frames[0]), pixels_of(frames[-1])), "the frames show no drag"
        assert np.array_equal(pixels_of(frames[-1]), pixels_of(c.get_result(sid, area="changed")))
        assert done["frames"]["output"] == "generator"
        # a drag without frames drops them: frames belong to the session's last drag
        c.drag(sid, [(8, 8, 12, 12)], params={"steps": 2})
        with pytest.raises(DaemonError) as err:
            c.get_frames(sid)
        assert err.value.code == ErrorCode.INVALID_INPUT and "kept no frames" in err.value.message


def test_the_budget_holds_by_thinning():
    layer = noisy_layer(1)  # noise: the frames hardly compress
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_layer_session(layer.tobytes(), 80, 60, region=(0, 0, 80, 60))["session_id"]
        one = 80 * 60 * 4
        budget = 4 * one
        done = c.drag(
            sid, [(30, 30, 40, 34)], params={"steps": 20, "stop_distance": 0}, frames=1, frames_max_bytes=budget
        )
        info = done["frames"]
        assert info["bytes_kept"] <= budget and info["budget_bytes"] == budget
        assert info["thinned"] >= 1 and info["every"] == 2 ** info["thinned"] and info["asked_every"] == 1
        frames = c.get_frames(sid)
        steps = [f.step for f in frames]
        assert steps[0] == 0 and frames[-1].final and steps[-1] == 20
        assert all(s % info["every"] == 0 for s in steps[:-1]) and len(steps) == info["total"] <= 5
        # a client cannot ask for more than the daemon's budget
        big = c.drag(sid, [(30, 30, 40, 34)], params={"steps": 2}, frames=1, frames_max_bytes=2**40)
        assert big["frames"]["budget_bytes"] == server.limits["max_frames_bytes"]


def test_frames_come_in_chunks_within_the_reply_backlog():
    layer = noisy_layer(2)
    with running_daemon(limits={"max_reply_backlog_bytes": 3 * 40 * 40 * 4}) as server, client_for(server) as c:
        sid = c.open_layer_session(layer.tobytes(), 80, 60, region=(10, 8, 40, 40))["session_id"]
        c.drag(sid, [(20, 20, 30, 26)], params={"steps": 7, "stop_distance": 0}, frames=1)
        first = c.request("get_frames", frames_request(sid)).content
        assert first["count"] == 3 and first["next"] == 3 and first["total"] == 8
        chunks = []
        frames = c.get_frames(sid, on_chunk=lambda got, total: chunks.append((got, total)))
        assert [f.step for f in frames] == list(range(8)) and chunks == [(3, 8), (6, 8), (8, 8)]
        assert [f.step for f in c.get_frames(sid, start=2, count=2)] == [2, 3]


def test_bad_frame_requests_are_refused_clearly():
    with running_daemon() as server, client_for(server) as c, client_for(server) as other:
        sid = c.open_seed_session(seed=1)["session_id"]
        with pytest.raises(DaemonError) as err:
            c.get_frames(sid)
        assert err.value.code == ErrorCode.INVALID_INPUT and err.value.content.get("field") == "session_id"
        c.drag(sid, [(8, 8, 12, 12)], params={"steps": 3, "stop_distance": 0}, frames=1)
        with pytest.raises(DaemonError) as err:
            c.get_frames(sid, start=4)
        assert err.value.code == ErrorCode.INVALID_CONTENT and "past the last frame (4 kept)" in err.value.message
        with pytest.raises(DaemonError) as err:
            other.get_frames(sid)
        assert err.value.code == ErrorCode.FORBIDDEN
        with pytest.raises(DaemonError) as err:
            c.get_frames("no-such-session")
        assert err.value.code == ErrorCode.SESSION_NOT_FOUND
        # while a drag runs, its frames are not ready
        content, _ = drag_request(sid, [(8, 8, 30, 30)], params={"steps": 5000, "stop_distance": 0}, frames=1)
        job = c.request("drag", content).content["job_id"]
        with pytest.raises(DaemonError) as err:
            c.get_frames(sid)
        assert err.value.code == ErrorCode.BUSY
        c.cancel(job)


def test_a_drag_that_arrives_ends_on_the_picture_of_its_last_step():
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_seed_session(seed=2)["session_id"]
        # the handle is on its target: the first step finds it arrived and makes no update
        done = c.drag(sid, [(8, 8, 8, 8)], params={"steps": 50}, frames=1)
        assert done["steps"] == 1 and done["reached"]
        frames = c.get_frames(sid)
        assert [(f.step, f.final) for f in frames] == [(0, True)]
        assert np.array_equal(pixels_of(frames[0]), pixels_of(c.get_result(sid, area="changed")))


# ---------------------------------------------------------------------- draggan edit --frames
def _edit(tmp_path, server, *extra: str) -> tuple[int, str]:
    import contextlib
    import io

    from draggan_daemon.server import edit_cli
    from draggan_protocol import ConnectionInfo, write_connection_file

    conn = write_connection_file(
        ConnectionInfo(endpoint=server.endpoint, key=server.config.key.decode()), tmp_path / "daemon.json"
    )
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = edit_cli.main([
            str(tmp_path / "in.png"), "--drag", "30,20:38,24", "--steps", "5", "--set", "stop_distance=0",
            "--set", "lr=0.05", "--invert-steps", "2", "-o", str(tmp_path / "out.png"), "--connection-file",
            str(conn), "--output-mode", "generator", "-q", *extra,
        ])  # fmt: skip
    return rc, err.getvalue()


def test_edit_writes_a_gif_with_one_frame_per_kept_step_and_numbered_pngs(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    src = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "in.png")
    with running_daemon() as server:
        rc, err = _edit(tmp_path, server, "--frames", str(tmp_path / "drag.gif"), "--frame-ms", "70")
        assert rc == 0, err
        assert "wrote 6 frames" in err, err  # steps 0..4 and the result
        with Image.open(tmp_path / "drag.gif") as gif:
            assert gif.n_frames == 6 and gif.size == (64, 48)
            durations = []
            for i in range(gif.n_frames):
                gif.seek(i)
                durations.append(gif.info["duration"])
            assert durations == [70] * 6
            gif.seek(5)
            last = np.asarray(gif.convert("RGB"), np.int16)
        out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"), np.int16)
        assert np.abs(last - out).mean() < 12, "the GIF's last frame is not the result (beyond palette error)"

        rc, err = _edit(tmp_path, server, "--frames", str(tmp_path / "pngs") + "/", "--frame-every", "2")
        assert rc == 0, err
        names = sorted(p.name for p in (tmp_path / "pngs").iterdir())
        assert names == ["frame_0001.png", "frame_0002.png", "frame_0003.png", "frame_0004.png"]  # 0, 2, 4, result
        last_png = np.asarray(Image.open(tmp_path / "pngs" / "frame_0004.png"))
        assert np.array_equal(last_png, np.asarray(Image.open(tmp_path / "out.png")))

        rc, err = _edit(tmp_path, server, "--frames", str(tmp_path / "drag.webp"))
        assert rc == 0, err
        with Image.open(tmp_path / "drag.webp") as webp:
            assert webp.n_frames == 6
        with pytest.raises(SystemExit, match="OUT.gif"):
            _edit(tmp_path, server, "--frames", str(tmp_path / "drag.mp4"))


def test_undo_and_reset_drop_the_frames_of_the_drags_they_take_away():
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_seed_session(seed=2)["session_id"]
        for undo in (c.undo, c.reset):
            c.drag(sid, [(8, 8, 12, 12)], params={"steps": 3, "stop_distance": 0}, frames=1)
            assert c.get_frames(sid)
            undo(sid)
            with pytest.raises(DaemonError) as err:
                c.get_frames(sid)
            assert err.value.code == ErrorCode.INVALID_INPUT

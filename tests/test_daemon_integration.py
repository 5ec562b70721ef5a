"""The daemon over real ZeroMQ sockets on loopback, with a small random-weight generator."""

from __future__ import annotations

import textwrap
import threading
import time

import numpy as np
import pytest
from draggan_protocol import Client, DaemonError, DaemonUnreachable, ErrorCode, image_from_message
from draggan_protocol.client import layer_session_request
from draggan_protocol.spec import PROTOCOL_VERSION
from test_daemon_support import TEST_RESOLUTION, client_for, running_daemon, spawn_client

R = TEST_RESOLUTION
FAST_INVERT = {"w_steps": 3, "wplus_steps": 3, "pti_steps": 0}


def pixels_of(img) -> np.ndarray:
    return np.frombuffer(img.pixels, np.uint8).reshape(img.height, img.width, 4)


def test_full_seed_session_with_previews_result_and_undo():
    with running_daemon() as server, client_for(server) as c:
        info = c.hello()
        assert info["protocol_version"] == PROTOCOL_VERSION and info["default_model"] == "tiny"
        assert info["models"][0]["resolution"] == R and info["limits"]["max_points"] == 64
        assert info["capabilities"]["invert"] is True  # inversion is always part of the daemon
        s = c.open_seed_session(seed=3, offset=(100, 50))
        sid = s["session_id"]
        assert (s["width"], s["height"], s["inverted"]) == (R, R, True)
        before = c.get_result(sid)
        assert (before.width, before.height, before.offset) == (R, R, (100, 50))

        events = []
        done = c.drag(sid, [(10, 12, 18, 14)], params={"steps": 9}, preview_every=3, on_progress=events.append)
        assert done["state"] == "done" and done["steps"] == 9 and done["history_depth"] == 1
        steps = [m.content["step"] for m in events if m.msg_type == "progress"]
        assert steps == list(range(1, 10))
        previews = [m for m in events if "preview" in m.content]
        assert [m.content["step"] for m in previews] == [3, 6, 9]
        p = image_from_message(previews[-1], "preview")
        assert (p.width, p.height, len(p.pixels)) == (R, R, R * R * 4)
        for m in events:
            if m.msg_type == "progress":
                assert len(m.content["handles"]) == 1 and np.isfinite(m.content["loss"])

        after = c.get_result(sid)
        assert np.any(pixels_of(after) != pixels_of(before)), "the drag changed nothing"
        last_preview = np.frombuffer(p.pixels, np.uint8).reshape(R, R, 4).astype(int)
        # The last preview is one optimiser update behind the result: close to it, far from the start.
        assert (
            np.abs(pixels_of(after) - last_preview).mean()
            < np.abs(pixels_of(after) - pixels_of(before).astype(int)).mean()
        )
        assert c.undo(sid)["history_depth"] == 0
        assert c.get_result(sid).pixels == before.pixels
        with pytest.raises(DaemonError) as err:
            c.undo(sid)
        assert err.value.code == ErrorCode.NOTHING_TO_UNDO
        c.close_session(sid)
        with pytest.raises(DaemonError) as err:
            c.get_result(sid)
        assert err.value.code == ErrorCode.SESSION_NOT_FOUND


def test_layer_session_region_invert_drag_and_changed_rect():
    rng = np.random.default_rng(0)
    layer = rng.integers(0, 256, (70, 90, 4), dtype=np.uint8)
    layer[..., 3] = 255
    layer[0, 0, 3] = 7  # alpha must survive untouched
    bgra = np.ascontiguousarray(layer[..., [2, 1, 0, 3]])
    with running_daemon() as server, client_for(server) as c:
        s = c.open_layer_session(bgra.tobytes(), 90, 70, format="BGRA8", region=(20, 15, 40, 40), offset=(3, 4))
        sid = s["session_id"]
        assert s["region"] == [20, 15, 40, 40] and s["inverted"] is False
        inv_events = []
        inv = c.run_job("invert", {"session_id": sid, "params": FAST_INVERT}, on_progress=inv_events.append)
        assert inv["state"] == "done" and [st["name"] for st in inv["stages"]] == ["w", "w+"]
        assert {m.content["phase"] for m in inv_events if m.msg_type == "progress"} == {"invert"}
        fit = [(m.content["fit_step"], m.content["fit_steps"]) for m in inv_events if m.msg_type == "progress"]
        assert fit == [(i, 6) for i in range(1, 7)]  # 3 W steps then 3 W+ steps on one scale
        done = c.drag(sid, [(40, 35, 46, 37)], params={"steps": 4}, preview_every=2, output="generator")
        assert done["state"] == "done" and done["steps"] == 4 and done["output"] == "generator"
        assert len(done["measured"]) == 1 and done["asked"] == [pytest.approx(np.hypot(6, 2), abs=1e-3)]

        whole = c.get_result(sid)
        out = pixels_of(whole)
        assert out.shape == (70, 90, 4) and whole.offset == (3, 4)
        outside = np.ones((70, 90), bool)
        outside[15:55, 20:60] = False
        assert np.array_equal(out[outside], layer[outside]), "pixels outside the region changed"
        assert np.array_equal(out[..., 3], layer[..., 3])
        assert np.any(out[15:55, 20:60, :3] != layer[15:55, 20:60, :3])

        part = c.get_result(sid, area="changed", format="BGRA8")
        assert part.rect == (20, 15, 40, 40) and part.offset == (23, 19)
        assert np.array_equal(pixels_of(part)[..., [2, 1, 0, 3]], out[15:55, 20:60])

        moved = pixels_of(c.get_result(sid, output="transfer"))  # the same state, the layer's own pixels moved
        assert np.array_equal(moved[outside], layer[outside]), "transfer changed pixels outside the region"


def test_drag_on_a_layer_session_inverts_first():
    layer = np.full((40, 40, 4), 200, np.uint8)
    layer[10:30, 10:30, :3] = 30
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_layer_session(layer.tobytes(), 40, 40)["session_id"]
        events = []
        content = {
            "session_id": sid,
            "points": [[20, 20, 24, 20]],
            "params": {"steps": 2},
            "invert_params": FAST_INVERT,
        }
        done = c.run_job("drag", content, on_progress=events.append)
        phases = [m.content.get("phase") for m in events if m.msg_type == "progress"]
        assert done["state"] == "done" and phases[0] == "invert" and phases[-1] == "drag"


def test_two_clients_at_once_share_the_device_queue():
    results: dict[str, dict] = {}
    queued_seen: list[int] = []

    def work(name: str, server) -> None:
        with client_for(server, client_name=name) as c:
            sid = c.open_seed_session(seed=len(name))["session_id"]
            reply = c.request("drag", {"session_id": sid, "points": [[8, 8, 14, 10]], "params": {"steps": 15}})
            queued_seen.append(reply.content["queue_position"])
            job = reply.content["job_id"]
            while True:
                (m,) = [c.wait_for(lambda m, job=job: m.content.get("job_id") == job, 60)]
                if m.msg_type == "job_queued":
                    queued_seen.append(m.content["position"])
                if m.msg_type == "job_done":
                    results[name] = m.content
                    break
            results[name]["image"] = c.get_result(sid).pixels

    with running_daemon() as server:
        threads = [threading.Thread(target=work, args=(n, server)) for n in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert set(results) == {"alice", "bob"}
        assert all(r["state"] == "done" and r["steps"] == 15 for r in results.values())
        assert results["alice"]["image"] != results["bob"]["image"]
        assert max(queued_seen) >= 1, "the second job should have waited behind the first"


def test_cancel_mid_drag_stops_within_one_step():
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_seed_session(seed=1)["session_id"]
        reply = c.request(
            "drag",
            {
                "session_id": sid,
                "points": [[5, 5, 30, 30]],
                "params": {"steps": 2000, "stop_distance": 0},
                "preview_every": 0,
            },
        )
        job = reply.content["job_id"]
        seen = 0
        while seen < 3:
            m = c.wait_for(lambda m: m.content.get("job_id") == job, 30)
            seen = max(seen, m.content.get("step", 0))
        seen = max([seen] + [m.content.get("step", 0) for m in c.poll(0.0)])  # what has already arrived
        t0 = time.monotonic()
        assert c.cancel(job)["was"] == "running"
        done = c.wait_for(lambda m: m.msg_type == "job_done" and m.content["job_id"] == job, 30)
        elapsed = time.monotonic() - t0
        assert done.content["state"] == "cancelled"
        # `seen` was the last step reported when the cancel left; one step may be in flight, one more may have
        # started before the cancel was read.
        assert done.content["steps"] <= seen + 2, (done.content["steps"], seen)
        assert done.content["steps_after_cancel"] <= 1
        assert elapsed < 5
        # The session is usable again at once: the partial result can be undone.
        assert c.undo(sid)["history_depth"] == 0
        with pytest.raises(DaemonError) as err:
            c.cancel(job)
        assert err.value.code == ErrorCode.JOB_NOT_FOUND


def test_cancel_a_queued_job():
    with running_daemon() as server, client_for(server) as a, client_for(server) as b:
        sa = a.open_seed_session(seed=1)["session_id"]
        sb = b.open_seed_session(seed=2)["session_id"]
        ja = a.request(
            "drag", {"session_id": sa, "points": [[5, 5, 30, 30]], "params": {"steps": 2000, "stop_distance": 0}}
        )
        jb = b.request("drag", {"session_id": sb, "points": [[5, 5, 30, 30]], "params": {"steps": 10}})
        assert jb.content["queue_position"] >= 1
        assert b.cancel(jb.content["job_id"])["was"] == "queued"
        done = b.wait_for(lambda m: m.msg_type == "job_done", 10)
        assert done.content["state"] == "cancelled" and done.content["job_id"] == jb.content["job_id"]
        a.cancel(ja.content["job_id"])
        assert a.wait_for(lambda m: m.msg_type == "job_done", 30).content["state"] == "cancelled"


def test_wrong_secret_is_refused_in_the_handshake_and_the_daemon_keeps_serving():
    with running_daemon() as server:
        with client_for(server, key=b"not-the-secret") as bad:
            with pytest.raises(DaemonUnreachable):
                bad.hello(timeout=1.0)
        # The transport refused it (2.0): no message of it reached the daemon, signed or not.
        assert server.admission.stats["refused_key"] >= 1
        assert server.stats["received"] == 0 and server.stats["dropped_unsigned"] == 0
        with client_for(server) as good:
            assert good.hello()["protocol_version"] == PROTOCOL_VERSION


def test_another_clients_session_and_job_are_untouchable():
    with running_daemon() as server, client_for(server) as owner, client_for(server) as other:
        sid = owner.open_seed_session(seed=5)["session_id"]
        job = owner.request(
            "drag", {"session_id": sid, "points": [[5, 5, 25, 25]], "params": {"steps": 2000, "stop_distance": 0}}
        )
        jid = job.content["job_id"]
        owner.wait_for(lambda m: m.msg_type == "progress", 30)
        for call in (
            lambda: other.get_result(sid),
            lambda: other.undo(sid),
            lambda: other.reset(sid),
            lambda: other.close_session(sid),
            lambda: other.drag(sid, [(1, 1, 2, 2)]),
            lambda: other.cancel(jid),
        ):
            with pytest.raises(DaemonError) as err:
                call()
            assert err.value.code == ErrorCode.FORBIDDEN
        assert other.status()["sessions"] == []
        owner.cancel(jid)
        done = owner.wait_for(lambda m: m.msg_type == "job_done", 30)
        assert done.content["state"] == "cancelled" and done.content["steps"] >= 1
        assert owner.get_result(sid).width == R


def test_specific_errors_and_limits():
    with running_daemon(limits={"max_layer_pixels": 64 * 64, "max_sessions_per_client": 2}) as server:
        with client_for(server) as c:
            layer = bytes(100 * 100 * 4)
            with pytest.raises(DaemonError) as err:
                c.open_layer_session(layer, 100, 100)
            assert err.value.code == ErrorCode.TOO_LARGE
            with pytest.raises(DaemonError) as err:
                c.request("open_session", *layer_session_request(bytes(10), 4, 4))
            assert err.value.code == ErrorCode.BAD_BUFFER
            with pytest.raises(DaemonError) as err:
                c.open_seed_session(model="no-such-model")
            assert err.value.code == ErrorCode.MODEL_NOT_FOUND
            transparent = bytes(32 * 32 * 4)
            with pytest.raises(DaemonError) as err:
                c.open_layer_session(transparent, 32, 32)
            assert err.value.code == ErrorCode.INVALID_INPUT and "transparent" in err.value.message
            with pytest.raises(DaemonError) as err:
                c.request("warp_reality", {})
            assert err.value.code == ErrorCode.UNKNOWN_MESSAGE_TYPE
            s1 = c.open_seed_session(seed=1)["session_id"]
            c.open_seed_session(seed=2)
            with pytest.raises(DaemonError) as err:
                c.open_seed_session(seed=3)
            assert err.value.code == ErrorCode.SESSION_LIMIT
            with pytest.raises(DaemonError) as err:
                c.drag(s1, [(50, 5, 6, 6)], params={"steps": 2})
            assert err.value.code == ErrorCode.INVALID_INPUT and "outside" in err.value.message
            mask = bytes(R * R - 1)
            with pytest.raises(DaemonError) as err:
                c.request("drag", {"session_id": s1, "points": [[5, 5, 6, 6]], "mask": {"buffer": 0}}, [mask])
            assert err.value.code == ErrorCode.BAD_BUFFER
            # Still serving normally after every refusal.
            assert c.drag(s1, [(5, 5, 8, 6)], params={"steps": 2})["state"] == "done"


def test_busy_session_refuses_a_second_job_and_undo():
    with running_daemon() as server, client_for(server) as c:
        sid = c.open_seed_session()["session_id"]
        j = c.request(
            "drag", {"session_id": sid, "points": [[5, 5, 25, 25]], "params": {"steps": 2000, "stop_distance": 0}}
        )
        for call in (lambda: c.drag(sid, [(1, 1, 2, 2)]), lambda: c.undo(sid)):
            with pytest.raises(DaemonError) as err:
                call()
            assert err.value.code == ErrorCode.BUSY
        c.cancel(j.content["job_id"])
        c.wait_for(lambda m: m.msg_type == "job_done", 30)


def test_mask_keeps_the_masked_out_part_closer_to_the_original():
    """A drag with a mask that frees only the left half changes the right half less than an unmasked drag."""
    with running_daemon() as server, client_for(server) as c:
        free_left = np.zeros((R, R), np.uint8)
        free_left[:, : R // 2] = 255
        changes = {}
        for name, mask in (("masked", free_left.tobytes()), ("free", None)):
            sid = c.open_seed_session(seed=4)["session_id"]
            before = pixels_of(c.get_result(sid)).astype(int)
            c.drag(sid, [(8, 16, 12, 16)], mask=mask, params={"steps": 6, "mask_weight": 100.0})
            after = pixels_of(c.get_result(sid)).astype(int)
            changes[name] = np.abs(after - before)[:, R // 2 + 2 :, :3].mean()
            c.close_session(sid)
        assert changes["masked"] < changes["free"], changes


KILLED_CLIENT = textwrap.dedent(
    """
    import sys
    from draggan_protocol import Client
    c = Client(sys.argv[1], sys.argv[2].encode(), heartbeat_interval=0.2)
    sid = c.open_seed_session(seed=1)["session_id"]
    params = {"steps": 5000, "stop_distance": 0}  # never arrives: the job runs until the client dies
    reply = c.request("drag", {"session_id": sid, "points": [[5, 5, 30, 30]], "params": params})
    job = reply.content["job_id"]
    c.wait_for(lambda m: m.msg_type == "progress", 60)
    print("dragging", flush=True)
    while True:
        c.poll(0.2)
    """
)


def test_killed_client_frees_its_session_and_the_next_client_is_served():
    with running_daemon(client_timeout=1.0, sweep_interval=0.1) as server:
        proc = spawn_client(server, KILLED_CLIENT)
        try:
            assert proc.stdout.readline().strip() == "dragging"
            assert len(server.store.sessions) == 1 and server.worker.running is not None
            proc.kill()
            proc.wait(10)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (server.store.sessions or server.worker.running):
                time.sleep(0.05)
            assert not server.store.sessions, "the dead client's session was not freed"
            assert server.worker.running is None, "the dead client's job is still running"
        finally:
            proc.kill()
        with client_for(server) as c:
            sid = c.open_seed_session(seed=2)["session_id"]
            assert c.drag(sid, [(5, 5, 9, 9)], params={"steps": 3})["state"] == "done"
            assert c.status()["total_sessions"] == 1


def test_poll_api_for_gui_loops():
    with running_daemon() as server, client_for(server, heartbeat_interval=0.05) as c:
        req = c.send("open_session", {"source": "seed", "seed": 9})
        got = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = [m for m in c.poll(0.05) if m.parent == req]
        assert got[0].msg_type == "open_session_reply" and got[0].content["status"] == "ok"
        sid = got[0].content["session_id"]
        req = c.send("drag", {"session_id": sid, "points": [[5, 5, 9, 9]], "params": {"steps": 4}, "preview_every": 2})
        kinds = []
        while "job_done" not in kinds and time.monotonic() < deadline:
            kinds += [m.msg_type for m in c.poll(0.05) if m.parent == req]
        assert kinds[0] == "drag_reply" and kinds.count("progress") == 4 and kinds[-1] == "job_done"
        assert "heartbeat_reply" not in kinds and c.daemon_silent_for() < 5


def test_session_limits_apply_to_pixels():
    with running_daemon(limits={"max_total_pixels": 50 * 50}) as server, client_for(server) as c:
        layer = np.full((40, 40, 4), 255, np.uint8).tobytes()
        c.open_layer_session(layer, 40, 40)
        with pytest.raises(DaemonError) as err:
            c.open_layer_session(layer, 40, 40)
        assert err.value.code == ErrorCode.PIXEL_LIMIT


def test_idle_sessions_expire():
    with running_daemon(session_idle_timeout=0.3, sweep_interval=0.05) as server, client_for(server) as c:
        sid = c.open_seed_session()["session_id"]
        msg = c.wait_for(lambda m: m.msg_type == "session_closed", 10)
        assert msg.content == {"session_id": sid, "reason": "idle"}
        with pytest.raises(DaemonError) as err:
            c.get_result(sid)
        assert err.value.code == ErrorCode.SESSION_NOT_FOUND


@pytest.mark.parametrize("transport", ["pyzmq", "zmtp"])
def test_both_transports_speak_to_the_daemon(transport):
    with running_daemon() as server, Client(server.endpoint, server.config.key, transport_kind=transport) as c:
        sid = c.open_seed_session(seed=2)["session_id"]
        events = []
        c.drag(sid, [(6, 6, 10, 8)], params={"steps": 2}, preview_every=1, on_progress=events.append)
        assert sum("preview" in m.content for m in events) == 2
        img = c.get_result(sid)
        assert len(img.pixels) == R * R * 4
        # A second client cannot touch it, whichever transport the owner used.
        with client_for(server) as other, pytest.raises(DaemonError):
            other.get_result(sid)


def test_heartbeats_keep_an_idle_client_alive_and_silence_ends_it():
    with running_daemon(client_timeout=1.0, sweep_interval=0.05) as server:
        with client_for(server, heartbeat_interval=0.1) as live, client_for(server, heartbeat_interval=60) as mute:
            kept = live.open_seed_session()["session_id"]
            mute.open_seed_session()
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:  # a GUI timer: poll, nothing else
                live.poll(0.05)
            assert live.alive()
            assert [s["session_id"] for s in live.status()["sessions"]] == [kept]
            assert server.store.total_pixels == R * R, "the silent client's session should be gone"


def test_a_drag_on_a_layer_not_fitted_yet_reports_its_fit():
    """The fit a drag does first is a visible step: its progress events say `invert`, its job_done has `fit`."""
    with running_daemon() as server, client_for(server) as c:
        rng = np.random.default_rng(3)
        layer = rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)
        layer[..., 3] = 255
        sid = c.open_layer_session(layer.tobytes(), 40, 40)["session_id"]
        events = []
        content = {
            "session_id": sid,
            "points": [[10, 10, 14, 12]],
            "params": {"steps": 2},
            "invert_params": FAST_INVERT,
        }
        done = c.run_job("drag", content, on_progress=events.append)
        assert done["state"] == "done" and [st["name"] for st in done["fit"]["stages"]]
        assert {e.content.get("phase") for e in events if e.msg_type == "progress"} >= {"invert", "drag"}
        again = c.run_job("drag", {**content, "points": [[14, 12, 16, 12]]})
        assert "fit" not in again  # fitted once, for the session

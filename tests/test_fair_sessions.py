"""Issue 14, F4: a few clients (or one client under several connections) cannot keep the daemon full. A newcomer
below its fair share gets the least recently used idle session of the biggest holder, who is told so; the daemon
refuses only when everyone holds no more than their share (real daemon, real sockets on loopback)."""

from __future__ import annotations

import time

import pytest
from draggan_protocol import DaemonError
from test_daemon_support import client_for, running_daemon

LIMITS = {"max_sessions": 8, "max_sessions_per_client": 4}


def open_seeds(c, n: int) -> list[str]:
    return [c.open_seed_session(seed=i)["session_id"] for i in range(n)]


def test_a_full_daemon_makes_room_for_a_newcomer_from_the_biggest_holder():
    with running_daemon(limits=LIMITS) as server:
        hogs = [client_for(server) for _ in range(2)]  # one attacker, two connections, four sessions each
        newcomer = client_for(server)
        try:
            held = [open_seeds(h, 4) for h in hogs]
            assert len(server.store.sessions) == 8
            time.sleep(0.05)
            hogs[1].status()  # hog 1's sessions untouched; hog 0's first session is the least recently used
            sid = newcomer.open_seed_session(seed=9)["session_id"]  # would be session_limit before the fix
            assert sid in server.store.sessions and len(server.store.sessions) == 8
            evicted = [s for sids in held for s in sids if s not in server.store.sessions]
            assert len(evicted) == 1 and evicted[0] == held[0][0], evicted
            told = hogs[0].wait_for(lambda m: m.msg_type == "session_closed", 5.0)
            assert told.content == {"session_id": evicted[0], "reason": "fair_share"}
            # Three clients now: a share is 8 // 3 = 2. The newcomer may take one more, until it holds its share.
            newcomer.open_seed_session(seed=10)
            with pytest.raises(DaemonError) as refused:
                newcomer.open_seed_session(seed=11)
            assert refused.value.code == "session_limit"
        finally:
            for c in (*hogs, newcomer):
                c.close()


def test_busy_sessions_are_never_taken():
    with running_daemon(limits={"max_sessions": 2, "max_sessions_per_client": 2}) as server:
        hog, newcomer = client_for(server), client_for(server)
        try:
            sids = open_seeds(hog, 2)
            for sid in sids:  # both sessions are working
                hog.request(
                    "drag",
                    {"session_id": sid, "points": [[5, 5, 30, 30]], "params": {"steps": 5000, "stop_distance": 0}},
                )
            with pytest.raises(DaemonError) as refused:
                newcomer.open_seed_session(seed=3)
            assert refused.value.code == "session_limit" and all(s in server.store.sessions for s in sids)
        finally:
            hog.close()
            newcomer.close()

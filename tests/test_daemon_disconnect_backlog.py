"""Issue 14 F5 and F3, against a real daemon on loopback sockets.

F5: a client whose connection drops (SIGKILL) has its running job cancelled at once, its queued tasks too, and
its sessions freed after `disconnect_grace`: the next client is served within 5 s, not after `client_timeout`.
F3: a client that asks for results and never reads them is answered `busy` once its outstanding reply bytes
would pass `max_reply_backlog_bytes`, instead of the daemon buffering every result.
"""

from __future__ import annotations

import os
import textwrap
import time

import numpy as np
import zmq
from daemons import raw_dealer
from draggan_protocol import DaemonError, ErrorCode
from draggan_protocol.client import layer_session_request
from draggan_protocol.framing import decode, encode, make_header
from draggan_protocol.signing import Signer, plain_credentials
from draggan_protocol.transport import open_transport
from test_daemon_support import client_for, running_daemon, spawn_client

DRAGGING_CLIENT = textwrap.dedent(
    """
    import sys
    from draggan_protocol import Client
    c = Client(sys.argv[1], sys.argv[2].encode(), heartbeat_interval=0.2)
    sid = c.open_seed_session(seed=1)["session_id"]
    params = {"steps": 5000, "stop_distance": 0}  # never arrives: the job runs until the client dies
    c.request("drag", {"session_id": sid, "points": [[5, 5, 30, 30]], "params": params})
    c.wait_for(lambda m: m.msg_type == "progress", 60)
    print("dragging", flush=True)
    while True:
        c.poll(0.2)
    """
)


def test_a_killed_clients_job_frees_the_device_queue_within_five_seconds():
    # client_timeout stays at its 60 s default: only the disconnect can free the queue in time
    with running_daemon(sweep_interval=0.1) as server, client_for(server) as other:
        proc = spawn_client(server, DRAGGING_CLIENT)
        try:
            assert proc.stdout.readline().strip() == "dragging"
            assert len(server.store.sessions) == 1 and server.worker.running is not None
            # The other client's open waits behind the killed client's drag in the one device queue.
            req = other.send("open_session", {"source": "seed", "seed": 2})
            time.sleep(0.3)
            assert not [m for m in other.poll(0) if m.parent == req], "the open should be queued behind the drag"
            proc.kill()
            proc.wait(10)
            killed = time.monotonic()
            reply = other.wait_for(lambda m: m.parent == req, 10)
            served_after = time.monotonic() - killed
            assert reply.content["status"] == "ok", reply.content
            assert served_after < 5.0, f"the next client waited {served_after:.1f} s"
            deadline = killed + 5.0
            while time.monotonic() < deadline and len(server.store.sessions) > 1:
                other.poll(0.05)
            assert len(server.store.sessions) == 1, "the killed client's session was not freed within 5 s"
            assert server.stats["disconnects"] == 1
        finally:
            proc.kill()
        sid = reply.content["session_id"]
        assert other.drag(sid, [(5, 5, 9, 9)], params={"steps": 3})["state"] == "done"


def test_a_reconnect_within_the_grace_period_keeps_the_sessions():
    with running_daemon(sweep_interval=0.05, disconnect_grace=1.5) as server:
        with client_for(server) as first:
            assert first.hello()["disconnect_grace"] == 1.5
            sid = first.open_seed_session(seed=3)["session_id"]
            routing_id = first.client_id
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not server.stats["disconnects"]:
            time.sleep(0.01)
        assert server.stats["disconnects"] == 1 and server.store.sessions
        # Same routing id, new connection (a reconnect), before the grace ends: the session is still there.
        plain = plain_credentials(server.config.key)
        transport = open_transport(server.endpoint, identity=routing_id.encode(), plain=plain)
        with client_for(server, transport=transport) as again:
            assert again.get_result(sid).width > 0, "the session did not survive a reconnect within the grace"
        # Gone for longer than the grace: freed, although client_timeout (60 s) is far away.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and server.store.sessions:
            time.sleep(0.05)
        assert not server.store.sessions, "the disconnected client's session outlived the grace period"


class SlowReader:
    """A DEALER that holds at most one message in its own queue: what it does not read stays with the daemon."""

    def __init__(self, endpoint: str, key: bytes) -> None:
        self.signer = Signer(key)
        self.ctx = zmq.Context()
        self.routing_id = os.urandom(8).hex().encode()
        self.sock = raw_dealer(self.ctx, endpoint, key, routing_id=self.routing_id, rcvhwm=1, rcvbuf=16384)

    def send(self, msg_type: str, content: dict, buffers: list | None = None) -> str:
        header = make_header(msg_type, "slow-reader")
        self.sock.send_multipart(encode(header, content, buffers or [], self.signer))
        return header["msg_id"]

    def recv(self, timeout: float):
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return decode(self.sock.recv_multipart(), self.signer)

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def test_a_client_that_does_not_read_its_results_gets_busy_not_a_buffer():
    side = 1024  # 4 MiB a result
    limit = 2 * side * side * 4
    with running_daemon(limits={"max_reply_backlog_bytes": limit}) as server:
        peer = SlowReader(server.endpoint, server.config.key)
        try:
            layer = np.full((side, side, 4), 200, np.uint8).tobytes()
            content, buffers = layer_session_request(layer, side, side)
            req = peer.send("open_session", content, buffers)
            reply = peer.recv(30)
            assert reply is not None and reply.parent == req and reply.content["status"] == "ok", reply
            sid = reply.content["session_id"]

            asked = [peer.send("get_result", {"session_id": sid}) for _ in range(40)]
            time.sleep(2.0)  # the daemon computes what it accepted; nothing is read meanwhile
            backlog = getattr(server, "reply_backlog", lambda _: 0)(peer.routing_id)  # (a daemon without F3's fix)
            replies = {}
            deadline = time.monotonic() + 30
            while len(replies) < len(asked) and time.monotonic() < deadline:
                msg = peer.recv(1.0)
                if msg is not None and msg.msg_type == "get_result_reply":
                    replies[msg.parent] = msg
            assert len(replies) == len(asked)
            ok = [m for m in replies.values() if m.content["status"] == "ok"]
            busy = [m for m in replies.values() if m.content.get("code") == ErrorCode.BUSY]
            assert len(ok) + len(busy) == len(asked)
            assert busy, "every result was buffered for a client that does not read"
            assert len(ok) <= 8, f"{len(ok)} results of 4 MiB were accepted for a client that does not read"
            assert busy[0].content["details"]["limit"] == limit
            assert backlog <= limit + 4 * side * side
            assert server.stats["results_refused_backlog"] == len(busy)

            # Once it has read everything, it is served again.
            req = peer.send("get_result", {"session_id": sid})
            msg = peer.recv(30)
            assert msg.parent == req and msg.content["status"] == "ok"
            assert len(msg.buffers[0]) == side * side * 4
        finally:
            peer.close()


def test_a_new_connection_on_a_reused_fd_is_not_taken_for_the_old_ones_end():
    """The OS gives a closed connection's fd to the next one: a client that connects right after another closed is
    served, not cancelled as "client disconnected" (the old connection's end can be read after the new one's
    first message)."""
    with running_daemon() as server:
        refused = []
        for i in range(25):
            with client_for(server) as first:
                first.hello()
            with client_for(server) as second:
                try:
                    second.open_seed_session(seed=i)
                except DaemonError as exc:
                    refused.append(f"{exc.code}: {exc.message}")
        assert not refused, refused

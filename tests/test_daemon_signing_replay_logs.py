"""Issue 14 F2, F6, F7 and the spec's reply rules, against a real daemon on loopback sockets.

F2: a peer that has not proven the key never gets a reply (no signed `too_large` / `bad_message` either).
F6: a reused msg_id or a header.date outside ±5 min (or not a date) is refused, and logged.
F7: client-supplied values reach the log with control characters escaped.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import msgpack
import pytest
import zmq
from daemons import raw_dealer
from draggan_daemon.server.logs import JsonFormatter, KeyValueFormatter
from draggan_protocol import DaemonError, ErrorCode, ProtocolError
from draggan_protocol.framing import decode, encode, make_header
from draggan_protocol.replay import ReplayGuard, parse_date
from draggan_protocol.signing import Signer
from draggan_protocol.spec import DELIMITER
from test_daemon_support import client_for, running_daemon

MAX_FRAME = 1 << 20  # these daemons take frames and buffers up to 1 MiB, so "too big to verify" is cheap to send


@contextlib.contextmanager
def captured_log(formatter: logging.Formatter | None = None) -> Iterator[io.StringIO]:
    """Everything the daemon logs (INFO and up) while the block runs, formatted as `draggan serve` does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or KeyValueFormatter())
    root = logging.getLogger("draggan")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


class RawPeer:
    """A bare DEALER on loopback that sends whatever frames it is given."""

    def __init__(self, endpoint: str, key: bytes, identity: bytes | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = raw_dealer(self.ctx, endpoint, key, **({"routing_id": identity} if identity else {}))

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv_all(self, seconds: float) -> list[list[bytes]]:
        out = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.sock.poll(int(left * 1000)):
                out.append(self.sock.recv_multipart())
        return out

    def recv_one(self, seconds: float = 10.0) -> list[bytes]:
        assert self.sock.poll(int(seconds * 1000)), "no reply"
        return self.sock.recv_multipart()

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def header_bytes(msg_type: str = "hello", **overrides) -> tuple[str, bytes]:
    h = make_header(msg_type, "raw-peer")
    h.update(overrides)
    return h["msg_id"], msgpack.packb(h)


def signed(signer: Signer, frames: list[bytes]) -> list[bytes]:
    """frames with frame 1 replaced by a valid signature over frames 2…"""
    return [frames[0], signer.sign(frames[2:]), *frames[2:]]


def reply_of(signer: Signer, frames: list[bytes]):
    return decode(frames, signer)


# ---------------------------------------------------------------------------------------------------------- F2
def test_a_peer_without_the_key_never_gets_a_reply_however_broken_its_message():
    with running_daemon(limits={"max_frame_bytes": MAX_FRAME, "max_buffer_bytes": MAX_FRAME}) as server:
        key = Signer(server.config.key)
        wrong_key = Signer(b"not-the-secret")
        _, h = header_bytes()
        c = msgpack.packb({})
        unsigned = [
            [b"x"],  # too few frames to carry a signature
            [b"a", b"b"],
            [DELIMITER, b"0" * 64, h],
            [b"nope", b"0" * 64, h, c],  # no delimiter (answered bad_message before the fix)
            [DELIMITER, b"0" * 64, b"h" * 5000, c],  # header over max_header_bytes (was too_large)
            [DELIMITER, b"0" * 64, h, b"c" * 300_000],  # content over max_content_bytes (was too_large)
            [DELIMITER, b"0" * 64, h, c, *[b"1"] * 9],  # more than 4 buffers (was too_large)
            [DELIMITER, b"0" * 64, h, c, *[b"\0" * MAX_FRAME] * 5],  # more bytes than can be verified
            [DELIMITER, b"", h, c],  # empty signature
            signed(wrong_key, [DELIMITER, b"", h, c]),  # a well-formed hello signed with another key
            signed(wrong_key, [DELIMITER, b"", b"h" * 5000, c]),
            signed(wrong_key, [b"nope", b"", h, c]),
        ]
        peer = RawPeer(server.endpoint, server.config.key)
        try:
            for frames in unsigned:
                peer.send(frames)
            assert peer.recv_all(1.5) == [], "a peer without the key got a reply"
            assert server.stats["dropped_unsigned"] == len(unsigned)

            # The same brokenness from a key holder is answered, with the specific code.
            for frames, code in (
                ([b"nope", b"", h, c], ErrorCode.BAD_MESSAGE),
                ([DELIMITER, b"", b"h" * 5000, c], ErrorCode.TOO_LARGE),
                ([DELIMITER, b"", h, c, *[b"1"] * 9], ErrorCode.TOO_LARGE),
            ):
                peer.send(signed(key, frames))
                msg = reply_of(key, peer.recv_one())
                assert msg.content["status"] == "error" and msg.content["code"] == code, msg.content
            # And a proper hello still works on the same connection.
            mid, h2 = header_bytes()
            peer.send(signed(key, [DELIMITER, b"", h2, c]))
            msg = reply_of(key, peer.recv_one())
            assert msg.msg_type == "hello_reply" and msg.parent == mid and msg.content["status"] == "ok"
        finally:
            peer.close()


# ---------------------------------------------------------------------------------------------------------- F6
class RecordingTransport:
    """Wraps a client's transport and keeps a copy of every multipart message sent (a capture of the wire)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames):
        self.sent.append([bytes(f) for f in frames])
        self.inner.send_multipart(frames)

    def recv_multipart(self, timeout):
        return self.inner.recv_multipart(timeout)

    def close(self):
        self.inner.close()


def _header_of(frames: list[bytes]) -> dict:
    return msgpack.unpackb(frames[2])


def test_a_replayed_drag_is_refused_and_runs_once():
    with running_daemon() as server, client_for(server) as c, captured_log() as logs:
        c.transport = RecordingTransport(c.transport)
        sid = c.open_seed_session(seed=1)["session_id"]
        assert c.drag(sid, [(5, 5, 8, 6)], params={"steps": 2})["history_depth"] == 1
        (drag,) = [f for f in c.transport.sent if _header_of(f)["msg_type"] == "drag"]
        drag_id = _header_of(drag)["msg_id"]

        # Replayed on the owner's own connection (the case that ran the drag twice).
        c.transport.inner.send_multipart(drag)
        reply = c.wait_for(lambda m: m.parent == drag_id, 10)
        assert reply.msg_type == "drag_reply" and reply.content["code"] == ErrorCode.REPLAY_REJECTED
        assert reply.content["field"] == "msg_id"
        assert not [m for m in c.poll(0.5) if m.parent == drag_id], "the replay started a job"
        (desc,) = c.status()["sessions"]
        assert desc["history_depth"] == 1, "the replayed drag ran"

        # Replayed from a new connection that presents the owner's routing id once the owner has gone.
        routing_id = c.client_id.encode()
        c.transport.close()
        got = None
        deadline = time.monotonic() + 10
        while got is None and time.monotonic() < deadline:
            peer = RawPeer(server.endpoint, server.config.key, identity=routing_id)
            try:
                peer.send(drag)
                replies = peer.recv_all(0.5)  # none while the daemon still holds the old connection
                got = decode(replies[0], Signer(server.config.key)) if replies else None
            finally:
                peer.close()
        assert got is not None and got.content["code"] == ErrorCode.REPLAY_REJECTED, got
        assert len(server.store.sessions[sid].history) - 1 == 1, "the replayed drag ran"
        assert server.stats["replays_rejected"] == 2
    lines = [line for line in logs.getvalue().splitlines() if " replay_rejected " in line]
    assert len(lines) == 2 and all("why=msg_id" in line and "msg_type=drag" in line for line in lines), lines


def _utc(delta_s: float) -> str:
    t = datetime.now(timezone.utc) + timedelta(seconds=delta_s)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    "date, code",
    [
        ("not a date", ErrorCode.BAD_HEADER),
        ("2026-13-45T99:00:00Z", ErrorCode.BAD_HEADER),
        ("1970-01-01T00:00:00.000Z", ErrorCode.REPLAY_REJECTED),
        (-6 * 60, ErrorCode.REPLAY_REJECTED),  # seconds from now, made into a date when the test runs
        (+6 * 60, ErrorCode.REPLAY_REJECTED),
        (-4 * 60, None),
        (+4 * 60, None),
        ("+02:00", None),  # now, with an offset: a date too
    ],
)
def test_header_date_must_be_a_date_within_five_minutes(date, code):
    if isinstance(date, int):
        date = _utc(date)
    elif date == "+02:00":
        date = datetime.now(timezone(timedelta(hours=2))).isoformat()
    with running_daemon() as server, captured_log() as logs:
        key = Signer(server.config.key)
        peer = RawPeer(server.endpoint, server.config.key)
        try:
            mid, h = header_bytes("hello", date=date)
            peer.send(signed(key, [DELIMITER, b"", h, msgpack.packb({"client": "clock"})]))
            msg = reply_of(key, peer.recv_one())
        finally:
            peer.close()
        assert msg.msg_type == "hello_reply" and msg.parent == mid
        if code is None:
            assert msg.content["status"] == "ok", msg.content
            assert server.stats["replays_rejected"] == 0
        else:
            assert msg.content["code"] == code and msg.content["field"] == "date", msg.content
            assert server.stats["replays_rejected"] == 1
            assert " replay_rejected " in logs.getvalue() and "why=date" in logs.getvalue()
            assert not server.clients, "a refused message must not count as a sign of life"


def test_the_projects_clients_send_unique_ids_and_fresh_dates():
    for transport in ("pyzmq", "zmtp"):
        with running_daemon() as server, client_for(server, transport_kind=transport) as c:
            c.transport = RecordingTransport(c.transport)
            c.hello()
            for _ in range(50):
                c.request("heartbeat")
            c.heartbeat_if_due()
            headers = [_header_of(f) for f in c.transport.sent]
            assert len({h["msg_id"] for h in headers}) == len(headers) == 51
            now = time.time()
            assert all(abs(parse_date(h["date"]) - now) < 5 for h in headers)
            assert server.stats["replays_rejected"] == 0


def test_replay_guard_forgets_only_what_its_window_refuses_anyway():
    clock = [1_000_000.0]
    g = ReplayGuard(max_skew=300, capacity=3, clock=lambda: clock[0])

    def at(offset: float) -> str:
        return datetime.fromtimestamp(clock[0] + offset, timezone.utc).isoformat().replace("+00:00", "Z")

    g.check("a", at(0))
    with pytest.raises(ProtocolError) as err:
        g.check("a", at(0))
    assert err.value.code == ErrorCode.REPLAY_REJECTED and err.value.field == "msg_id"
    # Over capacity: the oldest-dated ids are forgotten and dates up to theirs are refused from then on.
    g.check("b", at(-10))
    g.check("c", at(-5))
    g.check("d", at(1))
    assert len(g) == 3 and g.floor == clock[0] - 10
    with pytest.raises(ProtocolError) as err:
        g.check("b", at(-10))  # forgotten, yet still refused
    assert err.value.code == ErrorCode.REPLAY_REJECTED and err.value.field == "date"
    # Ids expire once their dates leave the window; a copy is then refused by its date.
    a_date = at(0)
    clock[0] += 301
    g.check("e", at(0))
    assert "a" not in g._seen
    with pytest.raises(ProtocolError) as err:
        g.check("a", a_date)
    assert err.value.field == "date"


@pytest.mark.parametrize(
    "text, ok",
    [
        ("2026-01-02T03:04:05.678Z", True),
        ("2026-01-02T03:04:05Z", True),
        ("2026-01-02T03:04:05.123456789+01:00", True),
        ("2026-01-02 03:04:05Z", False),
        ("2026-01-02T03:04:05", False),  # no zone: not UTC-anchored
        ("1767323045", False),
        ("", False),
    ],
)
def test_parse_date(text, ok):
    if ok:
        assert isinstance(parse_date(text), float)
    else:
        with pytest.raises(ValueError):
            parse_date(text)


# ---------------------------------------------------------------------------------------------------------- F7
EVIL = "x\x1b[31mred\rCR\tTAB\x07\u202e"


@pytest.mark.parametrize("formatter", [KeyValueFormatter(), JsonFormatter()], ids=["key-value", "json"])
def test_client_values_are_logged_with_control_characters_escaped(formatter):
    with running_daemon() as server, captured_log(formatter) as logs:
        with client_for(server, client_name=EVIL) as c:
            c.client_id = "s\x1b]0;title\x07\r\tx"  # the header's session, as a client chooses it
            c.hello()
            with pytest.raises(DaemonError):
                c.request("warp\x1b[2J", {})
    text = logs.getvalue()
    assert "hello" in text and "client_seen" in text
    for ch in "\x1b\r\t\x07\u202e":
        assert ch not in text, (ch, text)
    assert text.count("\n") == len(text.splitlines())  # every record is one line
    assert "\\u001b[31mred" in text


# ------------------------------------------------------------------------------------------- spec agreement
def test_an_unknown_request_type_is_answered_with_msg_type_error_and_its_parent():
    with running_daemon() as server, client_for(server) as c:
        mid = c.send("warp_reality", {})
        reply = c.wait_for(lambda m: m.parent == mid, 10)
        assert reply.msg_type == "error" and reply.content["code"] == ErrorCode.UNKNOWN_MESSAGE_TYPE
        mid = c.send("hello_reply", {})  # a reply type is not a request type either
        assert c.wait_for(lambda m: m.parent == mid, 10).msg_type == "error"


def test_replayed_frames_from_encode_are_refused_even_when_signed_anew():
    """A key holder re-sending an old msg_id with a fresh signature is refused too: ids are single-use."""
    with running_daemon() as server, client_for(server) as c:
        key = Signer(server.config.key)
        header = make_header("heartbeat", c.client_id)
        for expect_ok in (True, False):
            c.transport.send_multipart(encode(dict(header), {}, [], key))
            reply = c.wait_for(lambda m: m.parent == header["msg_id"], 10)
            assert (reply.content["status"] == "ok") is expect_ok, reply.content

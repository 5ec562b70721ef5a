"""Fuzzing a real daemon process: 12,000 malformed messages, then a normal session must still work.

Seeded (reproducible) generator of: random frames, unsigned and wrongly signed messages, signed messages with
wrong msgpack types in header and content, truncated frames, oversized frames, other protocol versions, unknown
types. Every signed message must get exactly one reply, and a message that does not prove the key none at all
(those travel on a socket of their own, which must never receive anything); the daemon's resident memory after
the run must stay within RSS_BOUND_MB of what it was after a warm-up session.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq
from daemons import raw_dealer
from draggan_protocol import Client
from draggan_protocol.connection import read_connection_file
from draggan_protocol.framing import decode, make_header
from draggan_protocol.signing import Signer
from draggan_protocol.spec import DELIMITER, ERROR_CODES, PROTOCOL_VERSION, REQUEST_TYPES

MESSAGES = 12_000
RSS_BOUND_MB = 64
MAX_FRAME = 1 << 20  # the fuzzed daemon accepts frames up to 1 MiB, so oversized frames are cheap to send
FIELD_NAMES = [
    "session_id",
    "points",
    "layer",
    "selection",
    "mask",
    "params",
    "region",
    "seed",
    "psi",
    "source",
    "model",
    "job_id",
    "area",
    "format",
    "width",
    "height",
    "buffer",
    "offset",
    "steps",
    "client",
    "preview_every",
    "preview_seconds",
    "preset",
    "pti",
    "invert_params",
    "name",
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "bigint", "float", "nan", "str", "bytes", "bool", "none", "list", "map", "point", "neg"]
    if depth > 2:
        kinds = kinds[:8]
    k = rng.choice(kinds)
    if k == "int":
        return rng.randint(-5, 40000)
    if k == "bigint":
        return rng.choice([2**63 - 1, -(2**63), 2**64 - 1, 2**32])
    if k == "float":
        return rng.uniform(-1e9, 1e9)
    if k == "nan":
        return rng.choice([float("nan"), float("inf"), -float("inf")])
    if k == "str":
        return rng.randbytes(rng.randint(0, 300)).decode("latin-1")
    if k == "bytes":
        return rng.randbytes(rng.randint(0, 64))
    if k == "bool":
        return rng.random() < 0.5
    if k == "none":
        return None
    if k == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    if k == "point":
        return [[rng.uniform(-50, 100) for _ in range(rng.choice([3, 4, 4, 5]))] for _ in range(rng.randint(0, 70))]
    if k == "neg":
        return -rng.randint(1, 10**6)
    return {rng.choice(FIELD_NAMES): random_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def random_content(rng: random.Random) -> dict:
    return {rng.choice(FIELD_NAMES): random_value(rng) for _ in range(rng.randint(0, 8))}


class Fuzzer:
    def __init__(self, endpoint: str, key: bytes, seed: int = 1234) -> None:
        self.rng = random.Random(seed)
        self.signer = Signer(key)
        self.key = key
        self.ctx = zmq.Context()
        self.endpoint = endpoint
        self.socks = [self._socket() for _ in range(4)]
        self.unsigned_sock = self._socket()  # only messages without a valid signature: it must hear nothing
        self.unsigned_sent = 0
        self.unsigned_replies = 0
        self._unsigned = False
        self.expected: set[str] = set()
        self.replies = 0
        self.error_codes: dict[str, int] = {}
        self.unattributed = 0

    def _socket(self) -> zmq.Socket:
        return raw_dealer(self.ctx, self.endpoint, self.key, sndhwm=0, rcvhwm=0)

    def signed(self, header: bytes, content: bytes, buffers: list[bytes] = ()) -> list[bytes]:
        parts = [header, content, *buffers]
        return [DELIMITER, self.signer.sign(parts), *parts]

    def header(self, msg_type: str | None = None, version: str = PROTOCOL_VERSION) -> tuple[str, bytes]:
        h = make_header(msg_type or self.rng.choice([t for t in REQUEST_TYPES if t != "shutdown"]), "fuzzer")
        h["version"] = version
        return h["msg_id"], msgpack.packb(h)

    def one(self) -> list[bytes]:
        rng = self.rng
        kind = rng.randrange(10)
        self._unsigned = kind in (0, 1)
        if kind == 0:  # random frames
            return [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 8))]
        if kind == 1:  # unsigned or wrongly signed, otherwise well formed; or broken framing without a signature
            _, h = self.header()
            c = msgpack.packb(random_content(rng))
            sig = rng.choice([b"", b"0" * 64, rng.randbytes(64)])
            return rng.choice([
                [DELIMITER, sig, h, c],
                [b"nope", sig, h, c],
                [DELIMITER, sig, b"h" * 5000, c],
                [DELIMITER, sig, h, c, *[b"1"] * rng.randint(5, 9)],
            ])  # fmt: skip
        if kind == 2:  # signed header of wrong types
            bad = rng.choice([random_value(rng), {k: random_value(rng) for k in ("msg_id", "msg_type", "version")}])
            return self.signed(msgpack.packb(bad, use_bin_type=True), msgpack.packb({}))
        if kind == 3:  # truncated frames (signature over the truncated bytes, so it reaches the parser)
            mid, h = self.header()
            c = msgpack.packb(random_content(rng), use_bin_type=True)
            h2, c2 = h[: rng.randint(0, len(h))], c[: rng.randint(0, len(c))]
            frames = self.signed(h2, c2)
            if rng.random() < 0.2:  # signed, but the delimiter is wrong: answered bad_message (no parent)
                return [rng.choice([b"", b"<DRAGGAN|MSG", rng.randbytes(13)]), *self.signed(h, c)[1:]]
            return frames[: rng.randint(1, 4)] if rng.random() < 0.3 else frames
        if kind == 4:  # oversized frames
            which = rng.randrange(3)
            mid, h = self.header()
            if which == 0:
                return self.signed(h, msgpack.packb({"x": "y" * (300 * 1024)}))
            if which == 1:
                return self.signed(msgpack.packb({"pad": "z" * 5000}), msgpack.packb({}))
            return self.signed(h, msgpack.packb({}), [b"\0"] * rng.randint(5, 9))
        if kind == 5:  # other versions
            mid, h = self.header(version=rng.choice(["2.0", "0.9", "99.1", "1", "", "1.0.0"]))
            self.expected.add(mid)
            return self.signed(h, msgpack.packb({}))
        if kind == 6:  # unknown types
            mid, h = self.header(msg_type=rng.choice(["rm_rf", "hello_reply", "x" * 100, "drag "]))
            self.expected.add(mid)
            return self.signed(h, msgpack.packb(random_content(rng), use_bin_type=True))
        if kind == 7:  # pixel descriptors that lie about their buffers
            mid, h = self.header("open_session")
            self.expected.add(mid)
            if rng.random() < 0.3:  # absurd sizes
                w, hh = rng.randint(1, 20000), rng.randint(1, 20000)
            else:  # plausible sizes, buffers that are missing or of the wrong length
                w, hh = rng.randint(1, 64), rng.randint(1, 64)
            content = {"layer": {"width": w, "height": hh, "buffer": rng.randint(0, 2)}}
            if rng.random() < 0.3:
                content["region"] = random_value(rng)
            size = min(rng.choice([0, w * hh * 4 - 1, w * hh * 4 + 1, rng.randint(0, 4096)]), 65536)
            return self.signed(h, msgpack.packb(content), [rng.randbytes(size)])
        # 8, 9: signed, valid header, content of random shapes for a random request type
        mid, h = self.header()
        self.expected.add(mid)
        return self.signed(
            h,
            msgpack.packb(random_content(rng), use_bin_type=True),
            [rng.randbytes(rng.randint(0, 512)) for _ in range(rng.randint(0, 2))],
        )

    def drain(self, timeout_ms: int = 0) -> None:
        poller = zmq.Poller()
        for s in [*self.socks, self.unsigned_sock]:
            poller.register(s, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(timeout_ms))
            if not ready:
                return
            for s in ready:
                while True:
                    try:
                        frames = s.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if s is self.unsigned_sock:
                        self.unsigned_replies += 1
                        continue
                    msg = decode(frames, self.signer)
                    self.replies += 1
                    if msg.parent is None:
                        self.unattributed += 1
                    self.expected.discard(msg.parent)
                    if msg.content.get("status") == "error":
                        code = msg.content["code"]
                        assert code in ERROR_CODES, code
                        assert isinstance(msg.content["message"], str) and msg.content["message"]
                        self.error_codes[code] = self.error_codes.get(code, 0) + 1

    def run(self, n: int) -> None:
        for i in range(n):
            frames = self.one()
            sock = self.unsigned_sock if self._unsigned else self.socks[i % len(self.socks)]
            self.unsigned_sent += self._unsigned
            sock.send_multipart(frames)
            if i % 200 == 0:
                self.drain()
        # A few frames over the daemon's frame limit: libzmq drops those connections; the daemon keeps going.
        for _ in range(3):
            s = self._socket()
            s.send_multipart([DELIMITER, b"0" * 64, b"h", b"c", b"\0" * (MAX_FRAME + 10)])
            time.sleep(0.05)
            s.close(0)
        deadline = time.monotonic() + 60
        while self.expected and time.monotonic() < deadline:
            self.drain(200)
        self.drain(500)  # anything late for the unsigned socket

    def close(self) -> None:
        for s in [*self.socks, self.unsigned_sock]:
            s.close(0)
        self.ctx.term()


@pytest.fixture
def daemon_process(tmp_path):
    conn = tmp_path / "daemon.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "draggan_daemon.server.serve_cli",
            "--builtin-test-model",
            "--threads",
            "1",
            "--connection-file",
            str(conn),
            "--max-frame-bytes",
            str(MAX_FRAME),
            "--max-sessions",
            "64",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not conn.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the daemon did not write its connection file"
        time.sleep(0.1)
    yield proc, conn
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert not conn.exists(), "the daemon did not remove its connection file on exit"


def valid_session(conn: Path) -> bytes:
    with Client.connect(conn) as c:
        c.hello()
        sid = c.open_seed_session(seed=7)["session_id"]
        done = c.drag(sid, [(20, 20, 26, 22)], params={"steps": 3}, preview_every=1)
        assert done["state"] == "done" and done["steps"] == 3
        img = c.get_result(sid)
        c.close_session(sid)
        return img.pixels


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the daemon's RSS from /proc")
def test_fuzzed_daemon_keeps_serving_with_bounded_memory(daemon_process):
    proc, conn = daemon_process
    info = read_connection_file(conn)
    assert (conn.stat().st_mode & 0o777) == 0o600
    first = valid_session(conn)
    rss_before = rss_mb(proc.pid)

    fuzzer = Fuzzer(info.endpoint, info.key_bytes)
    t0 = time.monotonic()
    try:
        fuzzer.run(MESSAGES)
    finally:
        fuzzer.close()
    elapsed = time.monotonic() - t0
    assert proc.poll() is None, "the daemon died under fuzzing"
    assert not fuzzer.expected, f"{len(fuzzer.expected)} signed messages got no reply"
    assert fuzzer.unsigned_sent > 1000 and fuzzer.unsigned_replies == 0, "a peer without the key got replies"
    for code in (
        "bad_message",
        "bad_header",
        "invalid_content",
        "unsupported_version",
        "unknown_message_type",
        "too_large",
        "bad_buffer",
        "session_not_found",
    ):
        assert fuzzer.error_codes.get(code, 0) > 0, (code, fuzzer.error_codes)

    # A normal session still works, and gives the same pixels as before the storm.
    assert valid_session(conn) == first
    rss_after = rss_mb(proc.pid)
    print(
        f"\nfuzz: {MESSAGES} messages in {elapsed:.1f} s, {fuzzer.replies} replies, codes {fuzzer.error_codes}; "
        f"daemon RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )
    assert rss_after - rss_before < RSS_BOUND_MB, (rss_before, rss_after)

    with Client.connect(conn) as c:
        assert c.shutdown()["status"] == "ok"
    proc.wait(30)
    assert proc.returncode == 0

"""Both client transports against hostile servers (issue 14, F8): real raw-socket servers on loopback TCP that
speak just enough ZMTP (greeting, READY) and then misbehave. Whatever the server does, every call comes back by
its deadline (+ 0.5 s), memory stays bounded, and a server that breaks the protocol ends in a clear
`TransportError`."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from draggan_protocol.transport import MAX_FRAME_BYTES, MAX_MESSAGE_FRAMES, PyZmqTransport, TransportError
from draggan_protocol.zmtp import GREETING, ZmtpDealer, encode_command, encode_properties

SLACK = 0.5  # seconds a call may come back after its deadline
MIB = 1 << 20
READY_ROUTER = encode_command(b"READY", encode_properties({b"Socket-Type": b"ROUTER"}))
PING = encode_command(b"PING", b"\x00\x0a" + b"ctx-0123456789ab")


def long_frame_header(size: int, flags: int = 0) -> bytes:
    return struct.pack(">BQ", flags | 0x02, size)


def short_frame(body: bytes, flags: int = 0) -> bytes:
    return bytes((flags, len(body))) + body


class HostileServer:
    """One listening socket on loopback; each accepted connection is handed to `behave(conn, stop)` in a thread.
    `rcvbuf` shrinks the server's receive buffer (set before listen: accepted sockets inherit it), so a server that
    never reads stops the client's writes after a few hundred KiB."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None], rcvbuf: int | None = None) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.listener = socket.socket()
        if rcvbuf:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(0.2)
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.behave(conn, self.stop)
        except OSError:
            pass  # the client hung up: expected for every hostile case
        except BaseException as exc:  # pragma: no cover - a broken test server
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def serve():
    servers: list[HostileServer] = []

    def start(behave, rcvbuf=None):
        s = HostileServer(behave, rcvbuf)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
        assert not s.errors, s.errors


def stream(conn: socket.socket, stop: threading.Event, chunk: bytes, seconds: float, max_bytes: int) -> int:
    """Send `chunk` again and again for `seconds` or `max_bytes`; the sum sent."""
    conn.settimeout(0.2)
    sent = 0
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end and sent < max_bytes:
        try:
            sent += conn.send(chunk)
        except TimeoutError:
            continue
    return sent


def greet(conn: socket.socket, ready: bool = True) -> None:
    """Our side of the handshake, once the client's greeting has begun (libzmq sends its first 10 bytes, then
    waits; data sent before that can go unseen)."""
    conn.settimeout(5)
    conn.recv(10)
    conn.sendall(GREETING + (READY_ROUTER if ready else b""))


def elapsed_since(t0: float) -> float:
    return time.monotonic() - t0


# -- (a) a declared 2^40-byte frame, streamed ----------------------------------------------------------------------

_MEMORY_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    kind, endpoint = sys.argv[1], sys.argv[2]
    from draggan_protocol.transport import PyZmqTransport, TransportError
    from draggan_protocol.zmtp import ZmtpDealer
    # A guard for the machine, not the measure: without a frame cap the client would take all memory.
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + (1 << 30) if hard == resource.RLIM_INFINITY else min(vm + (1 << 30), hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    error = None
    try:  # the frame header may come with READY: then the constructor already refuses it
        t = ZmtpDealer(endpoint, connect_timeout=5) if kind == "zmtp" else PyZmqTransport(endpoint)
        got = t.recv_multipart(3.0)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    out = {"elapsed": time.monotonic() - t0, "error": error,
           "rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024}
    print(json.dumps(out))
    """
)


def run_memory_probe(kind: str, endpoint: str) -> dict:
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, kind, endpoint],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=Path(__file__).resolve().parent,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _huge_frame_streamer(declared: int) -> Callable[[socket.socket, threading.Event], None]:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        greet(conn)
        time.sleep(0.2)
        conn.sendall(long_frame_header(declared))
        stream(conn, stop, bytes(MIB), seconds=10, max_bytes=2 << 30)

    return behave


# 2^40 as in the finding; 512 MiB is over the cap too but small enough that a client without one allocates it.
HUGE = pytest.mark.parametrize("declared", [1 << 40, 512 * MIB], ids=["2^40", "512MiB"])


@HUGE
def test_zmtp_streamed_huge_frame_is_refused_with_bounded_memory(serve, declared):
    server = serve(_huge_frame_streamer(declared))
    res = run_memory_probe("zmtp", server.endpoint)
    assert res["error"] and res["error"].startswith("TransportError") and "frame" in res["error"], res
    assert res["elapsed"] < 3.0 + SLACK, res
    assert res["rss_growth_mib"] <= 64, res


@HUGE
def test_pyzmq_streamed_huge_frame_is_dropped_with_bounded_memory(serve, declared):
    server = serve(_huge_frame_streamer(declared))
    res = run_memory_probe("pyzmq", server.endpoint)
    # libzmq drops a connection declaring a frame over ZMQ_MAXMSGSIZE (and reconnects): nothing is delivered.
    assert res["error"] is None, res
    assert res["elapsed"] < 3.0 + SLACK, res
    assert res["rss_growth_mib"] <= 64, res


def test_frame_over_the_cap_is_refused_when_declared(serve):
    """Not only 2^40: one byte over the limit is refused before any of the frame's body arrives."""
    server = serve(lambda c, s: (greet(c), time.sleep(0.2), c.sendall(long_frame_header(MIB + 1)), s.wait(5)))
    dealer = ZmtpDealer(server.endpoint, max_frame_bytes=MIB)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=f"{MIB + 1}-byte frame"):
        dealer.recv_multipart(5)
    assert elapsed_since(t0) < 1
    assert dealer.fileno() == -1  # closed: the server costs nothing any more
    with pytest.raises(TransportError, match="frame"):
        dealer.recv_multipart(0)  # the reason stays


def test_a_daemon_announcing_larger_limits_raises_the_caps(serve):
    body = bytes(3 * MIB)
    server = serve(lambda c, s: (greet(c), time.sleep(0.3), c.sendall(long_frame_header(len(body)) + body), s.wait(5)))
    with ZmtpDealer(server.endpoint, max_frame_bytes=MIB) as dealer:
        dealer.set_limits({"max_frame_bytes": 4 * MIB})
        assert dealer.max_message_bytes > 4 * 4 * MIB
        assert dealer.recv_multipart(5) == [body]
    t = PyZmqTransport(server.endpoint)
    try:
        t.set_limits({"max_buffers": 6})
        assert t.max_message_frames == MAX_MESSAGE_FRAMES + 4  # two more per buffer (spec.message_bounds)
    finally:
        t.close()


def test_message_of_too_many_frames_is_refused(serve):
    more = short_frame(b"x", 0x01)
    message = more * (MAX_MESSAGE_FRAMES + 1) + short_frame(b"end")
    # (a pause after READY: libzmq can miss data that comes in the same segment as the handshake)
    server = serve(lambda c, s: (greet(c), time.sleep(0.2), c.sendall(message), s.wait(5)))
    with pytest.raises(TransportError, match=f"more than {MAX_MESSAGE_FRAMES} frames"):
        ZmtpDealer(server.endpoint).recv_multipart(5)  # the constructor may already read it, with READY
    t = PyZmqTransport(server.endpoint)
    try:
        with pytest.raises(TransportError, match=f"{MAX_MESSAGE_FRAMES + 2} frames"):
            t.recv_multipart(5)
    finally:
        t.close()


def test_message_over_the_total_is_refused(serve):
    frame = long_frame_header(300_000, 0x01) + bytes(300_000)
    server = serve(lambda c, s: (greet(c), c.sendall(frame * 4), s.wait(5)))
    with pytest.raises(TransportError, match="more than 1000000 bytes"):
        ZmtpDealer(server.endpoint, max_message_bytes=1_000_000).recv_multipart(5)


# -- (b) the connect deadline ----------------------------------------------------------------------------------------


def _huge_command_streamer(conn: socket.socket, stop: threading.Event) -> None:
    greet(conn, ready=False)
    conn.sendall(long_frame_header(1 << 62, 0x04))
    stream(conn, stop, bytes(MIB), seconds=6, max_bytes=256 * MIB)


def test_huge_command_in_the_handshake_fails_within_the_connect_deadline(serve):
    server = serve(_huge_command_streamer)
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="command"):
            ZmtpDealer(server.endpoint, connect_timeout=1.0)
        took = elapsed_since(t0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < 1.0 + SLACK
    assert peak < 64 * MIB


def _ping_flood(conn: socket.socket, stop: threading.Event, ready: bool) -> None:
    greet(conn, ready=ready)
    stream(conn, stop, PING * 4096, seconds=8, max_bytes=1 << 40)  # and never reads a PONG


def test_ping_flood_in_the_handshake_fails_within_the_connect_deadline(serve):
    """No READY, only PINGs, and the PONGs are never read: the old client waited 5 s on each PONG it could not
    send, past its connect deadline."""
    server = serve(lambda c, s: _ping_flood(c, s, ready=False), rcvbuf=4096)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="handshake"):
        ZmtpDealer(server.endpoint, connect_timeout=1.0)
    assert elapsed_since(t0) < 1.0 + SLACK


def test_slow_greeting_fails_within_the_connect_deadline(serve):
    def drip(conn, stop):
        for b in GREETING[:40]:
            if stop.wait(0.05):
                return
            conn.sendall(bytes((b,)))

    server = serve(drip)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="handshake"):
        ZmtpDealer(server.endpoint, connect_timeout=0.5)
    assert elapsed_since(t0) < 0.5 + SLACK


def test_pyzmq_sets_the_handshake_deadline():
    import zmq

    t = PyZmqTransport("tcp://127.0.0.1:1", connect_timeout=1.5)
    try:
        assert t._sock.getsockopt(zmq.HANDSHAKE_IVL) == 1500
        assert t._sock.getsockopt(zmq.MAXMSGSIZE) == MAX_FRAME_BYTES
    finally:
        t.close()


# -- (c) a server that never reads -----------------------------------------------------------------------------------


def test_send_to_a_server_that_never_reads_returns_by_its_deadline(serve):
    server = serve(lambda c, s: (greet(c), s.wait(10)), rcvbuf=4096)
    payload = bytes(64 * MIB)
    dealer = ZmtpDealer(server.endpoint)
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="timed out sending"):
        dealer.send_multipart([b"", payload], timeout=1.0)
    assert elapsed_since(t0) < 1.0 + SLACK
    assert dealer.fileno() == -1  # half a message went out: the connection cannot be used again
    with pytest.raises(TransportError, match="timed out sending"):
        dealer.send_multipart([b"again"])


def test_send_while_the_server_floods_and_never_reads(serve):
    """The server streams messages at us while it reads nothing: the send still ends at its deadline, and what
    it reads meanwhile stays within the receive queue (the old client buffered it all, unparsed)."""
    msg = short_frame(b"x" * 200)

    def flood(conn, stop):
        greet(conn)
        stream(conn, stop, msg * 5000, seconds=8, max_bytes=1 << 40)

    server = serve(flood, rcvbuf=4096)
    payload = bytes(64 * MIB)
    dealer = ZmtpDealer(server.endpoint, send_timeout=1.0)
    tracemalloc.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="timed out sending"):
            dealer.send_multipart([b"", payload])
        took = elapsed_since(t0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert took < 1.0 + SLACK
    assert peak < 64 * MIB


def test_pyzmq_send_to_a_server_that_never_reads_returns_by_its_deadline(serve):
    server = serve(lambda c, s: (greet(c), c.recv(64), s.wait(10)), rcvbuf=4096)
    t = PyZmqTransport(server.endpoint, send_timeout=1.0)
    try:
        payload = bytes(64 * MIB)
        for _ in range(3):
            t0 = time.monotonic()
            try:
                t.send_multipart([b"", payload], timeout=1.0)  # libzmq queues it; only a full queue waits
            except TransportError as exc:
                assert "timed out sending" in str(exc)
            assert elapsed_since(t0) < 1.0 + SLACK
    finally:
        t.close()


# -- (d) a PING flood ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.0, 1.5])
def test_recv_during_a_ping_flood_returns_by_its_deadline(serve, timeout):
    server = serve(lambda c, s: _ping_flood(c, s, ready=True), rcvbuf=4096)
    with ZmtpDealer(server.endpoint) as dealer:
        for _ in range(3):
            t0 = time.monotonic()
            assert dealer.recv_multipart(timeout) is None
            assert elapsed_since(t0) < timeout + SLACK
        # at most one PONG waits to be written, however many PINGs came
        assert sum(v.nbytes for v in getattr(dealer, "_out", ())) <= len(encode_command(b"PONG", b"x" * 16))


def test_pings_are_still_answered(serve):
    got = bytearray()

    def pinger(conn, stop):
        greet(conn)
        conn.sendall(PING)
        conn.settimeout(5)
        while b"\x04PONG" not in got:
            data = conn.recv(4096)
            if not data:
                return
            got.extend(data)
        stop.wait(5)

    server = serve(pinger)
    with ZmtpDealer(server.endpoint) as dealer:
        end = time.monotonic() + 5
        while b"\x04PONG" not in got and time.monotonic() < end:
            dealer.recv_multipart(0.05)
    assert encode_command(b"PONG", b"ctx-0123456789ab") in got


# -- (e) a flood of messages -----------------------------------------------------------------------------------------


def test_tiny_message_flood_keeps_the_queue_bounded(serve):
    """200 MB of empty messages: at most max_queue_messages wait; the rest stays with the sender (TCP)."""
    sent = [0]

    def flood(conn, stop):
        greet(conn)
        sent[0] = stream(conn, stop, b"\x00\x00" * 65536, seconds=8, max_bytes=200 * 1000 * 1000)

    server = serve(flood)
    with ZmtpDealer(server.endpoint, max_queue_messages=500) as dealer:
        assert dealer.recv_multipart(5) == [b""]
        time.sleep(0.3)
        for _ in range(3):
            assert dealer.recv_multipart(0) == [b""]
            assert len(dealer._messages) <= 500
            assert len(dealer._inbuf) <= 1 << 19
        server.stop.set()


def test_message_flood_is_delivered_whole_and_in_order_with_back_pressure(serve):
    n = 40_000
    pad = b"p" * 1000
    progress = {"sent": 0, "done": False}

    def flood(conn, stop):
        greet(conn)
        data = b"".join(long_frame_header(1004) + i.to_bytes(4, "big") + pad for i in range(n))
        view = memoryview(data)
        conn.settimeout(10)
        while view.nbytes and not stop.is_set():
            k = conn.send(view[: 1 << 16])
            view = view[k:]
            progress["sent"] += k
        progress["done"] = not view.nbytes
        stop.wait(10)  # closing with the client's bytes unread would reset the connection, losing ours

    server = serve(flood)
    total = n * (9 + 1004)
    with ZmtpDealer(server.endpoint, max_queue_messages=200) as dealer:
        first = dealer.recv_multipart(5)
        assert first is not None and first[0][:4] == bytes(4)
        time.sleep(0.5)  # the server pushes what TCP lets it push
        assert dealer.recv_multipart(0) is not None
        assert len(dealer._messages) <= 200
        assert progress["sent"] < total  # reading paused: the sender is held back, nothing was dropped
        seen = 2
        while seen < n:
            m = dealer.recv_multipart(5)
            assert m is not None and int.from_bytes(m[0][:4], "big") == seen, seen
            assert len(dealer._messages) <= 200
            seen += 1
    deadline = time.monotonic() + 5  # the server's thread marks the end right after its last send returns
    while not progress["done"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert progress["done"]


# -- (f) not a ZeroMQ ROUTER -----------------------------------------------------------------------------------------


def _greeting_with(mechanism: bytes = b"NULL", major: int = 3) -> bytes:
    g = bytearray(GREETING)
    g[10] = major
    g[12:32] = mechanism.ljust(20, b"\x00")
    return bytes(g)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 60, "not a ZeroMQ peer"),
        (b"\xff" + bytes(8) + b"\x7f" + b"\x02" + bytes(60), "version 3 is required"),
        (_greeting_with(b"CURVE"), "CURVE security mechanism, which needs pyzmq"),
        (_greeting_with(b"\x01\x02NOPE"), "unknown ZMTP security mechanism"),
        (GREETING + encode_command(b"READY", encode_properties({b"Socket-Type": b"PUB"})), "PUB"),
        (GREETING + encode_command(b"ERROR", b"\x0cno thank you"), "refused the connection: no thank you"),
        (GREETING + short_frame(b"data before READY"), "before its READY"),
        (GREETING + encode_command(b"READY", b"\x05Socke\xff\xff\xff\xff"), "malformed READY"),
        (GREETING + READY_ROUTER + READY_ROUTER, "second READY"),
    ],
    ids=["http", "zmtp2", "curve", "unknown-mechanism", "pub", "error", "data-first", "bad-props", "two-ready"],
)
def test_not_a_router_is_a_clear_transport_error(serve, reply, message):
    server = serve(lambda c, s: (c.sendall(reply), s.wait(5)))
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=message):
        dealer = ZmtpDealer(server.endpoint, connect_timeout=2.0)
        try:
            dealer.recv_multipart(2.0)
        finally:
            dealer.close()
    assert elapsed_since(t0) < 2.0 + SLACK


def test_an_error_command_without_a_reason_says_zmtp_error(serve):
    """An RFC 23 ERROR with an empty reason is not mistaken for libzmq's garbled one (whose tail is a status)."""
    server = serve(lambda c, s: (c.recv(64), c.sendall(GREETING + encode_command(b"ERROR", b"\x00")), s.wait(5)))
    with pytest.raises(TransportError, match="refused the connection: ZMTP error$"):
        ZmtpDealer(server.endpoint, connect_timeout=2.0)

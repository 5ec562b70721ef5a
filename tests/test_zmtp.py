"""The pure-Python ZMTP DEALER against a real libzmq ROUTER (pyzmq) on loopback."""

from __future__ import annotations

import random
import select
import socket
import threading
import time

import pytest
import zmq
from draggan_protocol.transport import TransportError
from draggan_protocol.zmtp import GREETING, ZmtpDealer, encode_frame, parse_endpoint


@pytest.fixture
def router():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(0)
    ctx.term()


def test_round_trip_with_identity(router):
    router, endpoint = router
    with ZmtpDealer(endpoint, identity=b"client-1") as dealer:
        dealer.send_multipart([b"", b"hello", b"x" * 300])
        assert router.recv_multipart() == [b"client-1", b"", b"hello", b"x" * 300]
        router.send_multipart([b"client-1", b"reply", b""])
        assert dealer.recv_multipart(5) == [b"reply", b""]
        assert dealer.peer_properties[b"socket-type"] == b"ROUTER"


def test_without_identity_router_assigns_one(router):
    router, endpoint = router
    with ZmtpDealer(endpoint) as dealer:
        dealer.send_multipart([b"ping"])
        ident, body = router.recv_multipart()
        assert body == b"ping" and ident
        router.send_multipart([ident, b"pong"])
        assert dealer.recv_multipart(5) == [b"pong"]


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 4 * 1024 * 1024])
def test_frame_sizes_short_and_long(router, size):
    router, endpoint = router
    payload = bytes(random.Random(size).getrandbits(8) for _ in range(min(size, 4096))) * (size // 4096 + 1)
    payload = payload[:size]
    with ZmtpDealer(endpoint, identity=b"s") as dealer:
        dealer.send_multipart([b"head", memoryview(payload)])
        assert router.recv_multipart() == [b"s", b"head", payload]
        router.send_multipart([b"s", payload, b"tail"])
        got = dealer.recv_multipart(10)
        assert got == [payload, b"tail"]


def test_many_messages_in_order_both_ways(router):
    router, endpoint = router
    rng = random.Random(7)
    msgs = [[rng.randbytes(rng.choice([0, 3, 200, 300, 70000])) for _ in range(rng.randint(1, 5))] for _ in range(200)]
    with ZmtpDealer(endpoint, identity=b"m") as dealer:
        for m in msgs:
            dealer.send_multipart(m)
        for m in msgs:
            assert router.recv_multipart()[1:] == m
        for m in msgs:
            router.send_multipart([b"m", *m])
        got = [dealer.recv_multipart(5) for _ in msgs]
        assert got == msgs
        assert dealer.recv_multipart(0) is None


def test_timeout_and_poll(router):
    router, endpoint = router
    with ZmtpDealer(endpoint) as dealer:
        t0 = time.monotonic()
        assert dealer.recv_multipart(0.2) is None
        elapsed = time.monotonic() - t0
        assert 0.15 <= elapsed < 1.5
        t0 = time.monotonic()
        assert dealer.recv_multipart(0) is None
        assert time.monotonic() - t0 < 0.1


def test_fileno_becomes_readable_for_an_event_loop(router):
    router, endpoint = router
    with ZmtpDealer(endpoint, identity=b"f") as dealer:
        fd = dealer.fileno()
        assert fd >= 0
        assert select.select([fd], [], [], 0.05)[0] == []
        router.send_multipart([b"f", b"one"])
        router.send_multipart([b"f", b"two"])
        assert select.select([fd], [], [], 5)[0] == [fd]
        # Both messages may come in one read: drain until None, as a QSocketNotifier handler does.
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            m = dealer.recv_multipart(0.1)
            if m is not None:
                got.append(m)
        assert got == [[b"one"], [b"two"]]
    assert dealer.fileno() == -1


def test_receives_while_a_large_send_is_blocked():
    """The ROUTER streams to us while we push 32 MiB: neither side may stall the other."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.SNDHWM, 0)  # before bind: libzmq copies options into the listener there
    router.setsockopt(zmq.RCVTIMEO, 5000)
    endpoint = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    try:
        _stream_while_sending(router, endpoint)
    finally:
        router.close(0)
        ctx.term()


def _stream_while_sending(router, endpoint):
    with ZmtpDealer(endpoint, identity=b"b") as dealer:
        dealer.send_multipart([b"hi"])
        router.recv_multipart()
        for i in range(2000):
            router.send_multipart([b"b", b"progress", i.to_bytes(4, "big") * 256])
        dealer.send_multipart([b"big", bytes(32 * 1024 * 1024)])
        got = router.recv_multipart()
        assert got[1] == b"big" and len(got[2]) == 32 * 1024 * 1024
        for i in range(2000):
            assert dealer.recv_multipart(5) == [b"progress", i.to_bytes(4, "big") * 256]


def test_answers_heartbeat_pings_and_stays_connected():
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.HEARTBEAT_IVL, 50)
    router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        with ZmtpDealer(f"tcp://127.0.0.1:{port}", identity=b"hb") as dealer:
            dealer.send_multipart([b"x"])
            assert router.poll(5000) and router.recv_multipart() == [b"hb", b"x"]
            t_end = time.monotonic() + 1.2  # four heartbeat timeouts: only PONGs keep us alive
            while time.monotonic() < t_end:
                assert dealer.recv_multipart(0.05) is None
            router.send_multipart([b"hb", b"still here"])  # ROUTER_MANDATORY raises if the peer was dropped
            assert dealer.recv_multipart(5) == [b"still here"]
    finally:
        router.close(0)
        ctx.term()


def test_router_gone_raises_transport_error():
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ZmtpDealer(f"tcp://127.0.0.1:{port}")
    router.close(0)
    ctx.term()
    with pytest.raises(TransportError):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            dealer.recv_multipart(0.1)
    with pytest.raises(TransportError):
        dealer.send_multipart([b"late"])
    dealer.close()
    dealer.close()  # twice is fine
    with pytest.raises(TransportError):
        dealer.recv_multipart(0)


def test_connection_refused_is_a_transport_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TransportError, match="cannot connect"):
        ZmtpDealer(f"tcp://127.0.0.1:{port}", connect_timeout=1)
    assert isinstance(TransportError("x"), OSError)


def _serve_once(reply: bytes) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        conn.sendall(reply)
        time.sleep(0.5)
        conn.close()
        listener.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return listener.getsockname()[1], t


def test_not_a_zeromq_peer():
    port, t = _serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 60)
    with pytest.raises(TransportError, match="not a ZeroMQ peer"):
        ZmtpDealer(f"tcp://127.0.0.1:{port}", connect_timeout=2)
    t.join()


def test_curve_only_peer_is_refused_with_a_plain_message():
    greeting = bytearray(GREETING)
    greeting[12:32] = b"CURVE".ljust(20, b"\x00")
    port, t = _serve_once(bytes(greeting))
    with pytest.raises(TransportError, match="CURVE"):
        ZmtpDealer(f"tcp://127.0.0.1:{port}", connect_timeout=2)
    t.join()


def test_silent_peer_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        t0 = time.monotonic()
        with pytest.raises(TransportError, match="handshake"):
            ZmtpDealer(f"tcp://127.0.0.1:{listener.getsockname()[1]}", connect_timeout=0.3)
        assert time.monotonic() - t0 < 3
    finally:
        listener.close()


def test_encoding_details():
    assert encode_frame(b"abc")[0] == b"\x00\x03"
    assert encode_frame(b"a" * 256, 1)[0] == b"\x03" + (256).to_bytes(8, "big")
    assert parse_endpoint("tcp://127.0.0.1:5555") == ("127.0.0.1", 5555)
    assert parse_endpoint("tcp://[::1]:7") == ("::1", 7)
    with pytest.raises(TransportError):
        parse_endpoint("ipc:///tmp/x")
    with pytest.raises(ValueError):
        ZmtpDealer.__init__(object.__new__(ZmtpDealer), "tcp://127.0.0.1:1", identity=b"\x00bad")

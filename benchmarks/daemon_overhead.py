"""How much the protocol adds over raw ZeroMQ on loopback: hello round trip, 1024x1024 RGBA upload and download.

Rows:
  raw pyzmq        DEALER->ROUTER echo (server in another process), same payload sizes, no signing, no msgpack
  protocol only    a ROUTER process that decodes, verifies and validates like the daemon, then answers (no
                   engine, no queue): the protocol's own cost
  daemon           the real daemon process (`draggan serve --builtin-test-model`): hello; open_session with a
                   1024x1024 layer (includes cutting and scaling the region to the model); get_result of the
                   whole layer (no engine work: the session has not been edited)
  daemon (zmtp)    hello through the pure-Python ZMTP transport

Usage: python benchmarks/daemon_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
from draggan_protocol import Client
from draggan_protocol.client import layer_session_request
from draggan_protocol.framing import decode, encode, make_header
from draggan_protocol.signing import Signer
from draggan_protocol.validation import check_image_buffer, validate_request

SIDE = 1024
LAYER = os.urandom(SIDE * SIDE * 4)
KEY = os.urandom(32).hex().encode()


def timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def _raw_server(port_queue: mp.Queue) -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port_queue.put(router.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        ident, *frames = router.recv_multipart(copy=False)
        kind = bytes(frames[0])
        if kind == b"stop":
            return
        reply = [b"x" * 64, LAYER] if kind == b"download" else [b"x" * 64]
        router.send_multipart([ident, *reply], copy=False)


def _admit(ctx: zmq.Context) -> None:
    from draggan_daemon.server.admission import Admission
    from draggan_protocol.signing import plain_credentials

    admission = Admission(ctx, password=plain_credentials(KEY))
    while admission.socket.poll():
        admission.handle()


def _protocol_server(port_queue: mp.Queue) -> None:
    """The daemon's receive path (decode, verify, validate, buffer checks) and send path, without the engine."""
    ctx = zmq.Context()
    threading.Thread(target=_admit, args=(ctx,), daemon=True).start()
    time.sleep(0.2)  # the ZAP handler is bound before the first handshake
    router = ctx.socket(zmq.ROUTER)
    router.plain_server = True  # the daemon's mechanism and key check (admission.py), on a thread of its own
    port_queue.put(router.bind_to_random_port("tcp://127.0.0.1"))
    signer = Signer(KEY)
    while True:
        ident, *frames = router.recv_multipart(copy=False)
        msg = decode([f.buffer for f in frames], signer)
        if msg.msg_type == "shutdown":
            return
        content = validate_request(msg.msg_type, msg.content)
        buffers = []
        reply = {"status": "ok"}
        if msg.msg_type == "open_session":
            check_image_buffer(content["layer"], msg.buffers, SIDE, SIDE, "layer")
        if msg.msg_type == "get_result":
            buffers = [memoryview(LAYER)]
            reply.update(width=SIDE, height=SIDE, format="RGBA8", rect=[0, 0, SIDE, SIDE], offset=[0, 0])
        header = make_header(msg.msg_type + "_reply", "daemon", msg.msg_id)
        router.send_multipart([ident, *encode(header, reply, buffers, signer)], copy=False)


def _start(target) -> tuple[mp.Process, int]:
    q: mp.Queue = mp.Queue()
    proc = mp.get_context("fork").Process(target=target, args=(q,), daemon=True)
    proc.start()
    return proc, q.get(timeout=30)


def raw_pyzmq(repeats: int) -> dict[str, tuple[float, float]]:
    proc, port = _start(_raw_server)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def rt(frames):
        def go():
            dealer.send_multipart(frames, copy=False)
            dealer.recv_multipart()

        return go

    out = {
        "hello": timed(rt([b"hello", b"x" * 120]), repeats),
        "upload 1024x1024": timed(rt([b"upload", b"x" * 120, LAYER]), repeats),
        "download 1024x1024": timed(rt([b"download", b"x" * 120]), repeats),
    }
    dealer.send_multipart([b"stop"])
    proc.join(10)
    dealer.close(0)
    ctx.term()
    return out


def protocol_only(repeats: int) -> dict[str, tuple[float, float]]:
    proc, port = _start(_protocol_server)
    client = Client(f"tcp://127.0.0.1:{port}", KEY, transport_kind="pyzmq")
    content, buffers = layer_session_request(LAYER, SIDE, SIDE)
    out = {
        "hello": timed(lambda: client.request("hello", {"client": "bench"}), repeats),
        "upload 1024x1024": timed(lambda: client.request("open_session", content, buffers), repeats),
        "download 1024x1024": timed(lambda: client.get_result("s"), repeats),
    }
    client.send("shutdown")
    proc.join(10)
    client.close()
    return out


def real_daemon(repeats: int) -> dict[str, tuple[float, float]]:
    folder = Path(tempfile.mkdtemp(prefix="draggan-bench-"))
    conn = folder / "daemon.json"
    cmd = [
        sys.executable,
        "-m",
        "draggan_daemon.server.serve_cli",
        "--builtin-test-model",
        "--connection-file",
        str(conn),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not conn.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the daemon did not start")
            time.sleep(0.1)
        out = {}
        with Client.connect(conn, transport_kind="pyzmq") as c:
            out["hello"] = timed(c.hello, repeats)
            sessions = []

            def open_layer() -> None:
                sid = c.open_layer_session(LAYER, SIDE, SIDE)["session_id"]
                sessions.append(sid)
                if len(sessions) > 4:
                    c.close_session(sessions.pop(0))

            out["upload 1024x1024 (+ region prep)"] = timed(open_layer, repeats)
            out["download 1024x1024"] = timed(lambda: c.get_result(sessions[-1]), repeats)
            c_z = Client.connect(conn, transport_kind="zmtp")
            try:
                out["hello (pure-Python zmtp)"] = timed(c_z.hello, repeats)
                out["download 1024x1024 (zmtp)"] = timed(
                    lambda: c_z.get_result(c_z.open_seed_session()["session_id"]), 3
                )
            finally:
                c_z.close()
            c.shutdown()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    print(
        f"loopback, {os.cpu_count()} CPUs, payload {SIDE}x{SIDE} RGBA8 = {len(LAYER) / 2**20:.0f} MiB; ms median / p90"
    )
    rows = [
        ("raw pyzmq", raw_pyzmq(args.repeats)),
        ("protocol only", protocol_only(args.repeats)),
        ("daemon", real_daemon(args.repeats)),
    ]
    for name, results in rows:
        for what, (med, p90) in results.items():
            print(f"  {name:<14} {what:<36} {med:8.2f} {p90:8.2f}")
    signer = Signer(KEY)
    med, p90 = timed(lambda: signer.sign([b"h", b"c", LAYER]), args.repeats)
    print(f"  {'(cost)':<14} {'HMAC-SHA256 of 4 MiB, one side':<36} {med:8.2f} {p90:8.2f}")
    raw, proto = rows[0][1], rows[1][1]
    for what in raw:
        print(f"  overhead of the protocol over raw pyzmq, {what:<20} {proto[what][0] - raw[what][0]:+.2f} ms")
    from draggan_daemon import measurements

    figures = {f"{name}: {what} ms (median)": round(med, 3) for name, res in rows for what, (med, _) in res.items()}
    figures["HMAC-SHA256 of 4 MiB, one side, ms"] = round(med, 3)
    measurements.record("benchmarks/daemon_overhead.py", figures, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

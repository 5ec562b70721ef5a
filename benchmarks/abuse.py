"""The daemon under abuse (issue 14), as figures: what a peer without the key, a slow reader, a killed client and a
replayer cost a real `draggan serve` on loopback. A benchmark, not a test: it prints and records what it sees.

Rows:
  keyless flood (F1)   N times three peers that do not hold the key: one speaking the NULL mechanism and one PLAIN
                       with a made-up key, each sending one message of 4 frames of --frame-mib MiB, and one that
                       declares a HELLO command of --frame-mib MiB and streams it: the daemon's RSS growth (VmRSS of
                       its process) and a legitimate client's heartbeat round trips during it (p50 / p99). The
                       issue's budget: growth <= 64 MiB, p99 <= 100 ms (255-MiB frames).
  slow reader (F3)     a client opens a 2048x2048 layer session and sends --results get_result (BGRA8) without
                       reading a reply: RSS growth after the daemon has had time to queue them (budget <= 64 MiB).
  killed client (F5)   a client process dragging for thousands of steps is SIGKILLed: seconds until another client
                       sees the device queue free (budget <= 5 s).
  replays (F6)         one signed drag request sent again --replays times: how many were refused (budget: all).

Usage: python benchmarks/abuse.py [--peers 4] [--frame-mib 255] [--results 60] [--replays 100]
Figures go to the measurements file (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import zmq

MIB = 1 << 20


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def start_daemon(folder: Path) -> tuple[subprocess.Popen, Path]:
    conn = folder / "daemon.json"
    cmd = [sys.executable, "-m", "draggan_daemon.cli", "serve", "--no-bundled", "--builtin-test-model"]
    cmd += ["--threads", "1", "--connection-file", str(conn)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 120
    while not conn.exists():
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            raise SystemExit("draggan serve did not start")
        time.sleep(0.05)
    return proc, conn


def huge_hello(endpoint: str, frame_mib: int, done: threading.Event) -> None:
    """A stranger that speaks PLAIN by hand and declares a HELLO command of `frame_mib` MiB, then streams it."""
    import socket
    import struct

    from draggan_protocol.zmtp import greeting

    host, port = endpoint.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendall(greeting(b"PLAIN") + bytes([0x06]) + struct.pack(">Q", frame_mib * MIB) + b"\x05HELLO")
            chunk = bytes(MIB)
            for _ in range(frame_mib):
                if done.is_set():
                    break
                sock.sendall(chunk)
        except OSError:
            pass  # the daemon hung up: what it should do


def keyless_flood(conn: Path, pid: int, peers: int, frame_mib: int) -> dict[str, float]:
    from draggan_protocol import Client, read_connection_file

    info = read_connection_file(conn)
    before = rss_mib(pid)
    ctx = zmq.Context.instance()
    rtts: list[float] = []
    done = threading.Event()

    def heartbeats() -> None:
        with Client.connect(conn) as c:
            c.hello()
            while not done.is_set():
                t0 = time.perf_counter()
                c.request("heartbeat", timeout=30.0)
                rtts.append(time.perf_counter() - t0)
                time.sleep(0.02)

    beat = threading.Thread(target=heartbeats, daemon=True)
    beat.start()
    time.sleep(0.5)
    frame = bytes(frame_mib * MIB)
    socks, raws, peak = [], [], before
    message = [b"<DRAGGAN|MSG>", b"not-a-signature", b"{}", b"{}", frame, frame, frame, frame]
    for _ in range(peers):
        # a 1.x-style peer (NULL mechanism) and one with a made-up key (PLAIN): libzmq queues the message for them
        for password in (None, b"made-up"):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 1)
            if password is not None:
                s.plain_username, s.plain_password = b"draggan", password
            s.connect(info.endpoint)
            s.send_multipart(message, copy=False)
            socks.append(s)
        raws.append(threading.Thread(target=huge_hello, args=(info.endpoint, frame_mib, done), daemon=True))
        raws[-1].start()
    end = time.monotonic() + max(5.0, 0.05 * frame_mib * peers)
    while time.monotonic() < end:
        peak = max(peak, rss_mib(pid))
        time.sleep(0.1)
    done.set()
    beat.join(10)
    for s in socks:
        s.close(0)
    for t in raws:
        t.join(10)
    rtts.sort()
    p99 = rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))] if rtts else float("nan")
    return {
        "keyless flood: peers": peers,
        "keyless flood: frame MiB": frame_mib,
        "keyless flood: daemon RSS growth MiB": round(peak - before, 1),
        "keyless flood: heartbeat p50 ms": round(1000 * statistics.median(rtts), 2) if rtts else float("nan"),
        "keyless flood: heartbeat p99 ms": round(1000 * p99, 2),
    }


def slow_reader(conn: Path, pid: int, results: int) -> dict[str, float]:
    from draggan_protocol import Client
    from draggan_protocol.client import layer_session_request

    side = 2048
    with Client.connect(conn) as c:
        c.hello()
        pixels = bytes([90, 120, 150, 255]) * (side * side)  # opaque: a transparent layer is refused
        sid = c.request("open_session", *layer_session_request(pixels, side, side), timeout=120)
        sid = sid.content["session_id"]
        time.sleep(1.0)
        before = rss_mib(pid)
        busy = 0
        for _ in range(results):
            c.send("get_result", {"session_id": sid, "area": "layer", "format": "BGRA8"})
        end, peak = time.monotonic() + 8.0, before
        while time.monotonic() < end:
            peak = max(peak, rss_mib(pid))
            time.sleep(0.1)
        for m in c.poll(2.0):
            busy += int(m.content.get("code") == "busy")
    return {
        "slow reader: results asked": results,
        "slow reader: daemon RSS growth MiB": round(peak - before, 1),
        "slow reader: answered busy (of those read)": busy,
    }


KILLED = textwrap.dedent(
    """
    import sys
    from draggan_protocol import Client
    c = Client.connect(sys.argv[1])
    sid = c.open_seed_session(seed=1)["session_id"]
    c.request("drag", {"session_id": sid, "points": [[5, 5, 60, 60]], "params": {"steps": 5000, "stop_distance": 0}})
    c.wait_for(lambda m: m.msg_type == "progress", 60)
    print("dragging", flush=True)
    while True:
        c.poll(0.2)
    """
)


def killed_client(conn: Path) -> dict[str, float]:
    from draggan_protocol import Client

    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(conn)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "dragging"
    proc.kill()
    killed = time.monotonic()
    with Client.connect(conn) as c:
        sid = c.open_seed_session(seed=2)["session_id"]
        c.drag(sid, [(5, 5, 7, 7)], params={"steps": 1})  # queued behind the dead client's job until it is freed
    proc.wait(10)
    return {"killed client: seconds until the queue served the next client": round(time.monotonic() - killed, 2)}


def replays(conn: Path, count: int) -> dict[str, float]:
    from draggan_protocol import Client

    with Client.connect(conn) as c:
        sid = c.open_seed_session(seed=3)["session_id"]
        sent: list[list[bytes]] = []
        original = c.transport.send_multipart

        def capture(frames, *a, **kw):
            sent.append([bytes(f) for f in frames])
            return original(frames, *a, **kw)

        c.transport.send_multipart = capture
        c.drag(sid, [(5, 5, 7, 7)], params={"steps": 1})
        c.transport.send_multipart = original
        drag_frames = next(f for f in sent if b'"drag"' in f[2] or b"drag" in f[2])
        refused = 0
        for _ in range(count):
            original(drag_frames)
        end = time.monotonic() + 10
        while time.monotonic() < end and refused < count:
            for m in c.poll(0.5):
                refused += int(m.content.get("code") == "replay_rejected")
    return {"replays: sent": count, "replays: refused": refused}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument(
        "--frame-mib", type=int, default=255, help="each keyless peer sends 4 frames (or a HELLO) this large"
    )
    ap.add_argument("--results", type=int, default=60)
    ap.add_argument("--replays", type=int, default=100)
    args = ap.parse_args(argv)
    from draggan_daemon import measurements

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in (
            ("keyless flood (F1)", lambda conn, pid: keyless_flood(conn, pid, args.peers, args.frame_mib)),
            ("slow reader (F3)", lambda conn, pid: slow_reader(conn, pid, args.results)),
            ("killed client (F5)", lambda conn, pid: killed_client(conn)),
            ("replays (F6)", lambda conn, pid: replays(conn, args.replays)),
        ):
            folder = Path(tmp) / name.split()[0]
            folder.mkdir()
            proc, conn = start_daemon(folder)  # a fresh daemon per row: one row's memory is not the next one's
            try:
                got = run(conn, proc.pid)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
            print(f"{name}: " + ", ".join(f"{k.split(': ', 1)[1]} {v}" for k, v in got.items()), flush=True)
            figures.update(got)
    measurements.record("benchmarks/abuse.py", figures, argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

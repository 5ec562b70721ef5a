"""The client transports against hostile servers (issue 14, F8): memory and deadlines, as figures.

Each scenario is a raw-socket server on loopback that speaks just enough ZMTP (greeting, READY) and then
misbehaves; the client runs in a fresh subprocess so that its peak RSS (ru_maxrss) above its start is its own.

Rows:
  streamed 2^40 frame      the server declares a 2^40-byte frame and streams zeros: peak RSS above start, and when
                           recv_multipart(deadline) came back (or what it raised)
  streamed 512 MiB frame   the same with a frame over the cap that a client without one would allocate
  huge command, handshake  a 2^62-byte command instead of READY: the constructor against its connect deadline
  PING flood, handshake    PINGs instead of READY, PONGs never read: the constructor against its connect deadline
  never reads, send        send_multipart of a request carrying 64 MiB of pixels to a server that reads nothing
                           (with --send-default: the transport's default send_timeout instead of --deadline)
  floods + never reads     the same while the server streams messages at the client
  PING flood, recv         recv_multipart(deadline) while the server floods PINGs and never reads
  tiny-message flood       200 MB of empty messages: the most messages queued, and how much the server got rid of
                           (the rest is held back by TCP, nothing is dropped)

"past deadline" is how long after its deadline a call came back (negative: it ended earlier, e.g. by raising as
soon as a frame header was over the limit). The issue's budget: RSS growth <= 64 MiB, every call back within its
deadline + 0.5 s.

Usage: python benchmarks/abuse_zmtp.py [--deadline S] [--transport zmtp|pyzmq|both]
Figures go to the measurements file (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

from draggan_protocol.zmtp import GREETING, encode_command, encode_properties

MIB = 1 << 20
READY_ROUTER = encode_command(b"READY", encode_properties({b"Socket-Type": b"ROUTER"}))
PING = encode_command(b"PING", b"\x00\x0a" + b"ctx-0123456789ab")

_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    kind, endpoint, action, deadline = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    from draggan_protocol.transport import PyZmqTransport, TransportError
    from draggan_protocol.zmtp import ZmtpDealer
    with open("/proc/self/status") as f:  # a guard for the machine: a client without a cap would take it all
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + (2 << 30) if hard == resource.RLIM_INFINITY else min(vm + (2 << 30), hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    payload = bytes(64 << 20) if action == "send" else b""
    def make(connect_timeout=5.0):
        if kind == "zmtp":
            return ZmtpDealer(endpoint, connect_timeout=connect_timeout)
        return PyZmqTransport(endpoint, connect_timeout=connect_timeout)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"error": None, "queued": None}
    t0 = time.monotonic()
    try:
        if action == "connect":
            t = make(deadline)
            t.recv_multipart(0)
        else:
            t = make()
            t0 = time.monotonic()
            if action == "recv":
                t.recv_multipart(deadline)
            elif action == "send":
                # shaped like a request with one buffer: delimiter, signature, header, content, pixels
                msg = [b"<DRAGGAN|MSG>", b"0" * 64, b"h" * 100, b"c" * 100, payload]
                t.send_multipart(msg, timeout=deadline if deadline > 0 else None)
            elif action == "queue":
                t.recv_multipart(5)
                time.sleep(0.5)
                t.recv_multipart(0)
                if hasattr(t, "_messages"):  # the pure-Python queue (libzmq's is bounded by RCVHWM)
                    out["queued"] = len(t._messages) + 2
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:110]
    out["took"] = time.monotonic() - t0
    out["rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps(out))
    """
)


class Server:
    """A listening socket; each connection is greeted (as a ROUTER, after the client's first 10 bytes) and then
    handed to `behave`. `rcvbuf` small = a server that reads nothing stops the client's writes early."""

    def __init__(self, behave, ready: bool = True, rcvbuf: int | None = None) -> None:
        self.behave, self.ready, self.stop, self.sent = behave, ready, threading.Event(), 0
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.endpoint = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(10)
            conn.sendall(GREETING + (READY_ROUTER if self.ready else b""))
            time.sleep(0.2)
            self.behave(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def stream(self, conn: socket.socket, chunk: bytes, seconds: float = 15, max_bytes: int = 4 << 30) -> None:
        conn.settimeout(0.2)
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end and self.sent < max_bytes:
            try:
                self.sent += conn.send(chunk)
            except TimeoutError:
                continue
        self.stop.wait(seconds)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def long_header(size: int, flags: int = 0) -> bytes:
    return struct.pack(">BQ", flags | 0x02, size)


def huge_frame(declared: int):
    return lambda s, c: (c.sendall(long_header(declared)), s.stream(c, bytes(MIB)))


def huge_command(s: Server, c: socket.socket) -> None:
    c.sendall(long_header(1 << 62, 4))
    s.stream(c, bytes(MIB), max_bytes=256 * MIB)


def ping_flood(s: Server, c: socket.socket) -> None:
    s.stream(c, PING * 4096)


def message_flood(s: Server, c: socket.socket) -> None:
    s.stream(c, (b"\x00\xc8" + b"x" * 200) * 5000)


def tiny_flood(s: Server, c: socket.socket) -> None:
    s.stream(c, b"\x00\x00" * 65536, max_bytes=200_000_000)


SCENARIOS = [
    # name, greeted with READY, server SO_RCVBUF, behaviour, what the client does
    ("streamed 2^40 frame", True, None, huge_frame(1 << 40), "recv"),
    ("streamed 512 MiB frame", True, None, huge_frame(512 * MIB), "recv"),
    ("huge command, handshake", False, None, huge_command, "connect"),
    ("PING flood, handshake", False, 4096, ping_flood, "connect"),
    ("never reads, send 64 MiB", True, 4096, lambda s, c: s.stop.wait(120), "send"),
    ("floods + never reads, send", True, 4096, message_flood, "send"),
    ("PING flood, recv", True, 4096, ping_flood, "recv"),
    ("tiny-message flood", True, None, tiny_flood, "queue"),
]


def run(kind: str, name: str, ready: bool, rcvbuf, behave, action: str, deadline: float) -> dict:
    server = Server(behave, ready=ready, rcvbuf=rcvbuf)
    try:
        d = 0.0 if (action == "send" and deadline < 0) else deadline
        r = subprocess.run(
            [sys.executable, "-c", _PROBE, kind, server.endpoint, action, str(d)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if r.returncode != 0:
            return {"error": f"probe failed: {r.stderr.strip().splitlines()[-1:]}", "took": float("nan")}
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res["server_sent_mb"] = server.sent / 1e6
        return res
    finally:
        server.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deadline", type=float, default=2.0, help="the deadline given to each call, s [2]")
    ap.add_argument("--send-default", action="store_true", help="sends use the transport's default send_timeout")
    ap.add_argument("--transport", choices=("zmtp", "pyzmq", "both"), default="both")
    args = ap.parse_args(argv)
    figures: dict[str, float] = {}
    kinds = ("zmtp", "pyzmq") if args.transport == "both" else (args.transport,)
    print(f"deadline {args.deadline:g} s per call (connect, recv, send); budget: RSS +64 MiB, deadline + 0.5 s")
    print(f"{'transport':9} {'scenario':28} {'past deadline':>13} {'RSS +MiB':>9} {'queued':>7} {'srv MB':>8}  outcome")
    for kind in kinds:
        for name, ready, rcvbuf, behave, action in SCENARIOS:
            if kind == "pyzmq" and action == "connect":
                continue  # libzmq's handshake runs in its I/O thread: HANDSHAKE_IVL drops it, nothing waits
            deadline = -1.0 if (action == "send" and args.send_default) else args.deadline
            res = run(kind, name, ready, rcvbuf, behave, action, deadline)
            if action == "queue":
                past = "-"
            elif deadline < 0:
                past = f"{res['took']:.2f} s (dflt)"
            else:
                past = f"{res['took'] - deadline:+.2f} s"
            if action != "queue":
                figures[f"{kind} {name}: s past its deadline"] = round(res["took"] - max(deadline, 0.0), 2)
            figures[f"{kind} {name}: peak RSS above start MiB"] = round(res.get("rss_growth_mib", float("nan")), 1)
            queued = "-" if res.get("queued") is None else str(res["queued"])
            outcome = res["error"] or "returned"
            print(
                f"{kind:9} {name:28} {past:>13} {res.get('rss_growth_mib', float('nan')):9.1f} {queued:>7} "
                f"{res.get('server_sent_mb', 0):8.1f}  {outcome}"
            )
    from draggan_daemon import measurements

    measurements.record("benchmarks/abuse_zmtp.py", figures, argv=argv)


if __name__ == "__main__":
    main()

"""The daemon's socket loop: a ROUTER socket, request validation and dispatch, event delivery, housekeeping.

Threads: this loop owns the ROUTER socket and never waits on the engine; the device worker (worker.py) runs
engine tasks and hands outgoing messages to `post`, which queues them and wakes the loop through an inproc
socket. Every incoming message is checked before anything is queued for the engine: the signature first (a
message that does not prove the key, or is too big to verify, is dropped without any reply: its sender may not
hold the secret), then framing, sizes, header, version, replay protection (msg_id not seen before, date within
the clock window), content schema, buffer sizes and caps; every failure after the signature gets a specific
error reply.

A socket monitor reports dropped connections: a client's jobs and queued tasks are cancelled at once and its
sessions freed after `disconnect_grace` unless it reconnects. Replies with pixels are bounded per client
(`max_reply_backlog_bytes`): results queued plus pixels libzmq has not yet written; beyond that get_result is
answered `busy` and previews are left out of progress events.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq
from draggan_protocol import parameters
from draggan_protocol.errors import ProtocolError
from draggan_protocol.framing import SignatureError, decode, encode, make_header
from draggan_protocol.replay import DEFAULT_CAPACITY, DEFAULT_MAX_SKEW, ReplayGuard
from draggan_protocol.signing import Signer, plain_credentials
from draggan_protocol.spec import DEFAULT_LIMITS, OUTPUT_MODES, PROTOCOL_VERSION, REQUEST_TYPES, ErrorCode
from draggan_protocol.validation import check_image_buffer, validate_request

from .admission import ZAP_DOMAIN, Admission
from .engine_ops import EngineOps
from .logs import event, worth_logging
from .models import ModelRegistry
from .sessions import Session, SessionStore
from .worker import Task, Worker, new_job_id, warm_up

log = logging.getLogger("draggan.server")

DAEMON_VERSION = "0.1.0"
SERVER_SESSION = "daemon"


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0 = a free port
    key: bytes = b""
    limits: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    heartbeat_interval: float = 5.0  # what clients are told to use
    client_timeout: float = 60.0  # silence after which a client's jobs are cancelled and sessions freed
    session_idle_timeout: float = 3600.0
    sweep_interval: float = 0.25
    curve_secret_key: bytes | None = None  # Z85; required when host is not loopback
    curve_public_key: bytes | None = None
    curve_authorized_clients: list[bytes] | None = None  # Z85 public keys; None = any key (HMAC still applies)
    max_clock_skew: float = DEFAULT_MAX_SKEW  # header.date must be within this many seconds of the daemon's clock
    replay_cache: int = DEFAULT_CAPACITY  # msg_ids remembered for replay protection
    disconnect_grace: float = 3.0  # after a client's connection drops, its sessions wait this long for a reconnect


@dataclass
class ClientInfo:
    identity: bytes
    name: str = ""
    first_seen: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    fd: int | None = None  # the connection (socket fd in the daemon) its last signed message came on
    disconnected_at: float | None = None  # its connection dropped then; None while connected


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


class DaemonServer:
    def __init__(self, config: ServerConfig, registry: ModelRegistry, context: zmq.Context | None = None) -> None:
        if not config.key:
            raise ValueError("the daemon needs an HMAC secret")
        if not is_loopback(config.host) and not config.curve_secret_key:
            raise ValueError(f"listening on {config.host} requires CURVE keys (or use an SSH tunnel to 127.0.0.1)")
        warm_up()
        self.config = config
        self.limits = {**DEFAULT_LIMITS, **config.limits}
        self.registry = registry
        self.signer = Signer(config.key)
        # A context of its own: the ZAP handler's address is fixed per context (RFC 27), so two daemons in one
        # process (tests, `draggan edit`) must not share one.
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.store = SessionStore(
            self.limits["max_sessions"], self.limits["max_sessions_per_client"], self.limits["max_total_pixels"]
        )
        self.ops = EngineOps(registry, self.limits["max_frames_bytes"])
        self.worker = Worker(self.ops, self.store, self.post, self.limits["max_queue"])
        self.clients: dict[bytes, ClientInfo] = {}
        self._outbox: deque[tuple[bytes, str, dict[str, Any], list[Any], str | None]] = deque()
        self._wake_addr = f"inproc://draggan-wake-{id(self)}"
        self._wakers = threading.local()
        self._stop = threading.Event()
        self._closed = False  # set once the loop has closed its sockets
        self.replay = ReplayGuard(config.max_clock_skew, config.replay_cache)
        self.stats = {
            "received": 0,
            "dropped_unsigned": 0,
            "replays_rejected": 0,
            "errors": 0,
            "sent": 0,
            "disconnects": 0,
            "results_refused_backlog": 0,
            "previews_dropped": 0,
        }
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        # Frames are at most max_frame_bytes (larger buffers travel as several, §2), so that is all a peer can
        # make libzmq hold before the handshake has proven its key; a slow handshake is dropped after 5 s.
        self.router.setsockopt(zmq.MAXMSGSIZE, max(self.limits["max_frame_bytes"], self.limits["max_content_bytes"]))
        self.router.setsockopt(zmq.HANDSHAKE_IVL, 5000)
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 0)
        self.router.setsockopt(zmq.SNDHWM, 2000)
        # Disconnects free a client's work at once (issue 14 F5). ZMQ_ROUTER_NOTIFY is a draft option that
        # released libzmq builds refuse, so the socket monitor reports them: DISCONNECTED carries the
        # connection's fd, and every received frame carries the fd it came on (ZMQ_SRCFD).
        # (pyzmq's default monitor address is named after a socket fd, which a later daemon can reuse)
        monitor_addr = f"inproc://draggan-monitor-{os.getpid()}-{uuid.uuid4().hex}"
        self._monitor = self.router.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPTED, addr=monitor_addr)
        self._fd_owner: dict[int, bytes] = {}  # connection fd -> routing id of the client whose messages it carried
        self._reused_fds: dict[int, int] = {}  # fd -> DISCONNECTED events still to come for connections it had
        # Outstanding reply bytes per client (issue 14 F3): results queued or running (reserved by request
        # msg_id) and messages with buffers handed to libzmq but not yet written to the socket (trackers).
        self._reserved: dict[str, tuple[bytes, int]] = {}
        self._in_flight: dict[bytes, list[tuple[zmq.MessageTracker, int]]] = {}
        self.admission = self._admission()
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.router.bind(f"tcp://{host}:{config.port or '*'}")
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self._wake = self.ctx.socket(zmq.PULL)
        self._wake.bind(self._wake_addr)
        self.thread: threading.Thread | None = None

    def _admission(self) -> Admission:
        """The transport-level key check (admission.py), bound before the router so no handshake escapes it:
        CURVE with the allowed client keys beyond loopback, PLAIN with the key's password on loopback."""
        curve = self.config.curve_secret_key is not None
        admission = Admission(
            self.ctx,
            password=None if curve else plain_credentials(self.config.key),
            curve_keys=self.config.curve_authorized_clients if curve else [],
            max_connections=self.limits["max_connections"],
            max_per_address=self.limits["max_connections_per_address"],
        )
        self.router.zap_domain = ZAP_DOMAIN
        if curve:
            self.router.curve_server = True
            self.router.curve_secretkey = self.config.curve_secret_key
            self.router.curve_publickey = self.config.curve_public_key
        else:
            self.router.plain_server = True
        return admission

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> threading.Thread:
        """Serve on a background thread (tests, `draggan edit` in-process); `serve_forever` for the foreground."""
        self.thread = threading.Thread(target=self.serve_forever, name="draggan-server", daemon=True)
        self.thread.start()
        return self.thread

    def request_stop(self) -> None:
        self._stop.set()
        self._wake_loop()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def serve_forever(self) -> None:
        self.worker.start()
        event(
            log,
            "listening",
            endpoint=self.endpoint,
            device=self.registry.device,
            pid=os.getpid(),
            models=",".join(self.registry.entries),
            curve=bool(self.config.curve_secret_key),
        )
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._wake, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self.admission.socket, zmq.POLLIN)
        next_sweep = time.monotonic() + self.config.sweep_interval
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(int(self.config.sweep_interval * 1000)))
                if self._wake in ready:
                    while True:
                        try:
                            self._wake.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._flush()
                if self._monitor in ready:  # before the router: a connection's end before a message on its reused fd
                    self._on_monitor()  # and before admission, which counts the connections it reports
                if self.admission.socket in ready:
                    self.admission.handle()
                if self.router in ready:
                    for _ in range(64):  # bounded burst so events keep flowing under a flood
                        try:
                            frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle([f.buffer for f in frames], _source_fd(frames))
                    self._flush()
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + self.config.sweep_interval
            self._flush()
        finally:
            self.worker.stop()
            self._flush()
            try:
                self.router.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self.router.close(0)
            self._wake.close(0)
            self.admission.close()
            self._closed = True
            if self._own_ctx:
                self.ctx.destroy(linger=0)  # also the workers' wake-up sockets
            event(log, "stopped", endpoint=self.endpoint)

    # ------------------------------------------------------------------ sending
    def post(
        self, identity: bytes, msg_type: str, content: dict[str, Any], buffers: list[Any], parent: str | None
    ) -> None:
        """Queue a message for a client; callable from any thread."""
        self._outbox.append((identity, msg_type, content, buffers, parent))
        if threading.current_thread() is not self.thread:
            self._wake_loop()

    def _wake_loop(self) -> None:
        if self._closed:
            return  # the loop has ended and its context is gone
        sock = getattr(self._wakers, "sock", None)
        if sock is None:
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 1)
            sock.connect(self._wake_addr)
            self._wakers.sock = sock
        try:
            sock.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # a wake-up is already pending
        except zmq.ZMQError:
            pass  # the loop closed the context meanwhile: there is nothing left to wake

    def _flush(self) -> None:
        while self._outbox:
            identity, msg_type, content, buffers, parent = self._outbox.popleft()
            self._send(identity, msg_type, content, buffers, parent)

    def _send(
        self, identity: bytes, msg_type: str, content: dict[str, Any], buffers: list[Any], parent: str | None
    ) -> None:
        if msg_type == "get_result_reply" and parent is not None:
            self._reserved.pop(parent, None)
        if buffers and msg_type == "progress" and self.reply_backlog(identity) > self.limits["max_reply_backlog_bytes"]:
            # the client is not reading: the event goes out, its optional preview does not
            content = {k: v for k, v in content.items() if k != "preview"}
            buffers = []
            self.stats["previews_dropped"] += 1
        header = make_header(msg_type, SERVER_SESSION, parent)
        frames = [identity, *encode(header, content, buffers, self.signer, self.limits["max_frame_bytes"])]
        tracked: list[zmq.Frame] = []
        if buffers:  # pixels go zero-copy, tracked until libzmq has written them to the socket
            n = 5  # routing id, delimiter, signature, header, content; then the buffer frames
            tracked = [zmq.Frame(f, track=True) for f in frames[n:]]
            frames = [*frames[:n], *tracked]
        try:
            self.router.send_multipart(frames, copy=not buffers, flags=zmq.NOBLOCK)
            self.stats["sent"] += 1
        except zmq.ZMQError as exc:  # peer gone or its queue full: the message is dropped, never blocks
            event(log, "send_dropped", logging.DEBUG, msg_type=msg_type, error=exc)
            return
        if tracked:
            size = sum(memoryview(f.buffer).nbytes for f in tracked)
            self._in_flight.setdefault(identity, []).append((zmq.MessageTracker(*tracked), size))

    def reply_backlog(self, identity: bytes) -> int:
        """Reply bytes this client has outstanding: results queued or running, and pixels libzmq still holds."""
        flights = self._in_flight.get(identity)
        if flights:
            flights[:] = [(t, n) for t, n in flights if not t.done]
            if not flights:
                del self._in_flight[identity]
        unsent = sum(n for _, n in flights or ())
        return unsent + sum(n for owner, n in self._reserved.values() if owner == identity)

    def reply(
        self,
        identity: bytes,
        request_type: str,
        parent: str | None,
        content: dict[str, Any],
        buffers: list[Any] | None = None,
    ) -> None:
        msg_type = f"{request_type}_reply" if request_type in REQUEST_TYPES else "error"
        self._send(identity, msg_type, content, buffers or [], parent)

    # ------------------------------------------------------------------ receiving
    def _handle(self, frames: list[Any], fd: int | None = None) -> None:
        self.stats["received"] += 1
        if len(frames) < 2:
            return  # no routing identity: cannot answer
        identity = bytes(frames[0])
        try:
            msg = decode(frames[1:], self.signer, self.limits)
        except SignatureError as exc:  # not proven to hold the key: no reply of any kind
            self.stats["dropped_unsigned"] += 1
            if worth_logging(self.stats["dropped_unsigned"]):
                event(
                    log,
                    "dropped_unsigned",
                    logging.WARNING,
                    peer=identity.hex()[:16],
                    count=self.stats["dropped_unsigned"],
                    reason=exc.message,
                )
            return
        except ProtocolError as exc:
            self.stats["errors"] += 1
            event(log, "bad_message", logging.DEBUG, code=exc.code, error=exc.message)
            self.reply(
                identity, getattr(exc, "request_type", "error"), getattr(exc, "parent_id", None), exc.to_content()
            )
            return
        try:  # before anything acts on the message, the client's liveness included
            self.replay.check(msg.msg_id, msg.header["date"])
        except ProtocolError as exc:
            self.stats["replays_rejected"] += 1
            if worth_logging(self.stats["replays_rejected"]):
                event(
                    log,
                    "replay_rejected",
                    logging.WARNING,
                    peer=identity.hex()[:16],
                    session=msg.header["session"][:32],
                    msg_type=msg.msg_type[:32],
                    msg_id=msg.msg_id[:32],
                    date=msg.header["date"][:40],
                    why=exc.field,
                    count=self.stats["replays_rejected"],
                )
            self.reply(identity, msg.msg_type, msg.msg_id, exc.to_content())
            return
        if self._stop.is_set():
            content = {"status": "error", "code": ErrorCode.SHUTTING_DOWN, "message": "the daemon is shutting down"}
            self.reply(identity, msg.msg_type, msg.msg_id, content)
            return
        client = self.clients.get(identity)
        if client is None:
            client = self.clients[identity] = ClientInfo(identity)
            event(log, "client_seen", peer=identity.hex()[:16], session=msg.header["session"][:16])
        client.last_seen = time.monotonic()
        if client.disconnected_at is not None:
            event(log, "client_reconnected", peer=identity.hex()[:16])
            client.disconnected_at = None
        if fd is not None and client.fd != fd:
            if client.fd is not None and self._fd_owner.get(client.fd) == identity:
                del self._fd_owner[client.fd]
            previous = self._fd_owner.get(fd)
            if previous is not None and previous != identity:
                # The fd of another client's connection carries a new one: that connection has closed (the OS
                # reuses a closed fd), whether or not its DISCONNECTED event has been read yet.
                self._reused_fds[fd] = self._reused_fds.get(fd, 0) + 1
                self._drop_connection(previous, fd)
            client.fd = fd
            self._fd_owner[fd] = identity
        try:
            content = validate_request(msg.msg_type, msg.content)
            handler = getattr(self, f"on_{msg.msg_type}")
            result = handler(identity, msg, content)
        except ProtocolError as exc:
            self.stats["errors"] += 1
            event(log, "request_refused", logging.DEBUG, msg_type=msg.msg_type, code=exc.code, error=exc.message)
            self.reply(identity, msg.msg_type, msg.msg_id, exc.to_content())
            return
        except Exception as exc:  # a bug in a handler must not take the daemon down
            log.exception("handler_crashed msg_type=%s", msg.msg_type)
            content = {"status": "error", "code": ErrorCode.INTERNAL_ERROR, "message": f"{type(exc).__name__}: {exc}"}
            self.reply(identity, msg.msg_type, msg.msg_id, content)
            return
        if result is not None:
            self.reply(identity, msg.msg_type, msg.msg_id, {"status": "ok", **result})

    # ------------------------------------------------------------------ handlers (socket thread; never block)
    def on_hello(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        self.clients[identity].name = c["client"]
        event(log, "hello", peer=identity.hex()[:16], client=c["client"])
        return {
            "protocol_version": PROTOCOL_VERSION,
            "daemon_version": DAEMON_VERSION,
            "device": str(self.registry.device),
            "models": self.registry.describe(),
            "default_model": self.registry.default,
            "limits": self.limits,
            "heartbeat_interval": self.config.heartbeat_interval,
            "client_timeout": self.config.client_timeout,
            "session_idle_timeout": self.config.session_idle_timeout,
            "disconnect_grace": self.config.disconnect_grace,
            "capabilities": {
                "invert": True,
                "suggest_models": True,
                "formats": ["RGBA8", "BGRA8"],
                "seed_sessions": True,
                "outputs": list(OUTPUT_MODES),
                "measured_arrival": True,
                "presets": parameters.describe_presets(),
                "frames": True,
            },
            "queue_length": self.worker.queue_length(),
        }

    def on_heartbeat(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        return {"queue_length": self.worker.queue_length()}

    def on_list_models(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        return {"models": self.registry.describe(), "default_model": self.registry.default}

    def on_status(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "queue_length": self.worker.queue_length(),
            "jobs": self.worker.positions_for(identity),
            "sessions": [s.describe() for s in self.store.owned_by(identity)],
            "total_sessions": len(self.store.sessions),
            "total_pixels": self.store.total_pixels,
        }

    def on_open_session(self, identity: bytes, msg: Any, c: dict[str, Any]) -> None:
        try:
            model = self.registry.resolve_name(c.get("model"))
        except KeyError as exc:
            raise ProtocolError(ErrorCode.MODEL_NOT_FOUND, str(exc.args[0]), field="model") from None
        entry = self.registry.entries[model]
        fields: dict[str, Any] = {"model_name": model, "source": c["source"], "name": c["name"]}
        if c["source"] == "seed":
            res = int(entry.generator.img_resolution) if entry.generator is not None else 0
            fields.update(width=res, height=res, offset=tuple(c["offset"]), seed=c["seed"], psi=c["psi"])
        else:
            layer = c.get("layer")
            if layer is None:
                raise ProtocolError(ErrorCode.INVALID_CONTENT, "layer: required when source is 'layer'", field="layer")
            w, h = layer["width"], layer["height"]
            if w * h > self.limits["max_layer_pixels"]:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"the layer is {w}x{h} ({w * h / 1e6:.1f} megapixels); this daemon takes at most "
                    f"{self.limits['max_layer_pixels'] / 1e6:.1f} megapixels: send a region or a smaller layer",
                    field="layer",
                )
            check_image_buffer(layer, msg.buffers, w, h, "layer")
            if "selection" in c:
                check_image_buffer(c["selection"], msg.buffers, w, h, "selection")
            region = c.get("region")
            if region is not None:
                x, y, rw, rh = region
                if x >= w or y >= h or x + rw <= 0 or y + rh <= 0:
                    raise ProtocolError(
                        ErrorCode.INVALID_CONTENT, f"region {region} lies outside the {w}x{h} layer", field="region"
                    )
            fields.update(width=w, height=h, offset=tuple(layer["offset"]), region=tuple(region) if region else None)
        victim = self.store.fair_victim(identity)
        if victim is not None:  # the daemon is full, mostly with another client's idle sessions: free one
            self._close(victim, "fair_share")
            closed = {"session_id": victim.session_id, "reason": "fair_share"}
            self.post(victim.owner, "session_closed", closed, [], None)
        session = self.store.create(identity, **fields)
        session.pending_tasks = 1
        task = Task("open", identity, msg.msg_id, session, c, list(msg.buffers))
        try:
            self.worker.submit(task)
        except ProtocolError:
            self.store.remove(session.session_id)
            raise
        event(
            log,
            "session_opening",
            session=session.session_id[:8],
            source=c["source"],
            model=model,
            size=f"{fields['width']}x{fields['height']}",
        )
        return None  # the worker replies once the session is prepared

    def _owned(self, identity: bytes, c: dict[str, Any]) -> Session:
        return self.store.get_owned(c["session_id"], identity)

    def _submit_job(self, identity: bytes, msg: Any, kind: str, s: Session, c: dict[str, Any]) -> dict[str, Any]:
        with self.store.lock:
            if s.active_job is not None:
                raise ProtocolError(
                    ErrorCode.BUSY,
                    "this session already has a job queued or running; cancel it first",
                    field="session_id",
                    job_id=s.active_job,
                )
            job_id = new_job_id()
            s.active_job = job_id
        task = Task(kind, identity, msg.msg_id, s, c, list(msg.buffers), job_id=job_id)
        try:
            position = self.worker.submit(task)
        except ProtocolError:
            with self.store.lock:
                s.active_job = None
            raise
        event(log, "job_queued", kind=kind, job=job_id[:8], session=s.session_id[:8], position=position)
        return {"job_id": job_id, "session_id": s.session_id, "queue_position": position}

    def on_invert(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        s = self._owned(identity, c)
        return self._submit_job(identity, msg, "invert", s, c)

    def on_suggest_models(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        s = self._owned(identity, c)
        if s.source == "seed":
            raise ProtocolError(
                ErrorCode.INVALID_CONTENT, "suggest_models needs a layer session: a seed session has no picture to fit"
            )
        return self._submit_job(identity, msg, "suggest", s, c)

    def on_drag(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        s = self._owned(identity, c)
        if "mask" in c:
            if s.width <= 0:
                raise ProtocolError(ErrorCode.BUSY, "the session is still being prepared; send the mask again shortly")
            check_image_buffer(c["mask"], msg.buffers, s.width, s.height, "mask")
        return self._submit_job(identity, msg, "drag", s, c)

    def on_cancel(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        task = self.worker.find_job(c["job_id"], identity)
        was = self.worker.cancel(task)
        event(log, "job_cancel", job=c["job_id"][:8], was=was)
        return {"job_id": c["job_id"], "was": was}

    def on_undo(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        s = self._owned(identity, c)
        with self.store.lock:
            if s.busy:
                raise ProtocolError(ErrorCode.BUSY, "the session has work queued or running", field="session_id")
            if len(s.history) <= 1:
                raise ProtocolError(ErrorCode.NOTHING_TO_UNDO, "there is no drag to undo", field="session_id")
            s.history.pop()
            s.frames = None  # they showed the drag just undone
            return {"session_id": s.session_id, "history_depth": len(s.history) - 1}

    def on_reset(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        s = self._owned(identity, c)
        with self.store.lock:
            if s.busy:
                raise ProtocolError(ErrorCode.BUSY, "the session has work queued or running", field="session_id")
            del s.history[1:]
            s.frames = None  # they showed drags that are gone
            return {"session_id": s.session_id, "history_depth": 0}

    def on_get_result(self, identity: bytes, msg: Any, c: dict[str, Any]) -> None:
        s = self._owned(identity, c)
        size = 4 * s.width * s.height  # at most the whole layer, 4 bytes a pixel in every result format
        backlog = self.reply_backlog(identity)
        limit = self.limits["max_reply_backlog_bytes"]
        if backlog and backlog + size > limit:  # one result is always allowed, however big
            self.stats["results_refused_backlog"] += 1
            raise ProtocolError(
                ErrorCode.BUSY,
                f"{backlog} bytes of results to this client are still queued or unread (limit {limit}); "
                "read the replies you asked for, then ask again",
                field="session_id",
                backlog_bytes=backlog,
                limit=limit,
            )
        with self.store.lock:
            s.pending_tasks += 1
        self._reserved[msg.msg_id] = (identity, size)
        try:
            self.worker.submit(Task("result", identity, msg.msg_id, s, c))
        except ProtocolError:
            self._reserved.pop(msg.msg_id, None)
            with self.store.lock:
                s.pending_tasks -= 1
            raise
        return None

    def on_get_frames(self, identity: bytes, msg: Any, c: dict[str, Any]) -> None:
        """The frames the session's last drag kept, `count` from `start` (at most what the client's reply backlog
        allows; at least one): answered here, the pixels decompressed from the session's frame store."""
        s = self._owned(identity, c)
        keep = s.frames
        with self.store.lock:
            if s.active_job is not None:
                raise ProtocolError(
                    ErrorCode.BUSY,
                    "the session has a job queued or running; ask for its frames when it is done",
                    field="session_id",
                )
        if keep is None:
            raise ProtocolError(
                ErrorCode.INVALID_INPUT,
                "the session's last drag kept no frames (send the drag with `frames`)",
                field="session_id",
            )
        total = len(keep)
        start = c["start"]
        if start >= total:
            raise ProtocolError(
                ErrorCode.INVALID_CONTENT, f"start: {start} is past the last frame ({total} kept)", field="start"
            )
        size = keep.frame_bytes
        limit = self.limits["max_reply_backlog_bytes"]
        backlog = self.reply_backlog(identity)
        if backlog and backlog + size > limit:
            self.stats["results_refused_backlog"] += 1
            raise ProtocolError(
                ErrorCode.BUSY,
                f"{backlog} bytes of replies to this client are still queued or unread (limit {limit}); "
                "read the replies you asked for, then ask again",
                field="session_id",
                backlog_bytes=backlog,
                limit=limit,
            )
        fits = max(1, (limit - backlog) // size)
        fits = min(fits, max(1, self.limits["max_buffer_bytes"] // size))
        count = min(total - start, fits, c.get("count") or total)
        chosen = keep.read(start, count)
        x, y, w, h = keep.rect
        pixels = b"".join(raw for _, _, raw in chosen)
        if c["format"] == "BGRA8":
            pixels = _rgba_to_bgra(pixels)
        end = start + len(chosen)
        content = {
            "status": "ok",
            "session_id": s.session_id,
            **keep.describe(),
            "start": start,
            "count": len(chosen),
            "next": end if end < total else None,
            "width": w,
            "height": h,
            "format": c["format"],
            "rect": [x, y, w, h],
            "offset": [s.offset[0] + x, s.offset[1] + y],
            "frame_bytes": size,
            "frames": [{"step": step, "final": final} for step, final, _ in chosen],
            "buffer": 0,
        }
        self.reply(identity, "get_frames", msg.msg_id, content, [pixels])
        return None

    def on_close_session(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        s = self._owned(identity, c)
        self._close(s, "closed by the client")
        return {"session_id": s.session_id}

    def on_shutdown(self, identity: bytes, msg: Any, c: dict[str, Any]) -> dict[str, Any]:
        event(log, "shutdown_requested", peer=identity.hex()[:16])
        self._stop.set()
        return {"message": "shutting down"}

    # ------------------------------------------------------------------ housekeeping
    def _close(self, s: Session, reason: str) -> None:
        """Free a session now, or as soon as its running work stops (its queued work is cancelled)."""
        with self.store.lock:
            s.closing = True
        for t in self.worker.tasks_of(s):
            self.worker.cancel(t, reason)
        with self.store.lock:
            if not s.busy:
                self.store.remove(s.session_id)
                s.history.clear()
                s.layer = s.prepared = None
        event(log, "session_closed", session=s.session_id[:8], reason=reason)

    def _on_monitor(self) -> None:
        """Connections that dropped: their clients' jobs and queued tasks are cancelled now, their sessions
        freed once `disconnect_grace` passes without a message on a new connection."""
        from zmq.utils.monitor import parse_monitor_message

        gone: list[int] = []
        while True:
            try:
                evt = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            if evt["event"] == zmq.EVENT_ACCEPTED:
                self.admission.accepted(int(evt["value"]))
            elif evt["event"] == zmq.EVENT_DISCONNECTED:
                self.admission.disconnected(int(evt["value"]))
                gone.append(int(evt["value"]))
        if not gone:
            return
        # Messages the dropped connection sent before it went are read first, so none counts after its end.
        for _ in range(4096):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._handle([f.buffer for f in frames], _source_fd(frames))
        for fd in gone:
            if self._reused_fds.get(fd):  # the end of a connection already known closed (its fd was reused)
                self._reused_fds[fd] -= 1
                continue
            identity = self._fd_owner.get(fd)
            if identity is not None:
                self._drop_connection(identity, fd)
        self._flush()

    def _drop_connection(self, identity: bytes, fd: int) -> None:
        """`identity`'s connection on `fd` closed: its jobs and queued tasks are cancelled now (its sessions wait
        `disconnect_grace` for it to come back)."""
        if self._fd_owner.get(fd) == identity:
            del self._fd_owner[fd]
        info = self.clients.get(identity)
        if info is None or info.fd != fd:
            return
        info.fd = None
        info.disconnected_at = time.monotonic()
        self.stats["disconnects"] += 1
        cancelled = self.worker.cancel_owner(identity, "client disconnected")
        event(log, "client_disconnected", peer=identity.hex()[:16], jobs_cancelled=cancelled)

    def _sweep(self) -> None:
        now = time.monotonic()
        for identity, info in list(self.clients.items()):
            silent = now - info.last_seen > self.config.client_timeout
            dropped = info.disconnected_at is not None and now - info.disconnected_at >= self.config.disconnect_grace
            if silent or dropped:
                del self.clients[identity]
                if info.fd is not None and self._fd_owner.get(info.fd) == identity:
                    del self._fd_owner[info.fd]
                reason = "client disappeared" if silent else "client disconnected"
                cancelled = self.worker.cancel_owner(identity, reason)
                sessions = self.store.owned_by(identity)
                for s in sessions:
                    self._close(s, reason)
                self._in_flight.pop(identity, None)
                event(
                    log,
                    "client_gone",
                    peer=identity.hex()[:16],
                    silent_for=round(now - info.last_seen, 1),
                    disconnected=not silent,
                    jobs_cancelled=cancelled,
                    sessions_freed=len(sessions),
                )
        for s in self.store.idle(self.config.session_idle_timeout):
            self._close(s, "idle")
            self.post(s.owner, "session_closed", {"session_id": s.session_id, "reason": "idle"}, [], None)


def _rgba_to_bgra(pixels: bytes) -> bytes:
    """RGBA8 bytes as BGRA8 (red and blue swapped)."""
    out = bytearray(pixels)
    out[0::4], out[2::4] = pixels[2::4], pixels[0::4]
    return bytes(out)


def _source_fd(frames: list[zmq.Frame]) -> int | None:
    """The daemon-side fd of the connection a message arrived on (None where libzmq cannot tell)."""
    try:
        return int(frames[-1].get(zmq.SRCFD))
    except (zmq.ZMQError, AttributeError, ValueError):
        return None

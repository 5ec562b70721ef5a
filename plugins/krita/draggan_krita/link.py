"""The connection to the daemon, kept alive from a QTimer so Krita's GUI thread never waits on the network.

States: OFFLINE (no connection file, refused, or lost; retried every few seconds), CONNECTING (hello sent, no
answer yet), READY (hello answered: device, models, limits). Every other message from the daemon is handed to
listeners through `message`, in the order it came.

Listeners change the document, and Krita runs its event loop inside those calls: the timer or the socket notifier
would then poll again in the middle of a message and hand out the next ones before the first is dealt with (a
refused drag's end while the docker was still starting it). A poll that would start inside another is put off.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from draggan_protocol.jobs import HEARTBEAT_INTERVAL, LOST_AFTER
from draggan_protocol.outcome import START_DAEMON, lost_text
from PyQt5.QtCore import QObject, QSocketNotifier, QTimer, pyqtSignal

OFFLINE = "offline"
CONNECTING = "connecting"
READY = "ready"

START_COMMAND = START_DAEMON  # what "Start it with: …" names (works after `make run`)


def default_transport() -> str:
    """The pure-Python ZMTP transport, unless DRAGGAN_TRANSPORT says otherwise: Krita's own Python has no pyzmq,
    and using one transport everywhere means what is tested is what people run."""
    return os.environ.get("DRAGGAN_TRANSPORT", "zmtp")


class DaemonLink(QObject):
    state_changed = pyqtSignal()
    message = pyqtSignal(object)  # draggan_protocol.Message
    lost = pyqtSignal(str)  # the connection went away (plain-words reason)

    def __init__(
        self,
        connection_file: str | os.PathLike | None = None,
        parent: QObject | None = None,
        poll_ms: int = 40,
        retry_s: float = 3.0,
        hello_timeout_s: float = 8.0,
        client_name: str = "krita",
    ) -> None:
        super().__init__(parent)
        self.connection_file = connection_file
        self.state = OFFLINE
        self.detail = "Looking for the DragGAN daemon…"
        self.info: dict[str, Any] = {}
        self.client: Any = None
        self.retry_s = retry_s
        self.hello_timeout_s = hello_timeout_s
        self.client_name = client_name
        self._hello_id: str | None = None
        self._deadline = 0.0
        self._next_try = 0.0
        self._notifier: QSocketNotifier | None = None
        self._ticking = False
        self.launch: Any = None  # a DaemonLaunch while a daemon started from here comes up
        self.launched: Any = None  # the last daemon started from here (its process, its log)
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.tick)

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        self._timer.start()
        self.tick()

    def stop(self) -> None:
        self._timer.stop()
        self._drop()

    @property
    def ready(self) -> bool:
        return self.state == READY

    def connection_path(self) -> Path:
        from draggan_protocol.connection import default_connection_file

        return Path(self.connection_file) if self.connection_file else default_connection_file()

    def send(self, msg_type: str, content: dict[str, Any] | None = None, buffers: list[Any] | tuple = ()) -> str:
        """Send a request now; returns its msg_id. Raises ConnectionError when not connected."""
        if self.client is None or self.state != READY:
            raise ConnectionError(self.detail)
        try:
            return self.client.send(msg_type, content or {}, list(buffers))
        except OSError as exc:
            self._lose(_gone(exc))
            raise ConnectionError(self.detail) from exc

    @property
    def launching(self) -> bool:
        """Whether a daemon started from the docker is still coming up."""
        return self.launch is not None

    def start_daemon(self, configured: str = "") -> bool:
        """Start `draggan serve` detached for this link's connection file (draggan_protocol.launcher); the link
        connects as soon as it runs. False, with the reason in `detail`, when no daemon program was found."""
        from draggan_protocol.launcher import DaemonLaunch, find_daemon_command

        if self.state != OFFLINE or self.launch is not None:
            return False
        command, how = find_daemon_command(configured, [Path(__file__).resolve().parent])
        if command is None:
            self._set(OFFLINE, how)
            return False
        try:
            self.launch = self.launched = DaemonLaunch(command, self.connection_path())
        except OSError as exc:
            self._set(OFFLINE, f"The DragGAN daemon could not be started ({' '.join(command)}: {exc}).")
            return False
        self._set(OFFLINE, f"Starting the DragGAN daemon ({how}); the first start can take a minute…")
        return True

    def _watch_launch(self, now: float) -> bool:
        """While a started daemon comes up: True when it is time to try to connect."""
        state = self.launch.state()
        if state == "exited":
            text = self.launch.failure_text()
            self.launch = None
            self._set(OFFLINE, text)
            return False
        return state == "running"

    def models(self) -> list[dict[str, Any]]:
        return list(self.info.get("models") or [])

    def limits(self) -> dict[str, Any]:
        return dict(self.info.get("limits") or {})

    def not_running_text(self) -> str:
        return f"The DragGAN daemon is not running. Start it with: {START_COMMAND}."

    def describe(self) -> str:
        if self.state != READY:
            return self.detail
        model = self.info.get("default_model") or "?"
        res = next((m.get("resolution") for m in self.models() if m.get("name") == model), None)
        res_text = f", {res}×{res} px" if res else ""
        return f"Ready — {self.info.get('device', '?')}, model {model}{res_text}"

    # ------------------------------------------------------------------ the loop
    def tick(self) -> None:
        if self._ticking:  # called from inside a listener (Krita ran the event loop): the next tick takes over
            return
        self._ticking = True
        notifier = self._notifier
        if notifier is not None:
            notifier.setEnabled(False)  # unread bytes would wake it again and again inside Krita's event loop
        try:
            self._tick()
        finally:
            self._ticking = False
            if notifier is not None and notifier is self._notifier:
                notifier.setEnabled(True)

    def _tick(self) -> None:
        now = time.monotonic()
        if self.client is None:
            if self.launch is not None:
                if self._watch_launch(now):
                    self._try_connect(now)
                return
            if now >= self._next_try:
                self._try_connect(now)
            return
        try:
            messages = self.client.poll(0.0)
        except Exception as exc:  # a transport failure or a broken daemon: either way the link is gone
            self._lose(_gone(exc))
            return
        for msg in messages:
            if self.state == CONNECTING and msg.parent == self._hello_id:
                if msg.is_error:
                    self._fail(f"The daemon refused to talk: {msg.content.get('message', '')}")
                    return
                self.info = dict(msg.content)
                self.launch = None
                self._set(READY, self.describe())
                continue
            self.message.emit(msg)
            if self.client is None:  # a listener dropped the link
                return
        if self.state == CONNECTING and now > self._deadline:
            self._fail(
                f"The daemon at {self.client.endpoint} does not answer (a stale connection file, or another "
                f"program on that port). Restart it with: {START_COMMAND}."
            )
        elif self.state == READY:
            # Heartbeats go out every HEARTBEAT_INTERVAL s and a daemon answers each within milliseconds, even while
            # it computes: after LOST_AFTER s of silence it is gone, and a running job is reported lost.
            silent = self.client.daemon_silent_for()
            if silent > LOST_AFTER:
                self._lose(lost_text(silent))

    def _try_connect(self, now: float) -> None:
        from draggan_protocol.client import Client
        from draggan_protocol.connection import read_connection_file
        from draggan_protocol.transport import HandshakeRefused

        self._next_try = now + self.retry_s
        path = self.connection_path()
        try:
            info = read_connection_file(path)
        except FileNotFoundError:
            self._set(OFFLINE, self.not_running_text())
            return
        except (OSError, ValueError) as exc:
            self._set(OFFLINE, f"Cannot read the daemon's connection file {path}: {exc}")
            return
        try:
            self.client = Client(
                info.endpoint,
                info.key_bytes,
                curve=info.curve_tuple(),
                transport_kind=default_transport(),
                client_name=self.client_name,
                heartbeat_interval=HEARTBEAT_INTERVAL,
            )
        except HandshakeRefused as exc:  # it runs, but not for this connection file's key (or it is full)
            self.client = None
            self._set(OFFLINE, f"The DragGAN daemon at {info.endpoint} did not let the plugin in: {exc}.")
            return
        except (OSError, ValueError) as exc:
            self.client = None
            self._set(OFFLINE, f"The DragGAN daemon is not running ({exc}). Start it with: {START_COMMAND}.")
            return
        self._hello_id = self.client.send("hello", {"client": self.client_name})
        self._deadline = now + self.hello_timeout_s
        self._watch_socket()
        self._set(CONNECTING, f"Connecting to the daemon at {info.endpoint}…")

    def _watch_socket(self) -> None:
        """Wake up as soon as bytes arrive (the timer alone would add up to one interval of latency)."""
        fileno = getattr(self.client.transport, "fileno", None)
        if fileno is None:
            return
        try:
            fd = fileno()
        except OSError:
            return
        if fd < 0:
            return
        self._notifier = QSocketNotifier(fd, QSocketNotifier.Read, self)
        self._notifier.activated.connect(lambda _fd: self.tick())

    def _fail(self, reason: str) -> None:
        self._drop()
        self.launch = None  # a started daemon that does not answer: back to plain retrying, the reason shown
        self._set(OFFLINE, reason)

    def _lose(self, reason: str) -> None:
        was_ready = self.state == READY
        self._drop()
        self._set(OFFLINE, reason)
        if was_ready:
            self.lost.emit(reason)

    def _drop(self) -> None:
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier.deleteLater()
            self._notifier = None
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
        self.client = None
        self._next_try = time.monotonic() + self.retry_s

    def _set(self, state: str, detail: str) -> None:
        changed = (state, detail) != (self.state, self.detail)
        self.state, self.detail = state, detail
        if changed:
            self.state_changed.emit()


def _gone(exc: BaseException) -> str:
    """What a person reads when the daemon vanished, whether it was noticed while sending or while listening."""
    return f"The DragGAN daemon went away ({exc}). Start it again with: {START_COMMAND}."

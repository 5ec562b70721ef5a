"""The dialog's "Suggest a model", without GIMP: the layer goes to the daemon, which fits it briefly into every model
it serves (suggest_models) and ranks them; the dialog polls from a GLib timer and then picks the best model.

The conversation is the client core's: the session request, the job tracker (a daemon that falls silent ends it
"lost" within seconds) and the ranking's words (draggan_protocol.outcome.ranking_text).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from draggan_protocol import DaemonError, DaemonUnreachable
from draggan_protocol.client import layer_session_request, suggest_request
from draggan_protocol.jobs import DONE, LOST_AFTER
from draggan_protocol.outcome import error_text, ranking_text

from .errors import PluginError
from .params import RunSettings
from .pixels import Selection
from .runner import LayerInput, selection_mask

OPEN_TIMEOUT = 60.0  # an upload of a large layer on a slow link


class Suggester:
    """One press of "Suggest a model": `state` idle, running, done or failed; `best` the winner's name when done."""

    def __init__(
        self,
        settings: Callable[[], RunSettings],
        connect: Callable[..., Any],
        layer: Callable[[], LayerInput],
        selection: Callable[[], Selection | None] = lambda: None,
    ) -> None:
        self.settings, self.connect, self.layer, self.selection = settings, connect, layer, selection
        self.state, self.text, self.best = "idle", "", ""
        self.ranking: list[dict[str, Any]] = []
        self._conn: Any = None
        self._job: Any = None
        self._session = ""

    @property
    def busy(self) -> bool:
        return self.state == "running"

    def start(self) -> str:
        try:
            self._conn = self.connect(self.settings(), hello_timeout=3.0)
            layer = self.layer()
            content, buffers = layer_session_request(
                layer.pixels, layer.width, layer.height, layer.offset, selection=selection_mask(self.selection()),
                name=layer.name,
            )  # fmt: skip
            reply = self._conn.client.request("open_session", content, buffers, timeout=OPEN_TIMEOUT)
            self._session = reply.content["session_id"]
            self._job = self._conn.client.start_job(
                "suggest_models", suggest_request(self._session), lost_after=LOST_AFTER
            )
        except PluginError as exc:
            return self._fail(str(exc))
        except DaemonError as exc:
            return self._fail(error_text(exc.code, exc.message))
        except (DaemonUnreachable, OSError) as exc:
            return self._fail(f"The DragGAN daemon did not answer ({exc}).")
        self.state, self.text = "running", "Sending the layer; then each model gets a short fit…"
        return self.text

    def poll(self) -> str:
        """Look once (from a timer while `state` is running); returns the state."""
        if self.state != "running":
            return self.state
        try:
            self._conn.client.follow(self._job, 0.0)
        except OSError as exc:
            self._job.lose(f"The DragGAN daemon went away ({exc}).")
        job = self._job
        self.text = job.text
        if not job.finished:
            return self.state
        if job.state == DONE:
            self.ranking = list(job.result.get("ranking") or [])
            tried = [r for r in self.ranking if r.get("psnr_db") is not None]
            self.best = str(tried[0]["model"]) if tried else ""
            self.state, self.text = ("done" if self.best else "failed"), ranking_text(self.ranking)
        else:
            self.state, self.text = "failed", job.error or "Stopped."
        self._close()
        return self.state

    def _fail(self, text: str) -> str:
        self.state, self.text = "failed", text
        self._close()
        return text

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._session:
                conn.client.request("close_session", {"session_id": self._session}, timeout=1.0)
        except (DaemonError, DaemonUnreachable, OSError):
            pass
        conn.close()

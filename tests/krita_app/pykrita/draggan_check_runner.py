"""What the test-only Krita check plugins share (copied beside them into the profile's pykrita folder): run a
scenario from Krita's event loop once its window is open, and write what it found as JSON, then quit.

A scenario is a generator that yields the milliseconds to wait before it goes on, so Krita keeps drawing and
handling events (and the docker keeps talking to the daemon) between its steps.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Iterator
from typing import Any

from krita import Extension, Krita


class ScenarioCheck:
    """Subclasses give `scenario()`; `passed()` says whether the run counts as ok (default: it raised nothing)."""

    error_key = "error"  # where the scenario's own failure goes in the JSON

    def __init__(self, result_path: str, limit_s: float) -> None:
        self.result_path = result_path
        self.limit_s = limit_s
        self.res: dict[str, Any] = {"ok": False}
        self.started = False

    def scenario(self) -> Iterator[float]:
        raise NotImplementedError

    def passed(self) -> bool:
        return True

    def start(self) -> None:
        from PyQt5.QtCore import QTimer

        if self.started:
            return
        self.started = True
        self.steps = self.scenario()
        QTimer.singleShot(800, self.advance)
        QTimer.singleShot(int(self.limit_s * 1000), lambda: self.finish(f"the check took over {self.limit_s:.0f} s"))

    def advance(self) -> None:
        from PyQt5.QtCore import QTimer

        try:
            wait = next(self.steps)
        except StopIteration:
            self.finish(None)
            return
        except Exception:
            self.finish(traceback.format_exc())
            return
        QTimer.singleShot(int(wait), self.advance)

    def finish(self, error: str | None) -> None:
        if self.res.get("finished"):
            return
        self.res["finished"] = True
        if error:
            self.res[self.error_key] = error
        self.res["ok"] = not error and self.passed()
        with open(self.result_path, "w", encoding="utf-8") as fh:
            json.dump(self.res, fh, indent=1, default=str)
        os._exit(0 if self.res["ok"] else 1)


def register(make_check: Any, result_path: str | None) -> None:
    """Add an extension that starts `make_check()` when Krita's first window opens (nothing without a result path)."""

    class CheckExtension(Extension):
        def setup(self) -> None:
            if result_path:
                self.check = make_check()
                Krita.instance().notifier().setActive(True)
                Krita.instance().notifier().windowCreated.connect(self.check.start)

        def createActions(self, window: Any) -> None:
            pass

    Krita.instance().addExtension(CheckExtension(Krita.instance()))

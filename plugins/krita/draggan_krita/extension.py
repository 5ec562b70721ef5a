"""The Krita extension: a menu entry that shows the docker, and the hook that starts the GUI self-test."""

from __future__ import annotations

import os
from typing import Any

from krita import Extension, Krita


def find_docker() -> Any | None:
    from . import DOCKER_ID

    for d in Krita.instance().dockers():
        if d.objectName() == DOCKER_ID:
            return d
    return None


class DragGanExtension(Extension):
    def __init__(self, parent: Any) -> None:
        super().__init__(parent)
        self.selftest: Any = None

    def setup(self) -> None:
        if os.environ.get("DRAGGAN_KRITA_SELFTEST"):
            from .selftest import SelfTest

            self.selftest = SelfTest(os.environ["DRAGGAN_KRITA_SELFTEST"])
            Krita.instance().notifier().setActive(True)
            Krita.instance().notifier().windowCreated.connect(self.selftest.start)

    def createActions(self, window: Any) -> None:
        action = window.createAction("draggan_show_docker", "DragGAN docker", "tools/scripts")
        action.triggered.connect(self.show_docker)

    def show_docker(self) -> None:
        docker = find_docker()
        if docker is not None:
            docker.show()
            docker.raise_()

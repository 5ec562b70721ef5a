"""DragGAN for Krita: a docker that drags points on a paint layer through the DragGAN daemon.

Krita imports this package at start-up (see draggan.desktop); it registers the extension (menu entry, self-test
hook) and the "DragGAN" docker. Set DRAGGAN_KRITA_NO_REGISTER=1 to import the modules without registering (used by
scripts run through kritarunner, which has no windows to dock into).
"""

from __future__ import annotations

import os

from ._bootstrap import add_vendor_path

add_vendor_path()

DOCKER_ID = "draggan_docker"


def register() -> bool:
    try:
        from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita
    except ImportError:
        return False
    app = Krita.instance()
    if app is None:
        return False
    from .docker import make_docker_class
    from .extension import DragGanExtension

    app.addExtension(DragGanExtension(app))
    app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, DockWidgetFactoryBase.DockRight, make_docker_class()))
    return True


if not os.environ.get("DRAGGAN_KRITA_NO_REGISTER"):
    register()

"""Make the libraries the plugin carries importable before anything else is imported.

The installable zip puts `draggan_protocol` and a pure-Python `msgpack` in `draggan_krita/vendor/`. That folder goes
first on sys.path so the plugin uses its own copies even where the system has other versions (Debian's Krita sees
/usr/lib/python3/dist-packages). In a source checkout there is no vendor folder and the normal imports apply.
"""

from __future__ import annotations

import os
import sys

VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")


def add_vendor_path() -> bool:
    if not os.path.isdir(VENDOR):
        return False
    if VENDOR not in sys.path:
        sys.path.insert(0, VENDOR)
    return True

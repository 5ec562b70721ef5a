"""Shared helpers for the daemon tests: a real daemon on a loopback port, serving a small random generator."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any

import daemons
from draggan_daemon.server.models import builtin_test_generator
from draggan_daemon.server.server import DaemonServer
from draggan_protocol import Client

TEST_RESOLUTION = 32
_GENERATOR = None


def small_generator():
    global _GENERATOR
    if _GENERATOR is None:
        _GENERATOR = builtin_test_generator(TEST_RESOLUTION)
    return _GENERATOR


def running_daemon(connection_file: Any = None, **config: Any) -> contextlib.AbstractContextManager[DaemonServer]:
    """A DaemonServer on 127.0.0.1 (free port) on a background thread serving the small model "tiny", its connection
    file written when one is named; stopped on exit (tests/daemons.py)."""
    return daemons.in_process([("tiny", small_generator())], connection_file, **config)


def client_for(server: DaemonServer, key: bytes | None = None, **kwargs: Any) -> Client:
    return Client(server.endpoint, server.config.key if key is None else key, **kwargs)


def spawn_client(server: DaemonServer, script: str) -> subprocess.Popen:
    """`script` run as a client in a process of its own (argv: endpoint, key), its stdout readable as text: for
    tests that kill a client the way a crashed editor dies."""
    return subprocess.Popen(
        [sys.executable, "-c", script, server.endpoint, server.config.key.decode()],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )

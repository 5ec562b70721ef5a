"""Shared helpers for the daemon tests: a real daemon on a loopback port, serving a small random generator."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import torch
from draggan_daemon.server.models import ModelRegistry, builtin_test_generator
from draggan_daemon.server.server import DaemonServer, ServerConfig
from draggan_protocol import Client

TEST_RESOLUTION = 32
_GENERATOR = None


def small_generator():
    global _GENERATOR
    if _GENERATOR is None:
        _GENERATOR = builtin_test_generator(TEST_RESOLUTION)
    return _GENERATOR


@contextlib.contextmanager
def running_daemon(**config: Any) -> Iterator[DaemonServer]:
    """A DaemonServer on 127.0.0.1 (free port) on a background thread; stopped on exit."""
    torch.set_num_threads(1)
    registry = ModelRegistry("cpu")
    registry.add_generator("tiny", small_generator())
    limits = config.pop("limits", {})
    cfg = ServerConfig(key=os.urandom(16).hex().encode(), **config)
    cfg.limits.update(limits)
    server = DaemonServer(cfg, registry)
    server.start()
    try:
        yield server
    finally:
        server.stop()


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

"""Shared helpers for the daemon tests: a real daemon on a loopback port, serving a small random generator."""

from __future__ import annotations

import contextlib
import os
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

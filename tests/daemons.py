"""The one way tests start a daemon: in this process (a real server on a loopback port, on a background thread)
or as `draggan serve` in a child process (for tests that kill it the way a crash does, or need its CLI).

`start_in_process` / `in_process` build the server on a registry of the models asked for (the small random test
generator by default) and optionally write its connection file; `spawn` runs `draggan serve` and returns once its
connection file exists. The older helpers (`test_daemon_support.running_daemon`, `gimp_env.start_daemon`,
`gimp_env.spawn_daemon_process`, the Krita tests' fixtures) are these, with their own defaults.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from draggan_daemon.server.models import ModelRegistry
from draggan_daemon.server.server import DaemonServer, ServerConfig
from draggan_protocol import ConnectionInfo, write_connection_file

Model = tuple[str, Any]  # (name, a Generator or a checkpoint path)


def start_in_process(models: Sequence[Model], connection_file: Path | None = None, **config: Any) -> DaemonServer:
    """A started DaemonServer serving `models` (the first is the default); `connection_file` written when given (the
    server then has `.connection_file`). `limits` in `config` update the default limits."""
    torch.set_num_threads(1)
    registry = ModelRegistry("cpu")
    for i, (name, model) in enumerate(models):
        if isinstance(model, (str, Path)):
            registry.add_path(Path(model), make_default=i == 0)
        else:
            registry.add_generator(name, model, make_default=i == 0)
    limits = config.pop("limits", {})
    cfg = ServerConfig(key=config.pop("key", os.urandom(16).hex().encode()), **config)
    cfg.limits.update(limits)
    server = DaemonServer(cfg, registry)
    server.start()
    server.connection_file = None
    if connection_file is not None:
        info = ConnectionInfo(endpoint=server.endpoint, key=cfg.key.decode("ascii"))
        server.connection_file = write_connection_file(info, connection_file)
    return server


@contextlib.contextmanager
def in_process(models: Sequence[Model], connection_file: Path | None = None, **config: Any) -> Iterator[DaemonServer]:
    """`start_in_process`, stopped on exit."""
    server = start_in_process(models, connection_file, **config)
    try:
        yield server
    finally:
        server.stop()


def spawn(
    connection_file: Path,
    model: Path | None = None,
    *,
    extra: Sequence[str] = (),
    log: Any = None,
    timeout: float = 120.0,
) -> subprocess.Popen:
    """`draggan serve` in a child process (the built-in test model unless `model` is given), ready for clients.

    Its output goes to `log` (an open file) or, by default, stderr is kept for the error when it does not start."""
    models = ["--model", str(model)] if model is not None else ["--builtin-test-model"]
    cmd = [sys.executable, "-m", "draggan_daemon.cli", "serve", "--no-bundled", *models, "--threads", "1", *extra]
    cmd += ["--connection-file", str(connection_file)]
    if log is None:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    else:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + timeout
    while not connection_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[1] if log is None else ""
            raise RuntimeError(f"draggan serve did not start: {(out or '')[-2000:]}")
        time.sleep(0.05)
    return proc


def raw_dealer(ctx: Any, endpoint: str, key: bytes | str | None, **options: int) -> Any:
    """A bare pyzmq DEALER connected to a daemon for tests that send hand-made frames: it passes the daemon's
    PLAIN handshake with `key` (None: offers no key, as a peer without the connection file). `options` are
    socket options by name (e.g. routing_id=b"x", rcvhwm=1), set before connecting."""
    import zmq
    from draggan_protocol.signing import plain_credentials

    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name.upper()), value)
    if key is not None:
        sock.plain_username, sock.plain_password = plain_credentials(key)
    sock.connect(endpoint)
    return sock

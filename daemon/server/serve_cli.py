"""`draggan serve`: load models, bind, write the connection file, serve until shut down or interrupted."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import torch
from draggan_protocol.connection import (
    ConnectionInfo,
    default_connection_file,
    read_connection_file,
    remove_connection_file,
    write_connection_file,
)
from draggan_protocol.signing import new_key

from .logs import event, setup_logging
from .models import BUILTIN_NAME, BUNDLED_FILE, ModelRegistry, builtin_test_generator, default_models_dir
from .server import DaemonServer, ServerConfig, is_loopback

log = logging.getLogger("draggan.serve")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="draggan serve", description="Run the DragGAN daemon.")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PATH",
        help="a checkpoint to serve (.safetensors, NVIDIA .pkl, rosinality .pt); repeatable; the first is the default",
    )
    p.add_argument(
        "--models-dir",
        metavar="DIR",
        help="serve every checkpoint in this folder, and those put there later (loaded on first use); default: "
        f"the folder `draggan models pull` fills, {default_models_dir()} (not with --builtin-test-model)",
    )
    p.add_argument(
        "--builtin-test-model",
        action="store_true",
        help="serve a small random-weight generator built in memory (for tests; draws textures)",
    )
    p.add_argument("--no-bundled", action="store_true", help="do not serve the bundled model")
    p.add_argument(
        "--listen",
        default="127.0.0.1",
        metavar="HOST",
        help="interface to bind (default 127.0.0.1); any other interface turns on CURVE encryption by itself, "
        "with keys generated on first use in --curve-dir (logged as curve_enabled)",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    p.add_argument(
        "--connection-file",
        metavar="PATH",
        help=f"where to write the connection file (default {default_connection_file()})",
    )
    p.add_argument(
        "--remote-connection-file",
        metavar="PATH",
        help="with a non-loopback --listen: also write a connection file for remote clients (endpoint with this "
        "host's name, the secret, the server's public key and a client keypair); deleted when the daemon exits, "
        "and the secret changes on every start, so copy it again after a restart",
    )
    p.add_argument("--public-host", help="host name remote clients use (default: this machine's name)")
    p.add_argument("--curve-dir", metavar="DIR", help="CURVE key folder (default ~/.config/draggan/curve)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)")
    p.add_argument(
        "--client-timeout",
        type=float,
        default=60.0,
        help="seconds of silence after which a client's jobs are cancelled and sessions freed",
    )
    p.add_argument("--session-idle-timeout", type=float, default=3600.0, help="seconds before an idle session expires")
    p.add_argument("--max-sessions", type=int, default=None)
    p.add_argument("--max-layer-pixels", type=int, default=None)
    p.add_argument("--max-total-pixels", type=int, default=None)
    p.add_argument("--max-frame-bytes", type=int, default=None, help="largest accepted frame (bytes, default 4 MiB)")
    p.add_argument("--max-buffer-bytes", type=int, default=None, help="largest accepted buffer, e.g. a layer (bytes)")
    p.add_argument("--max-connections", type=int, default=None, help="connections open at once (default 64)")
    p.add_argument(
        "--max-reply-backlog-bytes",
        type=int,
        default=None,
        help="result bytes a client may have queued or unsent before get_result is answered busy (default 32 MiB)",
    )
    p.add_argument(
        "--disconnect-grace",
        type=float,
        default=3.0,
        help="seconds a disconnected client's sessions wait for it to reconnect (its jobs are cancelled at once)",
    )
    p.add_argument("--replace", action="store_true", help="start even if another daemon's connection file exists")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs (every request and task)")
    p.add_argument("--log-json", action="store_true", help="logs as JSON lines")
    return p


def build_registry(args: argparse.Namespace, device: torch.device) -> ModelRegistry:
    reg = ModelRegistry(device)
    for path in args.model:
        reg.add_path(path)
    if args.builtin_test_model:
        reg.add_generator(BUILTIN_NAME, builtin_test_generator(), make_default=not args.model)
        event(
            log,
            "builtin_model",
            logging.WARNING,
            name=BUILTIN_NAME,
            note="serving a random-weight test generator (textures, not a trained model)",
        )
    if not args.no_bundled and not args.builtin_test_model and BUNDLED_FILE.is_file():
        reg.add_path(BUNDLED_FILE, origin="bundled", make_default=not args.model)
    if args.models_dir:
        reg.scan_dir(args.models_dir)
    elif not args.builtin_test_model:  # tests serve exactly what they ask for, whatever the user has pulled
        reg.watch_dir(default_models_dir())
    if reg.default is None:
        event(
            log,
            "no_model",
            logging.WARNING,
            bundled=BUNDLED_FILE,
            note="the bundled model is not there yet: serving a built-in random-weight test generator instead",
        )
        reg.add_generator(BUILTIN_NAME, builtin_test_generator())
    # The default model is loaded now so that a broken file is reported at start, not on the first session.
    reg.get(reg.default)
    return reg


def _other_daemon_running(path: Path) -> int | None:
    try:
        info = read_connection_file(path)
    except (FileNotFoundError, ValueError):
        return None
    if info.pid and info.pid != os.getpid():
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return info.pid
        return info.pid
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.log_json)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    conn_path = Path(args.connection_file).expanduser() if args.connection_file else default_connection_file()
    other = _other_daemon_running(conn_path)
    if other and not args.replace:
        print(
            f"draggan serve: a daemon (pid {other}) is already running; its connection file is {conn_path}.\n"
            "Stop it, or pass --replace, or use another --connection-file.",
            file=sys.stderr,
        )
        return 1
    try:
        registry = build_registry(args, device)
    except Exception as exc:  # a missing or broken model file: say which and stop
        print(f"draggan serve: cannot load the model: {exc}", file=sys.stderr)
        return 1

    key = new_key().hex()
    config = ServerConfig(
        host=args.listen,
        port=args.port,
        key=key.encode("ascii"),
        client_timeout=args.client_timeout,
        session_idle_timeout=args.session_idle_timeout,
        disconnect_grace=args.disconnect_grace,
    )
    for name in (
        "max_sessions",
        "max_layer_pixels",
        "max_total_pixels",
        "max_frame_bytes",
        "max_buffer_bytes",
        "max_connections",
        "max_reply_backlog_bytes",
    ):
        if getattr(args, name) is not None:
            config.limits[name] = getattr(args, name)
    curve_info: dict[str, str] = {}
    if not is_loopback(args.listen):
        from .curve_keys import authorized_keys, default_curve_dir, load_or_create_pair

        folder = Path(args.curve_dir).expanduser() if args.curve_dir else default_curve_dir()
        config.curve_public_key, config.curve_secret_key = load_or_create_pair(folder, "server")
        client_pub, client_sec = load_or_create_pair(folder, "client")
        auth = authorized_keys(folder)
        config.curve_authorized_clients = [client_pub, *(auth or [])]  # only keys the daemon issued or was given
        curve_info = {
            "curve_server_key": config.curve_public_key.decode(),
            "curve_client_public": client_pub.decode(),
            "curve_client_secret": client_sec.decode(),
        }
        event(
            log,
            "curve_enabled",
            logging.WARNING,
            listen=args.listen,
            folder=folder,
            allowed_keys=len(config.curve_authorized_clients),
            note="binding beyond loopback: CURVE encryption is on; clients need the remote connection file's keys",
        )
    elif args.remote_connection_file:
        event(
            log,
            "remote_connection_file_ignored",
            logging.WARNING,
            path=args.remote_connection_file,
            note="only written with a non-loopback --listen (CURVE); use an SSH tunnel and the local file",
        )

    server = DaemonServer(config, registry)
    local_host = "127.0.0.1" if args.listen in ("0.0.0.0", "127.0.0.1") else args.listen
    info = ConnectionInfo(
        endpoint=f"tcp://{local_host}:{server.port}",
        key=key,
        pid=os.getpid(),
        extra={"device": str(device), "default_model": registry.default},
        **curve_info,
    )
    written = write_connection_file(info, conn_path)
    remote_path = None
    if args.remote_connection_file and curve_info:
        host = args.public_host or socket.getfqdn()
        remote = ConnectionInfo(endpoint=f"tcp://{host}:{server.port}", key=key, **curve_info)
        remote_path = write_connection_file(remote, Path(args.remote_connection_file).expanduser())
    event(log, "connection_file", path=written, remote=remote_path or "")

    def _on_signal(signum: int, _frame: object) -> None:
        event(log, "signal", signal=signal.Signals(signum).name)
        server.request_stop()

    if threading.current_thread() is threading.main_thread():  # signals can only be caught there
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
    try:
        server.serve_forever()
    finally:
        remove_connection_file(written, os.getpid())
        if remote_path:
            remove_connection_file(remote_path)
        event(log, "connection_files_removed", path=written, remote=remote_path or "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

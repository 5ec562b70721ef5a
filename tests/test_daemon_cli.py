"""`draggan edit` and `draggan serve` end to end, and CURVE for daemons that listen beyond loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from draggan_daemon.server import edit_cli
from draggan_daemon.server.models import ModelRegistry
from draggan_daemon.server.server import DaemonServer, ServerConfig
from draggan_protocol import Client, ConnectionInfo, DaemonUnreachable, read_connection_file, write_connection_file
from draggan_protocol.spec import PROTOCOL_VERSION
from PIL import Image
from test_daemon_support import client_for, running_daemon, small_generator


def test_edit_cli_drags_a_png_through_a_running_daemon(tmp_path, capsys):
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "in.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[8:40, 12:52] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    with running_daemon() as server:
        conn = write_connection_file(
            ConnectionInfo(endpoint=server.endpoint, key=server.config.key.decode()), tmp_path / "daemon.json"
        )
        rc = edit_cli.main([
            str(tmp_path / "in.png"), "--drag", "30,20:34,22", "--drag", "20,30:18,30", "--mask",
            str(tmp_path / "mask.png"), "--steps", "3", "--invert-steps", "2", "-o", str(tmp_path / "out.png"),
            "--connection-file", str(conn), "--output-mode", "generator",
        ])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    done = re.search(r"done after (\d+) steps", err)  # 3 at most; fewer when the handles arrive early
    assert done and 1 <= int(done.group(1)) <= 3 and "drag" in err, err
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (48, 64, 4) and (out[..., 3] == 255).all()
    keep = mask == 0
    assert np.array_equal(out[..., :3][keep], src[keep]), "pixels outside the mask changed"
    assert np.any(out[..., :3][~keep] != src[~keep])


def test_edit_cli_reports_bad_input_plainly(tmp_path, capsys):
    assert edit_cli.main([str(tmp_path / "missing.png"), "--drag", "1,1:2,2", "-o", str(tmp_path / "o.png")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        edit_cli.main([str(tmp_path / "x.png"), "--drag", "1,1-2,2", "-o", "o.png"])


def test_public_interface_requires_curve():
    registry = ModelRegistry("cpu")
    registry.add_generator("tiny", small_generator())
    with pytest.raises(ValueError, match="CURVE"):
        DaemonServer(ServerConfig(host="0.0.0.0", key=b"k"), registry)


def test_curve_daemon_accepts_only_curve_clients():
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    with running_daemon(curve_public_key=server_public, curve_secret_key=server_secret) as server:
        with client_for(server, curve=(server_public, client_public, client_secret)) as c:
            assert c.hello()["protocol_version"] == PROTOCOL_VERSION
        with client_for(server) as plain, pytest.raises(DaemonUnreachable):
            plain.hello(timeout=1.0)


def test_a_curve_daemon_with_an_allow_list_refuses_other_keys_in_the_handshake():
    server_public, server_secret = zmq.curve_keypair()
    allowed, other = zmq.curve_keypair(), zmq.curve_keypair()
    config = {"curve_public_key": server_public, "curve_secret_key": server_secret}
    with running_daemon(curve_authorized_clients=[allowed[0]], **config) as server:
        with client_for(server, curve=(server_public, *other)) as c, pytest.raises(DaemonUnreachable):
            c.hello(timeout=1.5)
        assert server.stats["received"] == 0 and server.admission.stats["refused_key"] >= 1
        with client_for(server, curve=(server_public, *allowed)) as c:
            assert c.hello()["protocol_version"] == PROTOCOL_VERSION


@pytest.mark.slow
def test_serve_process_writes_private_connection_files_and_serves_remote_curve_clients(tmp_path):
    local, remote = tmp_path / "daemon.json", tmp_path / "remote.json"
    cmd = [sys.executable, "-m", "draggan_daemon.server.serve_cli", "--builtin-test-model", "--threads", "1",
           "--listen", "0.0.0.0", "--curve-dir", str(tmp_path / "curve"), "--connection-file", str(local),
           "--remote-connection-file", str(remote), "--public-host", "127.0.0.1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (local.exists() and remote.exists()):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for path in (local, remote):
            assert (path.stat().st_mode & 0o777) == 0o600
        assert (tmp_path / "curve" / "server.key_secret").stat().st_mode & 0o077 == 0
        # Only the issued client key finishes the CURVE handshake (2.0): a self-made keypair is not enough.
        issued = read_connection_file(remote)
        stranger = (issued.curve_server_key.encode(), *zmq.curve_keypair())
        with Client(issued.endpoint, issued.key, curve=stranger) as s, pytest.raises(DaemonUnreachable):
            s.hello(timeout=1.5)
        with Client.connect(remote) as c:
            info = c.hello()
            assert info["models"][0]["name"] == "builtin-test"
            sid = c.open_seed_session(seed=1)["session_id"]
            assert c.drag(sid, [(10, 10, 14, 12)], params={"steps": 2})["state"] == "done"
            c.shutdown()
        assert proc.wait(30) == 0
        assert not local.exists() and not remote.exists()
        log = proc.stderr.read()
        # Turning CURVE on is said, as a warning, and so is removing the remote file (PROTOCOL.md §1, §9).
        assert re.search(r"warning curve_enabled listen=0\.0\.0\.0 ", log), log
        assert re.search(r"connection_files_removed path=\S+ remote=\S*remote\.json", log), log
    finally:
        if proc.poll() is None:
            proc.kill()

"""`draggan models`: the catalogue, pulls from a loopback HTTP server (resume after a cut, a wrong checksum, a
hostile pickle), add/remove, and a registry that sees the models folder change without a restart."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import pickle
import threading

import pytest
from draggan_daemon.cli import main as draggan
from draggan_daemon.engine.loaders import load_generator
from draggan_daemon.engine.loaders.native import save_native
from draggan_daemon.models_cli import load_catalogue, main
from draggan_daemon.server.models import ModelRegistry, builtin_test_generator

pytestmark = pytest.mark.usefixtures("one_thread")


class RunsShell:
    """Unpickling this calls os.system, as any hostile pickle could."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Files(http.server.BaseHTTPRequestHandler):
    """Serves `server.files` {path: (bytes, content type)} with Range; `server.cuts` requests are cut halfway."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append(dict(self.headers))
        if self.path not in srv.files:
            self.send_error(404)
            return
        data, ctype = srv.files[self.path]
        start = 0
        rng = self.headers.get("Range")
        if rng and self.headers.get("If-Range", srv.etag) == srv.etag:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", srv.etag)
        self.end_headers()
        body = data[start:]
        if srv.cuts > 0:
            srv.cuts -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    srv.files, srv.requests, srv.cuts, srv.etag = {}, [], 0, '"v1"'
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    save_native(builtin_test_generator(16), path)
    return path.read_bytes()


def catalogue(tmp_path, url, sha256="", name="tiny"):
    entry = dict(
        name=name,
        title="A tiny test generator",
        domain="random textures",
        width=16,
        height=16,
        url=url,
        size=None,
        sha256=sha256,
        licence="MIT (test)",
        format="nvidia-pkl",
        sources=["tests"],
    )
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"models": [entry]}))
    return str(path)


def pull(tmp_path, cat, *extra):
    return main(["pull", "tiny", "--models-dir", str(tmp_path / "models"), "--catalogue", cat, *extra])


def test_list_prints_the_catalogue(tmp_path, capsys):
    folder = tmp_path / "models"
    assert draggan(["models", "list", "--models-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    names = [m["name"] for m in load_catalogue()]
    for name in ("ffhq-1024", "afhq-cat", "afhq-dog", "afhq-wild", "lsun-car", "lsun-cat", "lsun-horse"):
        assert name in names
    for name in ("lsun-church", "metfaces-1024", "sd-lions-512", "stylegan-human-1024"):
        assert name in names
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in names:
        assert name in lines
    ffhq = lines["ffhq-1024"]
    assert "1024×1024" in ffhq and "human faces" in ffhq and "NVIDIA Source Code License-NC" in ffhq
    assert ffhq.rstrip().endswith("no")
    assert "512×384" in lines["lsun-car"] and "TensorFlow" in lines["lsun-car"]
    assert "checked only as a loadable checkpoint" in out
    # every catalogued fact names its source; NVIDIA's are non-commercial
    for m in load_catalogue():
        assert m["url"].startswith("https://") and m["sources"] and m["width"] and m["height"] and m["domain"]
        if "nvidia" in m["url"]:
            assert m["licence"].startswith("NVIDIA Source Code License-NC")

    folder.mkdir()
    (folder / "ffhq-1024.pkl").write_bytes(b"x" * 10)
    assert main(["list", "--models-dir", str(folder)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ffhq-1024"))
    assert line.rstrip().endswith("yes") and "10 B" in line


def test_pull_resumes_after_a_cut_and_verifies(tmp_path, server, tiny_bytes, capsys):
    sha = hashlib.sha256(tiny_bytes).hexdigest()
    server.files["/tiny.pkl"] = (tiny_bytes, "application/octet-stream")
    cat = catalogue(tmp_path, server.url + "/tiny.pkl", sha256=sha)
    server.cuts = 1
    assert pull(tmp_path, cat, "--retries", "0") == 1
    captured = capsys.readouterr()
    assert "run the same command again to resume" in captured.err
    assert "licence:    MIT (test)" in captured.out and "domain:     random textures" in captured.out
    part = tmp_path / "models" / "tiny.pkl.part"
    assert part.stat().st_size == len(tiny_bytes) // 2
    assert not (tmp_path / "models" / "tiny.pkl").exists()

    assert pull(tmp_path, cat) == 0
    assert server.requests[-1]["Range"] == f"bytes={len(tiny_bytes) // 2}-"
    assert server.requests[-1]["If-Range"] == server.etag
    dest = tmp_path / "models" / "tiny.pkl"
    assert dest.read_bytes() == tiny_bytes and not part.exists()
    card = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert card["sha256"] == sha and card["domain"] == "random textures" and card["licence"] == "MIT (test)"
    assert card["resolution"] == 16 and card["picture"] == [16, 16]
    assert load_generator(dest).generator.img_resolution == 16
    out = capsys.readouterr().out
    assert "resuming" in out and "sha256 matches" in out

    assert pull(tmp_path, cat) == 0  # already there: nothing fetched
    assert "already installed" in capsys.readouterr().out and len(server.requests) == 2


def test_pull_retries_a_cut_by_itself(tmp_path, server, tiny_bytes):
    server.files["/tiny.pkl"] = (tiny_bytes, "application/octet-stream")
    server.cuts = 1
    assert pull(tmp_path, catalogue(tmp_path, server.url + "/tiny.pkl")) == 0
    assert [("Range" in r) for r in server.requests] == [False, True]
    assert (tmp_path / "models" / "tiny.pkl").read_bytes() == tiny_bytes


def test_changed_file_on_the_server_starts_over(tmp_path, server, tiny_bytes):
    server.files["/tiny.pkl"] = (tiny_bytes, "application/octet-stream")
    server.cuts = 1
    cat = catalogue(tmp_path, server.url + "/tiny.pkl")
    assert pull(tmp_path, cat, "--retries", "0") == 1
    server.etag = '"v2"'  # If-Range no longer matches: the server sends the whole file with 200
    assert pull(tmp_path, cat) == 0
    assert (tmp_path / "models" / "tiny.pkl").read_bytes() == tiny_bytes


def test_wrong_checksum_refused_and_deleted(tmp_path, server, tiny_bytes, capsys):
    server.files["/tiny.pkl"] = (tiny_bytes, "application/octet-stream")
    assert pull(tmp_path, catalogue(tmp_path, server.url + "/tiny.pkl", sha256="0" * 64)) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert os.listdir(tmp_path / "models") == []


def test_malicious_pickle_refused_before_anything_runs(tmp_path, server, capsys):
    marker = tmp_path / "pwned"
    server.files["/evil.pkl"] = (pickle.dumps({"G_ema": RunsShell(marker)}), "application/octet-stream")
    assert pull(tmp_path, catalogue(tmp_path, server.url + "/evil.pkl")) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "refusing to load" in err and "system" in err
    assert not marker.exists()
    assert os.listdir(tmp_path / "models") == []

    evil = tmp_path / "evil.pkl"  # the same through `add FILE`
    evil.write_bytes(server.files["/evil.pkl"][0])
    assert main(["add", str(evil), "--models-dir", str(tmp_path / "models")]) == 1
    assert not marker.exists() and os.listdir(tmp_path / "models") == []


def test_web_page_instead_of_a_checkpoint(tmp_path, server):
    server.files["/tiny.pkl"] = (b"<html>sign in</html>", "text/html; charset=utf-8")
    assert pull(tmp_path, catalogue(tmp_path, server.url + "/tiny.pkl")) == 1
    assert os.listdir(tmp_path / "models") == []


def test_tensorflow_entry_refused_without_downloading(tmp_path, capsys):
    assert main(["pull", "lsun-car", "--models-dir", str(tmp_path / "models")]) == 1
    captured = capsys.readouterr()
    assert "TensorFlow" in captured.err and "legacy.py" in captured.err
    assert "licence:    NVIDIA Source Code License-NC" in captured.out
    assert not (tmp_path / "models").exists()


def test_add_file_and_url_then_remove(tmp_path, server, tiny_bytes, capsys):
    folder = tmp_path / "models"
    src = tmp_path / "my-cats.safetensors"
    src.write_bytes(tiny_bytes)
    assert main(["add", str(src), "--models-dir", str(folder), "--domain", "cat faces", "--licence", "CC0"]) == 0
    assert (folder / "my-cats.safetensors").read_bytes() == tiny_bytes
    card = json.loads((folder / "my-cats.json").read_text())
    assert card["domain"] == "cat faces" and card["licence"] == "CC0" and card["resolution"] == 16

    sha = hashlib.sha256(tiny_bytes).hexdigest()
    server.files["/models/other.pkl"] = (tiny_bytes, "application/octet-stream")
    url = server.url + "/models/other.pkl"
    assert main(["add", url, "--models-dir", str(folder), "--sha256", "1" * 64]) == 1
    assert sorted(os.listdir(folder)) == ["my-cats.json", "my-cats.safetensors"]
    assert main(["add", url, "--models-dir", str(folder), "--sha256", sha, "--domain", "dogs"]) == 0
    assert (folder / "other.pkl").read_bytes() == tiny_bytes
    assert json.loads((folder / "other.json").read_text())["url"] == url

    capsys.readouterr()
    assert main(["list", "--models-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Also in the models folder" in out and "my-cats" in out and "cat faces" in out

    assert main(["remove", "my-cats", "--models-dir", str(folder)]) == 0
    assert sorted(os.listdir(folder)) == ["other.json", "other.pkl"]
    assert main(["remove", "my-cats", "--models-dir", str(folder)]) == 1
    assert main(["remove", "../other", "--models-dir", str(folder)]) == 1


def test_registry_sees_the_folder_change_without_a_restart(tmp_path, tiny_bytes):
    folder = tmp_path / "models"  # not there yet when the daemon starts
    reg = ModelRegistry()
    reg.add_generator("builtin-test", builtin_test_generator(16))
    reg.watch_dir(folder)
    assert [m["name"] for m in reg.describe()] == ["builtin-test"]
    assert reg.describe()[0]["domain"].startswith("random textures")

    src = tmp_path / "fresh.safetensors"
    src.write_bytes(tiny_bytes)
    assert main(["add", str(src), "--models-dir", str(folder), "--domain", "cat faces", "--licence", "CC0"]) == 0
    fresh = {m["name"]: m for m in reg.describe()}["fresh"]
    assert fresh["loaded"] is False and fresh["origin"] == "models-dir"
    assert (fresh["domain"], fresh["licence"], fresh["resolution"], fresh["picture"]) == (
        "cat faces",
        "CC0",
        16,
        [16, 16],
    )

    (folder / "later.safetensors").write_bytes(tiny_bytes)  # dropped in by hand: found when a client asks for it
    assert reg.resolve_name("later") == "later"
    assert reg.get("later").img_resolution == 16
    assert "domain" not in {m["name"]: m for m in reg.describe()}["later"]

    assert main(["remove", "fresh", "--models-dir", str(folder)]) == 0
    assert main(["remove", "later", "--models-dir", str(folder)]) == 0
    names = [m["name"] for m in reg.describe()]
    assert "fresh" not in names  # gone: nobody had loaded it
    assert "later" in names  # loaded by a session: kept until the daemon stops
    with pytest.raises(KeyError):
        reg.resolve_name("fresh")


def test_running_daemon_offers_a_pulled_model_at_once(tmp_path, server, tiny_bytes):
    """Over the wire: hello lists what the folder held, list_models what was pulled since, with its card."""
    from test_daemon_support import client_for, running_daemon

    folder = tmp_path / "models"
    server.files["/tiny.pkl"] = (tiny_bytes, "application/octet-stream")
    with running_daemon() as daemon, client_for(daemon) as c:
        daemon.registry.watch_dir(folder)
        assert [m["name"] for m in c.hello()["models"]] == ["tiny"]  # the daemon's own test model
        assert pull(tmp_path, catalogue(tmp_path, server.url + "/tiny.pkl", name="tiny")) == 0
        models = {m["name"]: m for m in c.list_models()}
        pulled = models["tiny-2"]  # the name is taken by the built-in model: the file's gets a suffix
        assert (pulled["domain"], pulled["licence"], pulled["resolution"]) == ("random textures", "MIT (test)", 16)
        session = c.open_seed_session(1, model="tiny-2")
        assert session["width"] == 16

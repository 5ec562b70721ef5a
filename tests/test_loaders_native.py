"""The native .safetensors format round-trips exactly, interoperates with safetensors, and rejects damage."""

from __future__ import annotations

import json

import pytest
import torch
from draggan_daemon.engine.generator import Generator, GeneratorConfig
from draggan_daemon.engine.loaders import CheckpointError, load_generator, sniff_format
from draggan_daemon.engine.loaders.convert import main as convert_main
from draggan_daemon.engine.loaders.native import FORMAT_NAME, load_native, save_native

CFG = GeneratorConfig(
    z_dim=16,
    w_dim=16,
    img_resolution=16,
    mapping_layers=2,
    channel_base=256,
    channel_max=16,
    num_fp16_res=1,
    conv_clamp=256.0,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def random_generator(seed: int = 0, cfg: GeneratorConfig = CFG) -> Generator:
    torch.manual_seed(seed)
    G = Generator(cfg)
    with torch.no_grad():
        for name, p in G.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if name.endswith(("bias", "noise_strength")) else 1))
        G.mapping.w_avg.normal_()
    return G.eval()


def test_round_trip_is_exact(tmp_path):
    G = random_generator(1)
    path = tmp_path / "model.safetensors"
    save_native(G, path, {"name": "Tiny", "license": "CC0-1.0", "trained_kimg": 12})
    model = load_generator(path)
    assert model.source_format == "native" and model.name == "Tiny"
    assert model.config == G.cfg
    assert model.metadata["license"] == "CC0-1.0" and json.loads(model.metadata["trained_kimg"]) == 12
    ref, got = G.state_dict(), model.generator.state_dict()
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    ws = G.z_to_ws(seed=3, truncation_psi=0.8)
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), model.generator.synthesis(ws))


def test_half_precision_storage(tmp_path):
    G = random_generator(2)
    path = tmp_path / "half.safetensors"
    save_native(G, path, dtype=torch.float16)
    model = load_native(path)
    for k, v in G.state_dict().items():
        got = model.generator.state_dict()[k]
        assert got.dtype == torch.float32
        assert torch.allclose(got, v.half().float())


def test_readable_and_writable_by_safetensors(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    G = random_generator(3)
    ours = tmp_path / "ours.safetensors"
    save_native(G, ours)
    loaded = st.load_file(str(ours))
    assert all(torch.equal(loaded[k], v) for k, v in G.state_dict().items())

    from safetensors import safe_open

    with safe_open(str(ours), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT_NAME and GeneratorConfig.from_dict(json.loads(meta["config"])) == G.cfg

    theirs = tmp_path / "theirs.safetensors"
    st.save_file(G.state_dict(), str(theirs), metadata=meta)
    model = load_generator(theirs)
    assert all(torch.equal(model.generator.state_dict()[k], v) for k, v in G.state_dict().items())


def corrupt(path, tmp_path, name, mutate):
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    body = bytes(data[8 + n :])
    header, body = mutate(header, body)
    head = json.dumps(header).encode()
    out = tmp_path / name
    out.write_bytes(len(head).to_bytes(8, "little") + head + body)
    return out


def test_damaged_native_files(tmp_path):
    G = random_generator(4)
    path = tmp_path / "good.safetensors"
    save_native(G, path)
    data = path.read_bytes()
    first = sorted(k for k in json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")]) if k != "__metadata__")[0]

    def meta(**changes):
        def mutate(h, b):
            h["__metadata__"] = dict(h["__metadata__"], **changes)
            return h, b

        return mutate

    def drop(h, b):  # a well-formed file that lacks one tensor
        begin, end = h.pop(first)["data_offsets"]
        for k, v in h.items():
            if k != "__metadata__" and v["data_offsets"][0] >= end:
                v["data_offsets"] = [o - (end - begin) for o in v["data_offsets"]]
        return h, b[:begin] + b[end:]

    def hole(h, b):
        del h[first]
        return h, b

    def gap(h, b):
        h[first]["data_offsets"][0] += 4
        return h, b

    def ints(h, b):  # the same bytes declared as 32-bit integers: well-formed, but no weights
        h[first]["dtype"] = "I32"
        return h, b

    cases = {
        "truncated": (lambda: _write(tmp_path / "cut.safetensors", data[: len(data) - 10]), "not fully covered"),
        "short": (lambda: _write(tmp_path / "short.safetensors", data[:20]), "invalid header"),
        "foreign": (lambda: corrupt(path, tmp_path, "foreign.safetensors", meta(format="other")), "not a generator"),
        "newer": (lambda: corrupt(path, tmp_path, "v9.safetensors", meta(format_version="9")), "version"),
        "config": (lambda: corrupt(path, tmp_path, "cfg.safetensors", meta(config="{bad")), "architecture"),
        "missing": (lambda: corrupt(path, tmp_path, "missing.safetensors", drop), f"missing {first}"),
        "hole": (lambda: corrupt(path, tmp_path, "hole.safetensors", hole), "invalid offset"),
        "gap": (lambda: corrupt(path, tmp_path, "gap.safetensors", gap), "invalid"),
        "trailing": (lambda: _write(tmp_path / "trail.safetensors", data + b"xx"), "not fully covered"),
        "integers": (lambda: corrupt(path, tmp_path, "int.safetensors", ints), "not floating-point"),
    }
    for name, (make, expected) in cases.items():
        bad = make()
        with pytest.raises(CheckpointError) as info:
            load_generator(bad)
        assert expected in str(info.value) and str(bad) in str(info.value), (name, str(info.value))


def _write(path, data):
    path.write_bytes(data)
    return path


def test_sniffing_ignores_extensions(tmp_path):
    G = random_generator(5)
    path = tmp_path / "model.pkl"  # misleading extension
    save_native(G, path)
    assert sniff_format(path.read_bytes()) == "native"
    assert load_generator(path).source_format == "native"
    assert sniff_format(b"PK\x03\x04rest") == "rosinality-pt"
    assert sniff_format(b"\x80\x04\x95") == "nvidia-pkl"
    assert sniff_format(b"GIF89a") is None


def test_convert_command(tmp_path, capsys):
    from draggan_daemon.cli import main as cli_main
    from oracle.builders import export_rosinality, make_nvidia_generator, official_pickle

    nv = make_nvidia_generator(
        9,
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256),
    )
    pkl, pt = tmp_path / "net.pkl", tmp_path / "net.pt"
    pkl.write_bytes(official_pickle(nv))
    torch.save({"g_ema": export_rosinality(nv), "latent_avg": nv.mapping.w_avg.clone()}, pt)
    ws = nv.mapping(torch.randn(1, 16), None, truncation_psi=0.7)
    with torch.no_grad():
        ref = nv.synthesis(ws, noise_mode="const", force_fp32=True)
    for src, fmt in ((pkl, "nvidia-pkl"), (pt, "rosinality-pt")):
        out = tmp_path / f"{src.stem}-{fmt}.safetensors"
        assert convert_main([str(src), str(out), "--name", "Net", "--license", "test-only"]) == 0
        assert "wrote" in capsys.readouterr().out
        model = load_generator(out)
        assert model.source_format == "native" and model.name == "Net"
        assert model.metadata["source_format"] == fmt and model.metadata["license"] == "test-only"
        with torch.no_grad():
            assert (model.generator.synthesis(ws) - ref).abs().max() <= 1e-4
        assert convert_main([str(src), str(out)]) == 1  # refuses to overwrite without --force
        assert "exists" in capsys.readouterr().err
        assert cli_main(["convert", str(src), str(out), "--force"]) == 0  # through the `draggan` entry point

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04garbage")
    target = tmp_path / "never.safetensors"
    assert convert_main([str(bad), str(target)]) == 1
    assert str(bad) in capsys.readouterr().err and not target.exists()


def test_saved_file_has_ordinary_permissions(tmp_path):
    import os
    import stat

    path = tmp_path / "perm.safetensors"
    save_native(random_generator(6), path)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["perm.safetensors"]  # no temporary file left behind

"""Hostile and unsupported files are refused with one clear error, and no code from a file ever runs."""

from __future__ import annotations

import collections
import io
import os
import pickle

import pytest
import torch
from draggan_daemon.engine.loaders import CheckpointError, load_generator
from oracle.builders import make_nvidia_generator, official_pickle
from oracle.nvidia import nvidia_networks

pytestmark = pytest.mark.usefixtures("one_thread")


class RunsShell:
    """Unpickling this object calls os.system (as any hostile pickle could)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').close()",))


def small_generator(seed=0, **synthesis):
    kwargs = dict(channel_base=256, channel_max=16, num_fp16_res=0, conv_clamp=None) | synthesis
    return make_nvidia_generator(
        seed,
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=kwargs,
    )


def refused(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    msg = str(info.value)
    assert str(path) in msg
    return msg


@pytest.mark.parametrize("payload", [RunsShell, CallsEval])
def test_malicious_pickle_refused_without_side_effects(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": payload(marker)}))
    msg = refused(path)
    assert "refusing to load" in msg and ("system" in msg or "eval" in msg)
    assert not marker.exists()


def test_payload_inside_persistence_source_is_never_executed(tmp_path):
    """A real G_ema whose pickled module source runs a shell command: NVIDIA's loader runs it, ours does not."""
    nvidia_networks()
    from torch_utils import persistence

    marker = tmp_path / "pwned"
    G = small_generator(seed=1)

    class Poisoning(pickle.Pickler):
        def reducer_override(self, obj):
            if not persistence.is_persistent(obj):
                return NotImplemented
            func, (meta,), *rest = obj.__reduce__()
            meta = dict(meta, module_src=f"import os\nos.system('touch {marker}')\n" + meta["module_src"])
            return (func, (meta,), *rest)

    buf = io.BytesIO()
    Poisoning(buf).dump({"G_ema": G})
    path = tmp_path / "poisoned.pkl"
    path.write_bytes(buf.getvalue())

    model = load_generator(path)  # loads: the source is kept as text, never executed
    assert not marker.exists()
    ws = G.mapping(torch.randn(1, 16), None)
    with torch.no_grad():
        assert (model.generator.synthesis(ws) - G.synthesis(ws, noise_mode="const")).abs().max() <= 1e-4

    pickle.loads(path.read_bytes())  # the same bytes through NVIDIA's own unpickling path
    assert marker.exists(), "the payload is real: NVIDIA's persistence executes it"


def test_malicious_tensor_storage_refused(tmp_path):
    """torch.storage._load_from_bytes is allowed, but its inner bytes go through torch's weights-only loader."""
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    torch.save(RunsShell(marker), inner, _use_new_zipfile_serialization=False)

    class Storage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner.getvalue(),))

    path = tmp_path / "evil_storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Storage()}))
    msg = refused(path)
    assert "storage could not be read safely" in msg and "system'" in msg
    assert not marker.exists()


def test_malicious_torch_checkpoint_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "extra": RunsShell(marker)}, path)
    msg = refused(path)
    assert "refusing to load" in msg and "system'" in msg
    assert not marker.exists()


def test_conditional_generator_refused(tmp_path):
    G = make_nvidia_generator(
        0,
        z_dim=16,
        c_dim=5,
        w_dim=16,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=0),
    )
    path = tmp_path / "cond.pkl"
    path.write_bytes(official_pickle(G))
    assert "conditional generators (c_dim=5)" in refused(path)


def test_stylegan3_generator_refused(tmp_path):
    """StyleGAN3's synthesis has an `input` layer and L{i}_{size}_{channels} layers instead of b4..bN blocks."""
    nvidia_networks()
    from torch_utils import persistence

    def record(class_name, modules=None, **attrs):
        state = {"_parameters": {}, "_buffers": {}, "_modules": modules or {}, "_init_args": (), "_init_kwargs": {}}
        meta = dict(
            type="class", version=6, module_src="# networks_stylegan3.py", class_name=class_name, state=state | attrs
        )

        class Rec:
            def __reduce__(self):
                return (persistence._reconstruct_persistent_obj, (meta,))

        return Rec()

    layers = {
        "input": record("SynthesisInput"),
        "L0_36_512": record("SynthesisLayer"),
        "L1_36_512": record("SynthesisLayer"),
    }
    G = record(
        "Generator",
        {"synthesis": record("SynthesisNetwork", layers), "mapping": record("MappingNetwork")},
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=256,
        img_channels=3,
    )
    path = tmp_path / "stylegan3-t-ffhqu-256x256.pkl"
    path.write_bytes(pickle.dumps({"G_ema": G}))
    assert "StyleGAN3 (alias-free)" in refused(path)


def test_unknown_constant_shape_refused(tmp_path):
    G = small_generator(seed=4)
    G.synthesis.b4.const = torch.nn.Parameter(torch.randn(16, 4, 3))  # neither square nor StyleGAN-Human's 2:1
    path = tmp_path / "odd.pkl"
    path.write_bytes(official_pickle(G))
    assert "unsupported constant input of shape (4, 3)" in refused(path)


def test_tensorflow_pickle_refused(tmp_path):
    path = tmp_path / "stylegan2-car-config-f.pkl"
    path.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01}q\x02b\x85q\x03.")
    assert "TensorFlow" in refused(path)


def test_missing_g_ema_and_wrong_objects(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"G": 1, "D": 2}))
    assert "no 'G_ema'" in refused(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    assert "list" in refused(path)


def test_truncated_files(tmp_path):
    G = small_generator(seed=5)
    blob = official_pickle(G)
    for cut in (len(blob) // 2, len(blob) - 1, 3):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(blob[:cut])
        msg = refused(path)
        assert "truncated" in msg or "corrupt" in msg

    from oracle.builders import export_rosinality

    pt = tmp_path / "full.pt"
    torch.save({"g_ema": export_rosinality(G)}, pt)
    data = pt.read_bytes()
    cut_pt = tmp_path / "cut.pt"
    cut_pt.write_bytes(data[: len(data) * 2 // 3])
    assert "truncated or corrupt" in refused(cut_pt)


def test_empty_missing_directory_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    assert "empty" in refused(empty)
    assert "no such file" in refused(tmp_path / "absent.pkl")
    assert "directory" in refused(tmp_path)
    png = tmp_path / "model.pkl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64)))
    assert "not a recognised generator checkpoint" in refused(png)
    text = tmp_path / "notes.pt"
    text.write_text("just some text, not a model\n")
    assert "not a recognised" in refused(text)


def test_inconsistent_tensors_refused_not_half_loaded(tmp_path):
    """A file whose tensors do not fit its own architecture, or hold NaN, yields an error, never a generator."""
    G = small_generator(seed=6)
    G.synthesis.b8.conv0.weight = torch.nn.Parameter(torch.randn(16, 16, 3, 1))
    path = tmp_path / "bad_shape.pkl"
    path.write_bytes(official_pickle(G))
    assert "not a 3x3 convolution" in refused(path)

    G = small_generator(seed=7)
    G.synthesis.b16.torgb.weight = torch.nn.Parameter(torch.randn(3, 8, 1, 1))
    path.write_bytes(official_pickle(G))
    assert "synthesis.b16.torgb.weight has shape (3, 8, 1, 1), expected (3, 16, 1, 1)" in refused(path)

    G = small_generator(seed=8)
    with torch.no_grad():
        G.mapping.fc1.weight[0, 0] = float("nan")
    path.write_bytes(official_pickle(G))
    assert "non-finite" in refused(path)


def test_tensor_reaching_past_its_storage_refused(tmp_path):
    """torch's set_ would silently grow a storage; a tensor larger than its bytes is damage, not data."""

    class OversizedTensor:
        def __reduce__(self):
            storage = torch.zeros(4)._typed_storage()
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (100,), (1,), False, collections.OrderedDict()))

    path = tmp_path / "oversized.pkl"
    path.write_bytes(pickle.dumps({"G_ema": OversizedTensor()}))
    assert "reaches past the end of its storage" in refused(path)

"""NVIDIA stylegan2-ada-pytorch / stylegan3-repo network pickles (`G_ema`), read without running their code.

The pickle is read by `safe_pickle`, which turns every persistent network into a `PersistentRecord`. From the
`G_ema` record we take the architecture (constructor arguments, checked against the layers' own attributes and the
tensor shapes) and the state dict (`_parameters`, `_buffers`, `_modules` walked recursively), and hand both to
`build_generator`. Conditional generators and StyleGAN3 (alias-free) synthesis networks are refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..generator import GeneratorConfig
from .base import CheckpointError, LoadedModel, build_generator
from .safe_pickle import PersistentRecord, safe_unpickle

# Positional parameter names of NVIDIA's constructors, for records built with positional arguments.
_GENERATOR_ARGS = ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"]
_SYNTHESIS_ARGS = ["w_dim", "img_resolution", "img_channels", "channel_base", "channel_max", "num_fp16_res"]
_MAPPING_ARGS = ["z_dim", "c_dim", "w_dim", "num_ws", "num_layers", "embed_features", "layer_features"]


def load_nvidia_pkl(path: str | Path, data: bytes) -> LoadedModel:
    """Load `G_ema` from the bytes of an NVIDIA network pickle."""
    obj = safe_unpickle(data, path)
    if isinstance(obj, PersistentRecord):
        G = obj  # a bare network pickle
    elif isinstance(obj, dict):
        G = obj.get("G_ema")
        if G is None:
            keys = ", ".join(repr(k) for k in list(obj)[:8])
            raise CheckpointError(path, f"the pickle holds no 'G_ema' network (keys: {keys})")
    else:
        raise CheckpointError(path, f"the pickle holds a {type(obj).__name__}, not NVIDIA's network dict")
    if not isinstance(G, PersistentRecord) or G.class_name != "Generator":
        what = G.class_name if isinstance(G, PersistentRecord) else type(G).__name__
        raise CheckpointError(path, f"'G_ema' is a {what}, not a StyleGAN generator")
    config, fill = config_from_record(path, G)
    state = state_dict_from_record(path, G)
    state.update({k: v for k, v in fill.items() if k not in state})
    generator = build_generator(path, config, state)
    metadata: dict[str, Any] = {"source_file": str(path)}
    training = obj.get("training_set_kwargs") if isinstance(obj, dict) else None
    if isinstance(training, dict) and isinstance(training.get("path"), str):
        metadata["training_set"] = training["path"]
    return LoadedModel(generator, config, Path(path).stem, "nvidia-pkl", metadata)


def state_dict_from_record(path: str | Path, record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten a record tree into `{dotted name: tensor}` as `nn.Module.state_dict()` would."""
    out: dict[str, torch.Tensor] = {}
    state = record.state
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        tensors = state.get(group) or {}
        if not isinstance(tensors, dict):
            raise CheckpointError(path, f"{prefix or 'network'} has a malformed {group}")
        for name, value in tensors.items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise CheckpointError(path, f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            out[prefix + name] = value
    modules = state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise CheckpointError(path, f"{prefix or 'network'} has malformed submodules")
    for name, sub in modules.items():
        if sub is None:
            continue
        if not isinstance(sub, PersistentRecord):
            raise CheckpointError(path, f"{prefix}{name} is not a persistent network module")
        out.update(state_dict_from_record(path, sub, f"{prefix}{name}."))
    return out


def config_from_record(path: str | Path, G: PersistentRecord) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Architecture settings of a `Generator` record, plus zero tensors for layers built without noise."""
    gk = _kwargs(G, _GENERATOR_ARGS)
    syn, mapping = _submodule(path, G, "synthesis"), _submodule(path, G, "mapping")
    c_dim = int(_attr(G, "c_dim", gk.get("c_dim", 0)) or 0)
    if c_dim > 0 or "embed" in _modules(mapping):
        raise CheckpointError(path, f"conditional generators (c_dim={c_dim}) are not supported; DragGAN needs c_dim=0")

    blocks = _modules(syn)
    if "b4" not in blocks:
        if "input" in blocks or any(name.startswith("L") for name in blocks):
            raise CheckpointError(
                path,
                "this is a StyleGAN3 (alias-free) generator, which is not supported; only StyleGAN2 generators are",
            )
        raise CheckpointError(path, f"unknown synthesis network ({syn.class_name}) without a b4 block")
    sk = _kwargs(syn, _SYNTHESIS_ARGS)
    architecture = sk.get("architecture", _attr(blocks["b4"], "architecture", "skip"))
    if architecture != "skip":
        raise CheckpointError(path, f"synthesis architecture {architecture!r} is not supported (only 'skip')")

    res = int(_attr(G, "img_resolution", gk.get("img_resolution", 0)) or 0)
    block_names = sorted((n for n in blocks if n[1:].isdigit()), key=lambda n: int(n[1:]))
    if [int(n[1:]) for n in block_names] != [2**i for i in range(2, res.bit_length())] or res < 4:
        raise CheckpointError(path, f"synthesis blocks {block_names} do not match img_resolution {res}")
    const = _record_tensors(blocks["b4"]).get("const")
    if const is None or const.ndim != 3:
        raise CheckpointError(path, "the b4 block has no constant input")
    # StyleGAN-Human's generators draw H x H/2 pictures from a 4 x 2 constant; any other shape is unknown.
    if tuple(const.shape[1:]) not in ((4, 4), (4, 2)):
        raise CheckpointError(
            path, f"unsupported constant input of shape {tuple(const.shape[1:])} (expected 4x4 or 4x2)"
        )
    square = const.shape[2] == 4

    layers = [(f"synthesis.{b}.{n}", rec) for b in block_names for n, rec in _modules(blocks[b]).items()]
    fill: dict[str, torch.Tensor] = {}
    conv_clamp: Any = "unset"
    for name, layer in layers:
        if layer.class_name != "SynthesisLayer":
            continue
        if _attr(layer, "activation", "lrelu") != "lrelu":
            raise CheckpointError(path, f"{name} uses activation {_attr(layer, 'activation', '')!r}, not 'lrelu'")
        weight = _record_tensors(layer).get("weight")
        if weight is None or tuple(weight.shape[2:]) != (3, 3):
            raise CheckpointError(path, f"{name} is not a 3x3 convolution")
        clamp = _attr(layer, "conv_clamp", sk.get("conv_clamp", 256))
        if conv_clamp != "unset" and clamp != conv_clamp:
            raise CheckpointError(path, "layers disagree on conv_clamp")
        conv_clamp = clamp
        if not _attr(layer, "use_noise", sk.get("use_noise", True)):
            r = int(_attr(layer, "resolution", 4))
            fill[f"{name}.noise_const"] = torch.zeros(r, r if square else r // 2)
            fill[f"{name}.noise_strength"] = torch.zeros([])

    mk = _kwargs(mapping, _MAPPING_ARGS)
    fcs = [n for n in _modules(mapping) if n.startswith("fc") and n[2:].isdigit()]
    if not fcs:
        raise CheckpointError(path, "the mapping network has no layers")
    fc0 = _modules(mapping)["fc0"]
    if _attr(fc0, "activation", mk.get("activation", "lrelu")) != "lrelu":
        raise CheckpointError(path, "the mapping network does not use leaky ReLU")
    lr_mult = _attr(fc0, "bias_gain", mk.get("lr_multiplier", 0.01))
    if "w_avg" not in _record_tensors(mapping):
        raise CheckpointError(path, "the mapping network has no w_avg (needed for truncation)")

    try:
        config = GeneratorConfig(
            z_dim=int(_attr(G, "z_dim", gk.get("z_dim", 512))),
            w_dim=int(_attr(G, "w_dim", gk.get("w_dim", 512))),
            img_resolution=res,
            img_channels=int(_attr(G, "img_channels", gk.get("img_channels", 3))),
            mapping_layers=len(fcs),
            mapping_lr_multiplier=float(lr_mult),
            layer_features=None if mk.get("layer_features") is None else int(mk["layer_features"]),
            channel_base=int(sk.get("channel_base", 32768)),
            channel_max=int(sk.get("channel_max", 512)),
            num_fp16_res=int(_attr(syn, "num_fp16_res", sk.get("num_fp16_res", 4))),
            conv_clamp=None if conv_clamp in (None, "unset") else float(conv_clamp),
            resample_filter=tuple(int(v) for v in sk.get("resample_filter", (1, 3, 3, 1))),
            square=square,
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"unreadable architecture settings ({exc})") from exc
    return config, fill


def _kwargs(record: PersistentRecord, positional: list[str]) -> dict[str, Any]:
    args = record.state.get("_init_args") or ()
    kwargs = record.state.get("_init_kwargs") or {}
    out = dict(zip(positional, args if isinstance(args, (tuple, list)) else (), strict=False))
    if isinstance(kwargs, dict):
        out.update(kwargs)
    return out


def _attr(record: PersistentRecord, name: str, default: Any) -> Any:
    value = record.state.get(name, default)
    return value.item() if hasattr(value, "item") and not isinstance(value, torch.Tensor) else value


def _modules(record: PersistentRecord) -> dict[str, PersistentRecord]:
    mods = record.state.get("_modules") or {}
    return {k: v for k, v in mods.items() if isinstance(v, PersistentRecord)} if isinstance(mods, dict) else {}


def _record_tensors(record: PersistentRecord) -> dict[str, torch.Tensor]:
    out = {}
    for group in ("_parameters", "_buffers"):
        tensors = record.state.get(group) or {}
        if isinstance(tensors, dict):
            out.update({k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)})
    return out


def _submodule(path: str | Path, record: PersistentRecord, name: str) -> PersistentRecord:
    sub = _modules(record).get(name)
    if sub is None:
        raise CheckpointError(path, f"the generator has no {name} network")
    return sub

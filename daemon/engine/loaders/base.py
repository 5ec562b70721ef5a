"""What every loader returns, the one error they raise, and the step that turns a state dict into a Generator.

Each loader only has to produce a `GeneratorConfig` and a state dict in NVIDIA's parameter names; building and
checking the network happens here, once, so that no loader can hand back a half-filled generator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..generator import Generator, GeneratorConfig


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and says what is wrong."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class LoadedModel:
    """A ready generator (eval mode, on the CPU, parameters frozen) and where it came from.

    Parameters have `requires_grad=False` because the drag optimises latents only; code that fine-tunes the
    weights (pivotal tuning) turns gradients on for its own copy.
    """

    generator: Generator
    config: GeneratorConfig
    name: str
    source_format: str  # "nvidia-pkl" | "rosinality-pt" | "native"
    metadata: dict = field(default_factory=dict)


def build_generator(path: str | Path, config: GeneratorConfig, state: dict[str, torch.Tensor]) -> Generator:
    """Instantiate `config` and fill it with `state`, refusing any missing, extra or misshapen tensor."""
    try:
        G = Generator(config)
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"unsupported architecture settings ({exc})") from exc
    expected = G.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if extra:
            parts.append(f"unexpected {_few(extra)}")
        raise CheckpointError(path, "tensors do not match a StyleGAN2 generator: " + "; ".join(parts))
    for name, ref in expected.items():
        got = state[name]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(path, f"{name} is not a tensor")
        if tuple(got.shape) != tuple(ref.shape):
            raise CheckpointError(path, f"{name} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}")
        if not (got.is_floating_point() and torch.isfinite(got).all()):
            raise CheckpointError(path, f"{name} holds non-finite or non-float values")
    with torch.no_grad():
        G.load_state_dict({k: v.detach().to(torch.float32) for k, v in state.items()}, strict=True)
    G.eval().requires_grad_(False)
    return G


def _few(names: list[str], n: int = 4) -> str:
    head = ", ".join(names[:n])
    return head + (f" and {len(names) - n} more" if len(names) > n else "")


def read_checkpoint_bytes(path: str | Path) -> bytes:
    """The whole file, or a CheckpointError saying why it cannot be read."""
    p = Path(path)
    try:
        if p.is_dir():
            raise CheckpointError(path, "is a directory, not a checkpoint file")
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise CheckpointError(path, "no such file") from exc
    except OSError as exc:
        raise CheckpointError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise CheckpointError(path, "the file is empty")
    return data


def describe_torch_load_error(exc: BaseException) -> tuple[bool, str]:
    """(refused_for_safety, short reason) for an exception from `torch.load(weights_only=True)`."""
    text = str(exc)
    found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if found:
        return True, f"it asks for '{found.group(1)}', which is not a tensor or plain container"
    if "weights_only" in text or "Weights only" in text:
        line = next((ln.strip() for ln in text.splitlines() if "Unpickler error" in ln), "")
        return True, line or "it holds objects other than tensors"
    first = text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__
    return False, first

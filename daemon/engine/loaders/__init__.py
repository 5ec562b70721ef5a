"""Load the generator checkpoints people bring, whatever the file is called.

`load_generator(path)` looks at the first bytes, not the extension: a zip archive or torch's legacy magic is a
`torch.save` file (rosinality), a plain pickle is an NVIDIA network pickle, and an 8-byte length followed by a JSON
object is safetensors (our native format). Each reader returns a complete `LoadedModel` or raises one
`CheckpointError` naming the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

from .base import CheckpointError, LoadedModel, read_checkpoint_bytes

__all__ = ["CheckpointError", "LoadedModel", "load_generator", "sniff_format"]

# torch.save's pre-zip format starts with a protocol-2 pickle of this magic number.
_TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")


def sniff_format(data: bytes) -> str | None:
    """'rosinality-pt', 'nvidia-pkl', 'native', or None when the bytes look like none of them."""
    if data[:4] == b"PK\x03\x04":
        return "rosinality-pt"
    if data.startswith(_TORCH_LEGACY_MAGIC):
        return "rosinality-pt"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "nvidia-pkl"
    if len(data) >= 9 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") < 2**32:
        return "native"
    return None


def load_generator(path: str | Path) -> LoadedModel:
    """Load an NVIDIA `.pkl`, a rosinality `.pt` or a native `.safetensors` generator (eval mode, CPU)."""
    data = read_checkpoint_bytes(path)
    kind = sniff_format(data)
    if kind == "nvidia-pkl":
        from .nvidia_pkl import load_nvidia_pkl

        return load_nvidia_pkl(path, data)
    if kind == "rosinality-pt":
        from .rosinality import load_rosinality

        return load_rosinality(path, data)
    if kind == "native":
        from .native import load_native_bytes

        return load_native_bytes(path, data)
    raise CheckpointError(
        path,
        "not a recognised generator checkpoint (expected an NVIDIA StyleGAN2 .pkl, a rosinality .pt "
        "or a .safetensors file written by this program)",
    )

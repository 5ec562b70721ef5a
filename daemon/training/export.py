"""Turn a training checkpoint into the project's native generator file (what the daemon serves).

Only G_ema travels: the discriminator, encoder and optimiser states are training business. w_avg is recomputed
from many z so that truncation (psi < 1) pulls towards the true centre of this generator's W space.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from ..engine.generator import Generator, GeneratorConfig
from .emoji_sources import SOURCE_LICENCES
from .train import compute_w_avg

BUNDLED_NAME = "DragGAN Studio emoji faces 64px"


def generator_from_checkpoint(path: Path) -> tuple[Generator, dict]:
    """G_ema of a training checkpoint, on CPU in eval mode, with the checkpoint's bookkeeping."""
    sd = torch.load(path, map_location="cpu", weights_only=False)
    G = Generator(GeneratorConfig.from_dict(sd["generator_config"]))
    G.load_state_dict(sd["G_ema"])
    G.eval().requires_grad_(False)
    return G, sd


def export_checkpoint(
    ckpt: Path, out: Path, dtype: torch.dtype = torch.float32, data: Path | None = None, fit_steps: int = 2000
) -> dict:
    """Write `ckpt`'s G_ema to `out` with save_native, and a model card beside it (`out` with .json)."""
    from ..engine.loaders.native import save_native

    G, sd = generator_from_checkpoint(Path(ckpt))
    mapping_note = "trained with the generator"
    if sd["train_config"].get("latent") == "w" and data is not None and fit_steps > 0 and "E" in sd:
        from .dataset import EmojiDataset
        from .fit_mapping import dataset_codes, fit_mapping
        from .networks import Encoder

        tc = sd["train_config"]
        E = Encoder(tc["resolution"], tc["w_dim"], tc["e_channel_base"], tc["channel_max"])
        E.load_state_dict(sd["E"])
        losses = fit_mapping(G, dataset_codes(E, EmojiDataset.load(Path(data)).tensor()), steps=fit_steps)
        first, last = losses[0], losses[-1]
        mapping_note = (
            f"fitted to the encoder's codes (MMD + moments), {fit_steps} steps, loss {first:.3f} -> {last:.3f}"
        )
    G.eval()
    G.mapping.w_avg.copy_(compute_w_avg(G, 20000))
    history = sd.get("history") or []
    meta = {
        "name": BUNDLED_NAME,
        "licence": "model weights: MIT (this project); training images: see NOTICE",
        "training_data": "; ".join(SOURCE_LICENCES[s] for s in ("noto", "fluent3d", "twitter")),
        "trained_kimg": f"{sd['cur_nimg'] / 1000:.2f}",
        "trained_iterations": str(sd["iteration"]),
        "trained_minutes": f"{sd['seconds'] / 60:.1f}",
        "random_feature_fd": f"{history[-1]['fd']:.4f}" if history else "",
        "train_config": json.dumps(sd["train_config"]),
        "mapping": mapping_note,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_native(G, out, metadata=meta, dtype=dtype)
    out.chmod(0o644)  # a shipped file, readable by everyone (the atomic writer creates it private)
    card = {
        **{k: v for k, v in meta.items() if k != "train_config"},
        "file": out.name,
        "bytes": out.stat().st_size,
        "parameters": sum(p.numel() for p in G.parameters()),
        "generator_config": sd["generator_config"],
        "train_config": sd["train_config"],
        "history": history,
        "exported_from": Path(ckpt).name,
        "exported_with": f"{platform.machine()}, torch {torch.__version__}",
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    return meta

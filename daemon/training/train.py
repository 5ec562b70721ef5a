"""`draggan train`: train the bundled StyleGAN2 on the emoji data set (VAE-GAN with DiffAugment and R1).

Why this recipe: a few hundred images and little compute. Pure adversarial training needs hundreds of thousands
of images shown before faces appear; reconstructing real images through an encoder teaches the generator faces
within the first thousand iterations, the KL term keeps z ~ N(0, I) a valid sampling distribution, and the
adversarial loss (non-saturating, DiffAugment on every discriminator input, lazy R1) sharpens both random samples
and reconstructions. What is saved is the exponential moving average of the generator (G_ema), as in StyleGAN2.

Resumable: everything lives in one run folder (checkpoint.pt = latest, best.pt = best random-feature FD,
samples_*.png grids, log.txt); running the same command again continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..engine.generator import Generator, GeneratorConfig
from .dataset import DEFAULT_RESOLUTION, EmojiDataset, augment, prepare_emoji_dataset
from .diffaugment import DEFAULT_POLICY, diff_augment
from .grid import save_grid
from .metrics import RandomFeatureFD
from .networks import Discriminator, Encoder

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "model"
DEFAULT_DATA = DEFAULT_CACHE / "emoji64.npz"
DEFAULT_RUN = DEFAULT_CACHE / "run"

# Presets: "cpu" is what a few CPU hours can move; "gpu" is wider and uses minutes of one H100/H200.
PRESETS: dict[str, dict] = {
    "tiny": dict(z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32, d_channel_base=256, batch=4),
    "cpu-w": dict(z_dim=256, w_dim=256, mapping_layers=4, channel_base=1024, channel_max=256, batch=8, latent="w"),
    "cpu": dict(
        z_dim=256,
        w_dim=256,
        mapping_layers=4,
        channel_base=1024,
        channel_max=256,
        d_channel_base=512,
        batch=8,
        warmup_kimg=3.0,
    ),
    "gpu": dict(
        z_dim=256,
        w_dim=256,
        mapping_layers=6,
        channel_base=2048,
        channel_max=256,
        d_channel_base=4096,
        batch=64,
        ema_kimg=10.0,
        snap_kimg=50.0,
        rec_weight=1.0,  # with thousands of images a second the adversarial loss carries; L1 only steadies the start
        warmup_kimg=10.0,
    ),
}


@dataclass
class TrainConfig:
    """Every setting of a run; stored in the checkpoint so a resumed run keeps its architecture."""

    resolution: int = DEFAULT_RESOLUTION
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 4
    channel_base: int = 1024
    channel_max: int = 256
    d_channel_base: int = 1024
    e_channel_base: int = 1024
    batch: int = 16
    # Reconstruction-only iterations first (no discriminator): about three times cheaper and they teach faces.
    warmup_kimg: float = 0.0
    # "z": VAE-GAN, the encoder posts a Gaussian over z. "w": the encoder writes w directly (an autoencoder in W
    # space, the clearest signal for the synthesis network) and the mapping network learns, by MMD, to turn
    # z ~ N(0, I) into the distribution of the encoder's codes.
    latent: str = "z"
    w_noise: float = 0.25  # code noise, in per-dimension standard deviations of the codes (smooths W space)
    map_lr: float = 0.05  # mapping weights are stored 100x (lr multiplier 0.01): this is 2% of a normal layer's pace
    bank: int = 512  # recent encoder codes the mapping is matched against
    lr: float = 0.0025
    rec_weight: float = 4.0
    kl_weight: float = 0.005
    adv_weight: float = 1.0
    r1_gamma: float = 1.0
    r1_interval: int = 4
    ema_kimg: float = 2.0
    ema_rampup: float = 0.05
    policy: str = DEFAULT_POLICY
    seed: int = 0
    snap_kimg: float = 2.0
    extra: dict = field(default_factory=dict)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            z_dim=self.z_dim,
            w_dim=self.w_dim,
            img_resolution=self.resolution,
            mapping_layers=self.mapping_layers,
            channel_base=self.channel_base,
            channel_max=self.channel_max,
            num_fp16_res=0,
            conv_clamp=256,
        )


# ----------------------------------------------------------------------------------------------------------
# State: networks, optimisers, counters.


class TrainState:
    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.G = Generator(cfg.generator_config()).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.D = Discriminator(cfg.resolution, cfg.d_channel_base, cfg.channel_max).to(device)
        code_dim = cfg.w_dim if cfg.latent == "w" else cfg.z_dim
        self.E = Encoder(cfg.resolution, code_dim, cfg.e_channel_base, cfg.channel_max).to(device)
        betas = (0.0, 0.99)
        trained = list(self.G.synthesis.parameters()) if cfg.latent == "w" else list(self.G.parameters())
        self.opt_g = torch.optim.Adam(trained + list(self.E.parameters()), lr=cfg.lr, betas=betas)
        self.opt_map = torch.optim.Adam(self.G.mapping.parameters(), lr=cfg.map_lr, betas=(0.0, 0.99))
        self.bank = torch.zeros(0, cfg.w_dim, device=device)
        r1_ratio = cfg.r1_interval / (cfg.r1_interval + 1)  # lazy-regularisation correction, as StyleGAN2
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * r1_ratio, betas=(0.0, 0.99**r1_ratio))
        self.cur_nimg = 0
        self.iteration = 0
        self.seconds = 0.0
        self.best_fd = math.inf
        self.history: list[dict] = []

    def state_dict(self) -> dict:
        return {
            "format": "draggan-train-checkpoint/1",
            "train_config": asdict(self.cfg),
            "generator_config": self.cfg.generator_config().to_dict(),
            "G": self.G.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "D": self.D.state_dict(),
            "E": self.E.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_map": self.opt_map.state_dict(),
            "bank": self.bank,
            "cur_nimg": self.cur_nimg,
            "iteration": self.iteration,
            "seconds": self.seconds,
            "best_fd": self.best_fd,
            "history": self.history,
        }

    def load_state_dict(self, sd: dict) -> None:
        for name in ("G", "G_ema", "D", "E"):
            getattr(self, name).load_state_dict(sd[name])
        self.opt_g.load_state_dict(sd["opt_g"])
        self.opt_d.load_state_dict(sd["opt_d"])
        if "opt_map" in sd:
            self.opt_map.load_state_dict(sd["opt_map"])
            self.bank = sd["bank"].to(self.device)
        self.cur_nimg, self.iteration = int(sd["cur_nimg"]), int(sd["iteration"])
        self.seconds, self.best_fd = float(sd["seconds"]), float(sd["best_fd"])
        self.history = list(sd.get("history", []))


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a half-written checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state.state_dict(), tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[TrainState, dict]:
    sd = torch.load(path, map_location=device, weights_only=False)
    if sd.get("format") != "draggan-train-checkpoint/1":
        raise ValueError(f"{path} is not a training checkpoint of this project")
    known = {k: v for k, v in sd["train_config"].items() if k in TrainConfig.__dataclass_fields__}
    state = TrainState(TrainConfig(**known), torch.device(device))
    state.load_state_dict(sd)
    return state, sd


# ----------------------------------------------------------------------------------------------------------
# One iteration.


def _requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _multiscale_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    loss = (a - b).abs().mean()
    for _ in range(2):
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        loss = loss + (a - b).abs().mean()
    return loss


def mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Maximum mean discrepancy with RBF kernels at several widths around the median distance."""
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).square()
    scale = d2.detach().median().clamp_min(1e-6)
    k = sum(torch.exp(-d2 / (scale * f)) for f in (0.25, 0.5, 1.0, 2.0, 4.0))
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def train_step_w(state: TrainState, reals: torch.Tensor) -> dict[str, float]:
    """Autoencoder in W space (encoder -> w -> synthesis) plus MMD matching of the mapping to the codes."""
    cfg, G, E = state.cfg, state.G, state.E
    dev = reals.device
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    b = reals.shape[0]
    with amp:
        codes = E(reals)[0].float()
    state.bank = torch.cat([codes.detach(), state.bank])[: cfg.bank]
    spread = state.bank.std(0) if state.bank.shape[0] >= 32 else codes.detach().std(0)
    w_in = codes + cfg.w_noise * spread * torch.randn_like(codes)
    with amp:
        recon = G.synthesis(w_in.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="random").float()
    l_rec = _multiscale_l1(recon, reals)
    l_code = codes.square().mean()
    loss = cfg.rec_weight * l_rec + 1e-3 * l_code
    state.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    state.opt_g.step()

    # Mapping: z ~ N(0, I) should land where the encoder puts real faces.
    z = torch.randn(256, cfg.z_dim, device=dev)
    w_fake = G.mapping(z)[:, 0]
    l_mmd = mmd(w_fake, state.bank)
    state.opt_map.zero_grad(set_to_none=True)
    l_mmd.backward()
    state.opt_map.step()
    _update_ema(state, b)
    return dict(rec=l_rec.item(), mmd=l_mmd.item(), code=l_code.item())


def train_step(state: TrainState, reals: torch.Tensor) -> dict[str, float]:
    """One generator/encoder step and one discriminator step on a batch of augmented real images."""
    if state.cfg.latent == "w":
        return train_step_w(state, reals)
    cfg, G, D, E = state.cfg, state.G, state.D, state.E
    dev = reals.device
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    b = reals.shape[0]
    n_fake = max(2, b // 2)
    adversarial = state.cur_nimg >= cfg.warmup_kimg * 1000

    # Generator + encoder: reconstruct the reals, fool D with reconstructions and with prior samples.
    _requires_grad(D, False)
    with amp:
        mu, logvar = E(reals)
        z_post = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = G.synthesis(G.mapping(z_post.float()), noise_mode="random")
        if adversarial:
            z = torch.randn(n_fake, cfg.z_dim, device=dev)
            fake = G.synthesis(G.mapping(z), noise_mode="random")
            gen = torch.cat([recon, fake]).float()
            d_gen = D(diff_augment(gen, cfg.policy)).float()
    l_adv = F.softplus(-d_gen).mean() if adversarial else torch.zeros((), device=dev)
    l_rec = _multiscale_l1(recon.float(), reals)
    l_kl = 0.5 * (mu.float().square() + logvar.float().exp() - 1 - logvar.float()).sum(1).mean()
    loss_g = cfg.adv_weight * l_adv + cfg.rec_weight * l_rec + cfg.kl_weight * l_kl
    state.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    state.opt_g.step()
    if not adversarial:
        _update_ema(state, b)
        return dict(g_adv=0.0, rec=l_rec.item(), kl=l_kl.item(), d=0.0, r1=0.0, d_real=0.0, d_fake=0.0)

    # Discriminator: reals against the (detached) images of the step above.
    _requires_grad(D, True)
    with amp:
        d_real = D(diff_augment(reals, cfg.policy)).float()
        d_fake = D(diff_augment(gen.detach(), cfg.policy)).float()
    loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
    r1 = torch.zeros((), device=dev)
    if cfg.r1_gamma > 0 and state.iteration % cfg.r1_interval == 0:
        x = reals.detach().requires_grad_(True)
        score = D(diff_augment(x, cfg.policy))
        (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
        r1 = grad.square().sum(dim=[1, 2, 3]).mean()
        loss_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_interval
    state.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    state.opt_d.step()

    _update_ema(state, b)
    out = dict(g_adv=l_adv.item(), rec=l_rec.item(), kl=l_kl.item(), d=loss_d.item(), r1=r1.item())
    out["d_real"], out["d_fake"] = d_real.mean().item(), d_fake.mean().item()
    return out


def _update_ema(state: TrainState, b: int) -> None:
    """Count the batch and move G_ema towards G (parameters lerped, buffers copied)."""
    cfg, G = state.cfg, state.G
    state.cur_nimg += b
    state.iteration += 1
    ema_nimg = min(cfg.ema_kimg * 1000, state.cur_nimg * cfg.ema_rampup)
    beta = 0.5 ** (b / max(ema_nimg, 1e-8))
    with torch.no_grad():
        for p_ema, p in zip(state.G_ema.parameters(), G.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b_ in zip(state.G_ema.buffers(), G.buffers(), strict=True):
            b_ema.copy_(b_)


# ----------------------------------------------------------------------------------------------------------
# Snapshots: sample grid, quality score, checkpoints.


@torch.no_grad()
def render_samples(
    G: Generator, n: int, seed: int = 0, psi: float = 1.0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g).to(device)
    out = []
    for chunk in z.split(64):
        out.append(G.synthesis(G.mapping(chunk, psi), noise_mode="const").float().cpu())
    return torch.cat(out)


@torch.no_grad()
def compute_w_avg(G: Generator, n: int = 10000, seed: int = 123) -> torch.Tensor:
    """The mean w of many z: the centre that truncation pulls towards."""
    g = torch.Generator().manual_seed(seed)
    dev = next(G.parameters()).device
    total = torch.zeros(G.w_dim, device=dev)
    for i in range(0, n, 1000):
        z = torch.randn(min(1000, n - i), G.z_dim, generator=g).to(dev)
        total += G.mapping(z)[:, 0].sum(0)
    return total / n


def snapshot(state: TrainState, run_dir: Path, fd: RandomFeatureFD, log) -> None:
    G_ema = state.G_ema
    state.G_ema.mapping.w_avg.copy_(compute_w_avg(G_ema, 2000))
    if state.cfg.latent == "w" and state.bank.shape[0] >= 16:
        # The mapping is fitted to the codes only at export, so judge the synthesis on noisy recent codes.
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            pick = torch.randint(0, state.bank.shape[0], (256,), generator=g).to(state.device)
            noise = torch.randn(256, state.cfg.w_dim, generator=g).to(state.device)
            w = state.bank[pick] + state.cfg.w_noise * state.bank.std(0) * noise
            ws = w.unsqueeze(1).repeat(1, G_ema.num_ws, 1)
            samples = torch.cat([G_ema.synthesis(c, noise_mode="const").float().cpu() for c in ws.split(64)])
    else:
        samples = render_samples(G_ema, 256, seed=0, device=state.device)
    score = fd(samples)
    kimg = state.cur_nimg / 1000
    save_grid(samples[:64], run_dir / f"samples_{kimg:08.2f}kimg.png", columns=8)
    record = dict(
        kimg=round(kimg, 3), iteration=state.iteration, minutes=round(state.seconds / 60, 2), fd=round(score, 4)
    )
    state.history.append(record)
    improved = score < state.best_fd
    if improved:
        state.best_fd = score
    save_checkpoint(state, run_dir / "checkpoint.pt")
    if improved:
        save_checkpoint(state, run_dir / "best.pt")
    log(f"snapshot {json.dumps(record)}{'  (best so far)' if improved else ''}")


# ----------------------------------------------------------------------------------------------------------
# Progress bar and the loop.


class Progress:
    """One status line: a bar over the run's budget (minutes or kimg), speed and losses."""

    def __init__(self, log_file: Path, stream=sys.stderr, every_s: float = 10.0):
        self.log_file, self.stream, self.every_s = log_file, stream, every_s
        self.last = 0.0
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        with open(self.log_file, "a") as f:
            f.write(line + "\n")
        print(("\n" if self.tty else "") + line, file=self.stream, flush=True)

    def update(self, fraction: float, text: str, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        filled = int(30 * min(max(fraction, 0.0), 1.0))
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {100 * fraction:5.1f}% {text}"
        if self.tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
        with open(self.log_file, "a") as f:
            f.write(line + "\n")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def train(
    cfg: TrainConfig,
    data: EmojiDataset,
    run_dir: Path,
    device: torch.device,
    minutes: float | None = None,
    kimg: float | None = None,
    resume: bool = True,
    max_iterations: int | None = None,
) -> TrainState:
    """Train until `minutes` (this invocation) or `kimg` (in total) or `max_iterations` (this invocation) is reached."""
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(run_dir / "log.txt")
    ckpt = run_dir / "checkpoint.pt"
    if resume and ckpt.exists():
        state, _ = load_checkpoint(ckpt, device)
        progress.log(f"resumed {ckpt} at {state.cur_nimg / 1000:.2f} kimg, iteration {state.iteration}")
    else:
        state = TrainState(cfg, device)
        (run_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    cfg = state.cfg
    if data.resolution != cfg.resolution:
        raise SystemExit(f"data set is {data.resolution}px but the model is {cfg.resolution}px")
    n_params = sum(p.numel() for p in state.G.parameters())
    progress.log(f"G {n_params / 1e6:.2f} M parameters, {len(data)} images, batch {cfg.batch}, device {device}")
    reals_all = data.tensor(device)
    save_grid(reals_all[:64].cpu(), run_dir / "reals.png", columns=8)
    fd = RandomFeatureFD(data.tensor("cpu"))
    rng = torch.Generator().manual_seed(cfg.seed + state.iteration)
    start = time.time()
    next_snap = (math.floor(state.cur_nimg / 1000 / cfg.snap_kimg) + 1) * cfg.snap_kimg
    it0 = state.iteration
    budget_s = None if minutes is None else minutes * 60
    losses: dict[str, float] = {}
    while True:
        elapsed = time.time() - start
        done_time = budget_s is not None and elapsed >= budget_s
        done_kimg = kimg is not None and state.cur_nimg >= kimg * 1000
        done_iter = max_iterations is not None and state.iteration - it0 >= max_iterations
        if done_time or done_kimg or done_iter:
            break
        t0 = time.time()
        idx = torch.randint(0, len(data), (cfg.batch,), generator=rng).to(device)
        reals = augment(reals_all[idx], generator=rng)
        step = train_step(state, reals)
        state.seconds += time.time() - t0
        for k, v in step.items():
            losses[k] = 0.9 * losses.get(k, v) + 0.1 * v
        if any(not math.isfinite(v) for v in step.values()):
            progress.log(f"non-finite loss at iteration {state.iteration}: {step}; stopping")
            break
        fractions = [
            f
            for f in (elapsed / budget_s if budget_s else None, state.cur_nimg / 1000 / kimg if kimg else None)
            if f is not None
        ]
        speed = (state.iteration - it0) / max(time.time() - start, 1e-6)
        text = f"kimg {state.cur_nimg / 1000:7.2f} it {state.iteration} {speed:5.2f} it/s " + " ".join(
            f"{k} {v:.3f}" for k, v in losses.items()
        )
        progress.update(max(fractions) if fractions else 0.0, text)
        if state.cur_nimg / 1000 >= next_snap:
            snapshot(state, run_dir, fd, progress.log)
            next_snap += cfg.snap_kimg
    snapshot(state, run_dir, fd, progress.log)
    progress.log(f"stopped at {state.cur_nimg / 1000:.2f} kimg after {state.seconds / 60:.1f} training minutes in all")
    return state


# ----------------------------------------------------------------------------------------------------------
# Command line.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="draggan train", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="prepared data set (.npz)")
    p.add_argument("--prepare-data", action="store_true", help="rebuild the data set from apt/npm first")
    p.add_argument("--prepare-only", action="store_true", help="rebuild the data set and stop")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE / "npm", help="where npm tarballs are kept")
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN, help="checkpoints, grids and log go here")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="model size (default: by device)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes (this invocation)")
    p.add_argument("--kimg", type=float, default=None, help="stop after this many thousand images shown (in total)")
    p.add_argument("--iterations", type=int, default=None, help="stop after this many iterations (this invocation)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--snap-kimg", type=float, default=None, help="sample grid + checkpoint interval")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if the run folder has a checkpoint")
    p.add_argument("--export", type=Path, default=None, help="after training, export the best G_ema here")
    p.add_argument("--export-only", type=Path, default=None, metavar="CKPT", help="export CKPT to --export and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.export_only is not None:
        from .export import export_checkpoint

        out = args.export or (REPO_ROOT / "daemon" / "models" / "bundled.safetensors")
        export_checkpoint(args.export_only, out, data=args.data if args.data.exists() else None)
        print(f"exported {args.export_only} -> {out}")
        return 0
    if args.prepare_data or args.prepare_only or not args.data.exists():
        print(f"preparing the emoji data set into {args.data} ...", flush=True)
        ds = prepare_emoji_dataset(args.cache, args.data)
        print(f"{len(ds)} images", flush=True)
        if args.prepare_only:
            return 0
    data = EmojiDataset.load(args.data)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset = dict(PRESETS[args.preset or ("gpu" if device.type == "cuda" else "cpu")])
    if args.batch:
        preset["batch"] = args.batch
    cfg = TrainConfig(resolution=data.resolution, seed=args.seed, **preset)
    if args.snap_kimg:
        cfg.snap_kimg = args.snap_kimg
    if args.minutes is None and args.kimg is None and args.iterations is None:
        args.minutes = 60.0
    train(cfg, data, args.run_dir, device, args.minutes, args.kimg, not args.no_resume, args.iterations)
    if args.export is not None:
        from .export import export_checkpoint

        best = args.run_dir / "best.pt"
        export_checkpoint(best if best.exists() else args.run_dir / "checkpoint.pt", args.export, data=args.data)
        print(f"exported -> {args.export}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The DragGAN optimiser: move handle points of a generated image to their targets by optimising the latent.

Each step does what the official code does (XingangPan/DragGAN `viz/renderer.py`): synthesise features of the
supervised block for the current latent, track the handles on those features, then one Adam step on the
motion-supervision loss (plus the mask term). The answers are the same; the work is not:

* the synthesis stops after the supervised block (b128, or the nearest one); a preview is rendered apart,
  without autograd, from the blocks the step computed in full, so the later, larger blocks and the ToRGB layers
  run only for previews and are never differentiated; a preview may be a draft that stops below the last block,
  so that previews cost at most 0.4 plain steps each on average (`previews`);
* the feature map is never resized to image size: the few pixels that tracking and the losses read are
  sampled from the small map with the same arithmetic as the official resize (see `feature_sampling`),
  all in one batched call per use;
* the features come from `local_synthesis`: modulation on activations rather than on weights (no
  weight-sized tensors built or differentiated), gradients for the latent only, and, when no mask needs the
  whole map, the largest blocks computed only in crops around the handles.

How much faster than a loop that does what the official code does: benchmarks/drag_speed.py, figures in
benchmarks/RESULTS.md.

Beyond the official code: sub-pixel tracking, a guard against handles jumping to look-alikes (`tracking`),
and resumable state: `set_points` may be called again to add, move or retarget points and continue from the
current latent with Adam's moments kept.

Coordinates are (x, y) floats in model-resolution pixels, pixel centres at integers (the official code's
convention).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from draggan_protocol import parameters as _parameters

from .errors import EngineInputError
from .feature_sampling import sample_pixels, sample_points
from .generator import Generator, NoiseMode, Trunk
from .local_synthesis import FeatureSynthesis
from .motion import DiskGrid, MaskRegion, mask_is_active, mask_loss, motion_loss
from .previews import BUDGET, PreviewPlanner
from .tracking import TrackingOptions, track_points

Point = tuple[float, float]

# The defaults a drag request shares with the engine come from the protocol's one parameter table, so that a
# drag with nothing set behaves the same from the daemon, a plug-in or a script (the engine said 300 steps, the
# wire 200). Those left None there (lr, r1, r2, optimised_layers, stop_distance) are resolved by model size below.
_TABLE = _parameters.defaults(_parameters.PARAMS)


@dataclass
class DragConfig:
    """Drag settings. None means "scaled from the official 512-pixel defaults" (see `resolve`)."""

    max_steps: int = _TABLE["steps"]
    lr: float | None = None  # Adam learning rate; None = 2e-3 (the paper's) scaled up for models below 256 px
    latent_space: Literal["w+", "w"] = _TABLE["latent_space"]
    optimised_layers: int | None = None  # leading ws optimised; None = those of blocks up to min(16, H/8) px
    r1: float | None = None  # motion-supervision disk radius, pixels (official: round(3/512 H))
    r2: int | None = None  # tracking window half-size, pixels (official: round(12/512 H))
    mask_weight: float = _TABLE["mask_weight"]
    stop_distance: float | None = None
    seed: int = _TABLE["seed"]
    feature_res: int | None = None  # supervised block; None = G.feature_resolution()
    tracking: Literal["subpixel", "nearest"] = "subpixel"  # "nearest" = the official integer tracking
    jump_guard: bool = True
    jump_limit: float | None = None  # pixels; None = max(r1, 2)
    jump_margin: float = 0.25
    disk_grid: DiskGrid = "official"
    noise_mode: NoiseMode = "const"
    local_features: bool = True  # compute the supervised map only around the handles when nothing else needs it
    # How the values left None are worked out from the model's size: "studio" as below; "official" as the
    # official code: lr 1e-3, 6 ws, round(3/512 H) and round(12/512 H) (at least 1), stop max(2/512 H, 2).
    scaling: Literal["studio", "official"] = "studio"

    def resolve(self, image_size: int) -> ResolvedConfig:
        """Pixel values for a model of `image_size` pixels (the studio rules; "official": the official code's).

        - Learning rate 2e-3 (the paper's) from 256 px up, 2e-3 × 256 / H below (8e-3 at 64 px): a one-pixel
          motion step is a larger share of a small picture, so the latent must move further per step.
        - Radii: the official 3/512 H and 12/512 H rounded, with floors r1 >= 4 below 256 px (2 from there), r2 >= 3:
          the official rounding leaves no disk at 64 px, and a wider disk grips a part that covers more of the
          picture.
        - Optimised ws: the official first 6 from 128 px up; below, those of the blocks up to H/8 (4 at 64 px),
          since a 16-px block already draws parts of a 64-px picture. The price, without a mask, is a little more
          change away from the handles; a keep-mask holds it.
        - Stop distance: max(2/512 H, 2) with integer tracking (official), max(2/512 H, 1) with sub-pixel tracking,
          which settles closer and for which 2 px is a large error on a small picture.
        Each rule against its alternative: benchmarks/drag_defaults.py, figures in benchmarks/RESULTS.md.
        """
        if self.scaling == "official":
            return self._resolve_official(image_size)
        r1_floor = 2 if image_size >= 256 else 4
        r1 = float(self.r1) if self.r1 is not None else float(max(round(3 / 512 * image_size), r1_floor))
        r2 = int(self.r2) if self.r2 is not None else max(round(12 / 512 * image_size), 3)
        if self.stop_distance is not None:
            stop = float(self.stop_distance)
        elif self.tracking == "nearest":
            stop = max(2 / 512 * image_size, 2.0)
        else:
            stop = max(2 / 512 * image_size, 1.0)
        jump = float(self.jump_limit) if self.jump_limit is not None else max(r1, 2.0)
        lr = float(self.lr) if self.lr is not None else 2e-3 * max(1.0, 256 / image_size)
        if self.optimised_layers is not None:
            layers = int(self.optimised_layers)
        else:
            layout_res = max(min(16, image_size // 8), 4)
            layers = 2 * int(math.log2(layout_res)) - 2  # b4: ws 0-1, each further block two more
        return ResolvedConfig(
            lr=lr, r1=r1, r2=r2, stop_distance=stop, min_motion=min(1.0, stop), jump_limit=jump, optimised_layers=layers
        )

    def _resolve_official(self, image_size: int) -> ResolvedConfig:
        """The official GUI's values (XingangPan/DragGAN `viz/renderer.py`) for what is None. Where its rounding
        gives a radius of 0 (r1 below 86 px: no pixel supervised), 1."""
        r1 = float(self.r1) if self.r1 is not None else float(max(round(3 / 512 * image_size), 1))
        r2 = int(self.r2) if self.r2 is not None else max(round(12 / 512 * image_size), 1)
        stop = float(self.stop_distance) if self.stop_distance is not None else max(2 / 512 * image_size, 2.0)
        jump = float(self.jump_limit) if self.jump_limit is not None else max(r1, 2.0)
        return ResolvedConfig(
            lr=float(self.lr) if self.lr is not None else 1e-3,
            optimised_layers=int(self.optimised_layers) if self.optimised_layers is not None else 6,
            r1=r1,
            r2=r2,
            stop_distance=stop,
            min_motion=min(1.0, stop),
            jump_limit=jump,
        )


@dataclass(frozen=True)
class ResolvedConfig:
    lr: float
    optimised_layers: int
    r1: float
    r2: int
    stop_distance: float
    min_motion: float  # handles closer than this to their target get no motion term (official: 1 px)
    jump_limit: float


@dataclass
class StepReport:
    step: int
    handles: list[Point]
    targets: list[Point]
    loss: float
    done: bool
    image: torch.Tensor | None = None  # [1, 3, H, W] in [-1, 1], only when a preview was asked for
    image_res: int | None = None  # the block the image stops at (below the model's size: a draft, see `previews`)
    guarded: list[bool] = field(default_factory=list)  # per handle: the jump guard held it this step


class DragOptimizer:
    """One drag session on one generator, resumable through `set_points`."""

    def __init__(self, G: Generator, ws: torch.Tensor, config: DragConfig | None = None):
        self.G = G
        self.config = config or DragConfig()
        if self.config.latent_space not in ("w+", "w"):
            raise EngineInputError(f"latent space must be 'w+' or 'w', not {self.config.latent_space!r}")
        self.device = next(G.parameters()).device
        self.image_size = G.img_resolution
        self.feature_res = self.config.feature_res or G.feature_resolution()
        self.resolved = self.config.resolve(self.image_size)
        self._synth = FeatureSynthesis(G, self.feature_res)
        if ws.ndim != 3 or ws.shape[1] != G.num_ws or ws.shape[2] != G.w_dim:
            raise EngineInputError(f"the latent has shape {tuple(ws.shape)}, expected [1, {G.num_ws}, {G.w_dim}]")
        self._ws0 = ws.detach().to(self.device, torch.float32).clone()
        self._k = max(1, min(self.resolved.optimised_layers, G.num_ws))
        start = self._ws0[:, : self._k] if self.config.latent_space == "w+" else self._ws0[:, 0]
        self._w = start.clone().requires_grad_(True)
        self._opt = torch.optim.Adam([self._w], lr=self.resolved.lr)
        self._tracking = TrackingOptions(
            radius=self.resolved.r2,
            subpixel=self.config.tracking == "subpixel",
            guard=self.config.jump_guard,
            jump_limit=self.resolved.jump_limit,
            jump_margin=self.config.jump_margin,
        )
        self.handles: list[Point] = []
        self.targets: list[Point] = []
        self._templates: torch.Tensor | None = None
        self._feat0: torch.Tensor | None = None  # supervised features of the starting latent (mask reference)
        self._mask_region: MaskRegion | None = None
        self._fresh = False  # the latent has not moved since the templates were read
        self._anchored = False  # the handles follow the measure, not the tracker (see `run`)
        self.steps_taken = 0
        self.reanchored = 0  # how often a claimed arrival was refuted by the measure (see `run`)
        self.tracker_claim = False  # the last step's own arrival claim, before any measure checked it
        self.previews = PreviewPlanner.for_blocks(G.synthesis.block_resolutions, budget=BUDGET)

    # ------------------------------------------------------------------------------------------------------
    # State.

    def _compose(self) -> torch.Tensor:
        head = self._w if self.config.latent_space == "w+" else self._w[:, None].expand(-1, self._k, -1)
        return torch.cat([head, self._ws0[:, self._k :]], dim=1)

    @property
    def ws(self) -> torch.Tensor:
        """The current latent [1, num_ws, w_dim] (detached)."""
        return self._compose().detach().clone()

    @contextlib.contextmanager
    def _noise(self) -> Iterator[None]:
        """With random noise: fresh noise each step, drawn from `seed` and the step number, so a run repeats
        exactly and a step's preview sees the noise its features saw."""
        if self.config.noise_mode != "random":
            yield
            return
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed * 100003 + self.steps_taken)
            yield

    def _features(
        self, ws: torch.Tensor, regions: list[tuple[int, int, int, int]] | None = None, trunk: Trunk | None = None
    ) -> torch.Tensor:
        """The supervised features of `ws`: the lean path of `local_synthesis` (with random noise, the
        generator's own forward, stopped at the supervised block, and no trunk: a resumed forward would draw
        other noise than a full one)."""
        if self.config.noise_mode != "random":
            return self._synth(ws, regions, self.config.noise_mode, trunk)
        with self._noise():
            _, feat = self.G.synthesis.run(ws, feature_res=self.feature_res, render_image=False, noise_mode="random")
        return feat

    def _preview(self, ws: torch.Tensor, trunk: Trunk | None, level: int) -> tuple[torch.Tensor, int]:
        """The image of `ws` (this step's noise) up to block `level` (the model's size: the full image), without
        autograd, resumed above the blocks the step computed in full (`trunk`); where those reach past `level`,
        their own skip image is the draft. Returns (image, the block it stops at)."""
        if trunk is not None and trunk.res == 0:
            trunk = None
        if trunk is not None and trunk.res > level:
            level = trunk.res
        draft = level if level < self.image_size else None
        with torch.no_grad(), self._noise():
            image = self.G.synthesis.run(
                ws.detach(), render_image=True, noise_mode=self.config.noise_mode, image_res=draft, trunk=trunk
            )[0]
        return image, level

    def render(self) -> torch.Tensor:
        """The full image [1, 3, H, W] of the current latent."""
        with torch.no_grad():
            return self.G.synthesis.run(self.ws, render_image=True, noise_mode=self.config.noise_mode)[0]

    def _check_points(self, points: Sequence[Sequence[float]], what: str) -> list[Point]:
        out = []
        top = self.image_size - 1
        for p in points:
            if len(p) != 2:
                raise EngineInputError(f"each {what} point needs an x and a y, got {p!r}")
            x, y = float(p[0]), float(p[1])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise EngineInputError(f"a {what} point is not a number: {p!r}")
            if not (0 <= x <= top and 0 <= y <= top):
                raise EngineInputError(
                    f"the {what} point ({x:g}, {y:g}) lies outside the {self.image_size}x{self.image_size} image"
                )
            out.append((x, y))
        return out

    def set_points(
        self,
        handles: Sequence[Sequence[float]],
        targets: Sequence[Sequence[float]],
        mask: torch.Tensor | None = None,
    ) -> None:
        """Set (or change, to resume) the point pairs and the mask; the latent and Adam's moments are kept.

        A handle that coincides (within half a pixel) with one already tracked keeps that handle's template,
        the feature it was first placed on; a new handle takes its template from the current image.
        The mask (1 = keep fixed) is compared with the features of the starting latent, so resuming never
        lets the kept region drift from the original.
        """
        new_handles = self._check_points(handles, "handle")
        new_targets = self._check_points(targets, "target")
        if not new_handles:
            raise EngineInputError("place at least one handle point")
        if len(new_handles) != len(new_targets):
            raise EngineInputError(f"{len(new_handles)} handle points but {len(new_targets)} targets")
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.float32)
            if tuple(mask.shape) != (self.image_size, self.image_size):
                raise EngineInputError(
                    f"the mask is {tuple(mask.shape)}, expected ({self.image_size}, {self.image_size})"
                )
        with torch.no_grad():
            feat = self._features(self._compose())
            if self._feat0 is None:
                self._feat0 = feat if self.steps_taken == 0 else self._features(self._ws0)
            templates = self._read_templates(feat, new_handles)
            kept = 0
            if self._templates is not None:
                for i, h in enumerate(new_handles):
                    for j, old in enumerate(self.handles):
                        if abs(h[0] - old[0]) <= 0.5 and abs(h[1] - old[1]) <= 0.5:
                            templates[i] = self._templates[j]
                            kept += 1
                            break
        self.handles, self.targets, self._templates = new_handles, new_targets, templates
        self._mask_region = MaskRegion.from_mask(mask, self._feat0) if mask_is_active(mask) else None
        # Every template was just read at its handle from the current latent: tracking there would return
        # the handles themselves (sub-pixel fitting could only add noise), so the next step skips it.
        self._fresh = kept == 0

    def _read_templates(self, feat: torch.Tensor, handles: list[Point]) -> torch.Tensor:
        pts = torch.tensor(handles, dtype=torch.float32, device=self.device)
        if self.config.tracking == "nearest":
            # Official: F0 at the rounded handle pixel.
            return sample_pixels(feat, torch.floor(pts + 0.5), self.image_size).clone()
        return sample_points(feat, pts, self.image_size).clone()

    # ------------------------------------------------------------------------------------------------------
    # Steps.

    def _regions(self) -> list[tuple[int, int, int, int]]:
        """Feature-map boxes (x0, y0, x1, y1) holding everything this step reads around each handle: the
        tracking window, the motion disk anywhere in it, one pixel ahead, bilinear neighbours, one spare."""
        f, size = self.feature_res, self.image_size
        reach = self.resolved.r2 + math.ceil(self.resolved.r1) + 4
        boxes = []
        for x, y in self.handles:
            box = []
            for c in (x, y):
                lo = max(math.floor(c + 0.5) - reach, 0)
                hi = min(math.floor(c + 0.5) + reach, size - 1)
                u_lo = max((lo + 0.5) * f / size - 0.5, 0.0)
                u_hi = (hi + 0.5) * f / size - 0.5
                box.append((max(math.floor(u_lo) - 1, 0), min(math.floor(u_hi) + 3, f)))
            boxes.append((box[0][0], box[1][0], box[0][1], box[1][1]))
        return boxes

    def step(self, render_preview: bool = False, draft: bool = False) -> StepReport:
        """Forward to the supervised block, track, and one Adam step unless every handle has arrived.

        With `render_preview` the report also carries the image of the latent this step started from (before its
        update), rendered without autograd; the step itself is the same as without, so previews never change
        where a drag goes. With `draft` (see `run`) that image may stop below the last block, as `self.previews`
        plans from this drag's timings, and may be left out (the report carries no image) when even the cheapest
        draft would slow the drag past the planner's budget; without, it is the full image (a kept frame)."""
        if self._templates is None:
            raise EngineInputError("set the handle and target points before dragging")
        started = time.perf_counter()
        if render_preview and draft:
            render_preview = self.previews.ask()  # left out when previews would slow the drag past their budget
        ws = self._compose()  # a new tensor: the update below leaves it as it is
        local = self.config.local_features and self._mask_region is None
        trunk = Trunk() if render_preview and self.config.noise_mode != "random" else None
        feat = self._features(ws, self._regions() if local else None, trunk)
        guarded = [False] * len(self.handles)
        if not ((self._fresh and self.config.tracking == "subpixel") or self._anchored):
            # The official code tracks on every step, the first included (where it finds the handle itself).
            tracks = track_points(feat.detach(), self._templates, self.handles, self.image_size, self._tracking)
            self.handles = [t.position for t in tracks]
            guarded = [t.guarded for t in tracks]
        self._fresh = False
        handles = torch.tensor(self.handles, dtype=torch.float32)
        targets = torch.tensor(self.targets, dtype=torch.float32)
        remaining = torch.linalg.norm(targets - handles, dim=1)
        done = bool((remaining <= self.resolved.stop_distance).all())
        terms = motion_loss(
            feat,
            handles,
            targets,
            self.resolved.r1,
            self.image_size,
            grid=self.config.disk_grid,
            min_distance=self.resolved.min_motion,
        )
        loss = terms.loss
        if self._mask_region is not None:
            loss = loss + self.config.mask_weight * mask_loss(feat, self._mask_region)
        if not done:
            self._opt.zero_grad(set_to_none=True)
            loss.backward(inputs=[self._w])  # gradients for the latent only, never the generator's weights
            self._opt.step()
        image = level = None
        if render_preview:
            self._sync()
            planned = self.previews.level if draft else self.image_size
            rendered = time.perf_counter()
            image, level = self._preview(ws, trunk, planned)
            self._sync()
            self.previews.preview_took(level, time.perf_counter() - rendered)
            self.previews.step_took(rendered - started)
        else:
            self._sync()
            self.previews.step_took(time.perf_counter() - started)
        self.steps_taken += 1
        return StepReport(
            step=self.steps_taken,
            handles=list(self.handles),
            targets=list(self.targets),
            loss=float(loss.detach()),
            done=done,
            image=image,
            image_res=level,
            guarded=guarded,
        )

    def _sync(self) -> None:
        """Wait for the GPU, so that the preview planner times work done rather than work queued."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _verify(self, report: StepReport, verify: Callable[[int, torch.Tensor], list[Point]]) -> StepReport:
        """Measure the handles; done only if every one is within the stop distance. Once refuted, the handles
        follow the measure: they are placed where it found their content and the tracker is not asked again."""
        full = report.image is not None and report.image_res == self.image_size
        image = report.image if full else self.render()  # never a draft: arrival is judged on the real picture
        measured = verify(report.step, image)
        stop = self.resolved.stop_distance
        arrived = all(math.dist(m, t) <= stop for m, t in zip(measured, self.targets, strict=True))
        if arrived and not self._anchored:
            return report
        top = self.image_size - 1.0
        self.handles = [(min(max(x, 0.0), top), min(max(y, 0.0), top)) for x, y in measured]
        if not arrived:
            self.reanchored += int(not self._anchored)
            self._anchored = True
        return replace(report, done=arrived, handles=list(self.handles))

    def run(
        self,
        on_step: Callable[[StepReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        preview_every: int = 0,
        preview_seconds: float | None = None,
        max_steps: int | None = None,
        verify: Callable[[int, torch.Tensor], list[Point]] | None = None,
        verify_every: int = 3,
        max_verifications: int = 100,
        draft_previews: bool = False,
    ) -> StepReport:
        """Step until every handle arrives, the step cap is reached, or `should_stop()` says so (checked
        before each step). A preview image rides on every `preview_every`-th report and/or on the first
        report after `preview_seconds`. With `draft_previews` (the daemon's default, wire `preview_detail`) they
        are planned by `self.previews`: drafts where a full one would slow the drag, some left out where even the
        cheapest would. When previews are on, the last report carries the final image, in full.

        `verify(step, image)` is an independent measure of where each handle's content is (model pixels). When
        the tracker claims arrival it is asked; where the content is still farther than the stop distance, the
        claim is refuted and from then on the handles follow the measure
        (every `verify_every` steps, tracking off): the tracker can slide ahead of a picture that smears rather
        than moves, and then motion supervision would push from the wrong place. At most `max_verifications`
        measures are taken (they cost a render and an optical flow each); the caller's final measure says how
        far the drag got."""
        cap = self.config.max_steps if max_steps is None else int(max_steps)
        last_preview = time.monotonic()
        report: StepReport | None = None
        checks = 0
        for i in range(cap):
            if should_stop is not None and should_stop():
                break
            now = time.monotonic()
            want = (preview_every > 0 and (i + 1) % preview_every == 0) or (
                preview_seconds is not None and now - last_preview >= preview_seconds
            )
            report = self.step(render_preview=want, draft=draft_previews)
            if want:
                last_preview = now
            self.tracker_claim = report.done
            due = report.done or (self._anchored and self.steps_taken % max(1, verify_every) == 0)
            if due and verify is not None and checks < max_verifications:
                checks += 1
                report = self._verify(report, verify)
            if on_step is not None:
                on_step(report)
            if report.done:
                break
        if report is None:
            report = StepReport(
                step=self.steps_taken, handles=list(self.handles), targets=list(self.targets), loss=math.nan, done=False
            )
        if (preview_every > 0 or preview_seconds is not None) and report.image is None:
            report = replace(
                report, image=self.render(), image_res=self.image_size
            )  # a copy: the callback's last report stays as it was
        return report

"""The drag optimiser against a loop that works as the official code does, plus cancellation and resume."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from draggan_daemon.engine.drag import DragConfig, DragOptimizer
from draggan_daemon.engine.errors import EngineInputError
from draggan_daemon.engine.generator import Generator, GeneratorConfig
from draggan_daemon.engine.local_synthesis import FeatureSynthesis, plan_crops
from draggan_daemon.engine.standin import random_generator

ROOT = Path(__file__).resolve().parent.parent


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference_module():
    spec = importlib.util.spec_from_file_location("reference_drag", ROOT / "benchmarks" / "reference_drag.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _generator(res: int = 256, seed: int = 0, conv_clamp: float | None = 256) -> Generator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(
        z_dim=32,
        w_dim=32,
        img_resolution=res,
        mapping_layers=2,
        channel_base=512,
        channel_max=32,
        conv_clamp=conv_clamp,
    )
    return random_generator(cfg, seed=seed, noise_strength=0.3)  # noise on, so the noise crops are exercised too


HANDLES = [(80.0, 120.0), (160.0, 48.0)]
TARGETS = [(112.0, 132.0), (140.0, 80.0)]


def _official_config(**kw) -> DragConfig:
    base = dict(r1=3, r2=6, tracking="nearest", jump_guard=False, stop_distance=2.0)
    base.update(kw)
    return DragConfig(**base)


@pytest.mark.parametrize(("res", "feature_res"), [(256, 128), (128, 64), (64, 64)])
def test_feature_synthesis_equals_the_generator(res: int, feature_res: int) -> None:
    G = _generator(res)
    ws = G.z_to_ws(1) + 0.3 * torch.randn(1, G.num_ws, G.w_dim)
    with torch.no_grad():
        _, full = G.synthesis.run(ws, feature_res=feature_res, render_image=False)
        synth = FeatureSynthesis(G, feature_res)
        assert (synth(ws) - full).abs().max() <= 1e-5 * full.abs().max()
        regions = [(3, 10, 19, 26), (feature_res - 16, feature_res - 20, feature_res, feature_res - 4)]
        assert plan_crops(feature_res, regions) is not None
        local = synth(ws, regions)
        for x0, y0, x1, y1 in regions:
            diff = (local[..., y0:y1, x0:x1] - full[..., y0:y1, x0:x1]).abs().max()
            assert diff <= 1e-5 * full.abs().max()


def test_feature_synthesis_crops_are_exact_wherever_the_regions_lie() -> None:
    """Crops of every size, odd and even corners, one to three of them, at the image edges: the margin
    (local_synthesis.MARGIN) holds the crops' false borders out of every region (it does not with one pixel less)."""
    import random

    rng = random.Random(7)
    G = _generator(256)
    ws = G.z_to_ws(2) + 0.3 * torch.randn(1, G.num_ws, G.w_dim)
    synth = FeatureSynthesis(G, 128)
    with torch.no_grad():
        _, full = G.synthesis.run(ws, feature_res=128, render_image=False)
        tried = 0
        while tried < 12:
            regions = []
            for _ in range(rng.choice([1, 2, 3])):
                side = rng.randint(6, 24)
                x0, y0 = rng.choice([0, rng.randint(0, 128 - side), 128 - side]), rng.randint(0, 128 - side)
                regions.append((x0, y0, x0 + side, y0 + side))
            if plan_crops(128, regions) is None:
                continue
            tried += 1
            local = synth(ws, regions)
            for x0, y0, x1, y1 in regions:
                diff = (local[..., y0:y1, x0:x1] - full[..., y0:y1, x0:x1]).abs().max()
                assert diff <= 1e-5 * full.abs().max(), (regions, float(diff))


@pytest.mark.parametrize("with_mask", [False, True])
def test_one_step_equals_the_official_loop(with_mask: bool) -> None:
    ref_mod = _reference_module()
    G = _generator()
    ws = G.z_to_ws(3)
    mask = None
    if with_mask:
        mask = torch.ones(256, 256)
        mask[:, :128] = 0
    ref = ref_mod.ReferenceDrag(G, ws, r1=3, r2=6, stop_distance=2.0)
    ours = DragOptimizer(G, ws, _official_config())
    ref.set_points(HANDLES, TARGETS, mask)
    ours.set_points(HANDLES, TARGETS, mask)
    before = ours.ws
    a, b = ref.step(), ours.step()
    update_ref = ref.current_ws() - before
    update_ours = ours.ws - before
    assert update_ref.abs().max() > 1e-3  # something moved (Adam's first step is about lr per element)
    assert (update_ours - update_ref).abs().max() < 1e-6
    assert b.loss == pytest.approx(a["loss"], rel=1e-4)
    assert b.handles == a["handles"]


def test_several_steps_track_like_the_official_loop() -> None:
    ref_mod = _reference_module()
    G = _generator()
    ws = G.z_to_ws(28)  # a picture on which the first handle moves within 5 steps (on most it stays 5 steps)
    ref = ref_mod.ReferenceDrag(G, ws, r1=3, r2=6, stop_distance=2.0)
    ours = DragOptimizer(G, ws, _official_config())
    ref.set_points(HANDLES, TARGETS)
    ours.set_points(HANDLES, TARGETS)
    for _ in range(5):
        a, b = ref.step(), ours.step()
        assert b.handles == a["handles"]
    assert (ours.ws - ref.current_ws()).abs().max() < 1e-5
    assert b.handles != [tuple(h) for h in HANDLES]  # the handles did move


def test_w_mode_optimises_one_shared_vector() -> None:
    G = _generator(64)
    ws = G.z_to_ws(5)
    opt = DragOptimizer(G, ws, DragConfig(latent_space="w", optimised_layers=4))
    opt.set_points([(20.0, 30.0)], [(30.0, 30.0)])
    for _ in range(3):
        opt.step()
    new = opt.ws
    assert torch.equal(new[:, 4:], ws[:, 4:])
    assert torch.equal(new[:, 0], new[:, 3]) and not torch.equal(new[:, 0], ws[:, 0])


def _run_steps(seed_ws: int, steps: int) -> tuple[torch.Tensor, list]:
    G = _generator(64)
    opt = DragOptimizer(G, G.z_to_ws(seed_ws), DragConfig())
    opt.set_points([(20.0, 30.0), (44.0, 40.0)], [(30.0, 26.0), (40.0, 50.0)])
    reports = [opt.step() for _ in range(steps)]
    return opt.ws, [r.handles for r in reports]


def test_deterministic_on_cpu() -> None:
    ws1, h1 = _run_steps(7, 6)
    ws2, h2 = _run_steps(7, 6)
    assert torch.equal(ws1, ws2) and h1 == h2


def test_cancellation_between_steps_and_callback() -> None:
    G = _generator(64)
    opt = DragOptimizer(G, G.z_to_ws(2), DragConfig(max_steps=50))
    opt.set_points([(20.0, 30.0)], [(40.0, 30.0)])
    seen = []
    report = opt.run(on_step=seen.append, should_stop=lambda: len(seen) >= 3)
    assert [r.step for r in seen] == [1, 2, 3]
    assert report.step == 3 and not report.done
    assert all(r.image is None for r in seen)


def test_previews_only_when_asked() -> None:
    G = _generator(64)
    opt = DragOptimizer(G, G.z_to_ws(2), DragConfig())
    opt.set_points([(20.0, 30.0)], [(40.0, 30.0)])
    seen = []
    final = opt.run(on_step=seen.append, preview_every=2, max_steps=5)
    assert [r.image is not None for r in seen] == [False, True, False, True, False]
    assert seen[1].image.shape == (1, 3, 64, 64)
    assert final.image is not None and torch.allclose(final.image, opt.render())


@pytest.mark.parametrize(
    "noise_mode, with_mask", [("const", False), ("const", True), ("random", False)], ids=["crops", "mask", "random"]
)
def test_previews_do_not_change_the_drag(noise_mode: str, with_mask: bool) -> None:
    """A preview on every step follows exactly the latents and handles of the same drag without previews, and
    each preview shows the latent its step started from (before that step's update)."""
    G = _generator(64)
    ws = G.z_to_ws(5)
    mask = None
    if with_mask:
        mask = torch.zeros(64, 64)
        mask[40:, :] = 1.0
    runs = {}
    for every in (0, 1):
        opt = DragOptimizer(G, ws, DragConfig(noise_mode=noise_mode, stop_distance=0.1))
        opt.set_points([(20.0, 30.0), (44.0, 20.0)], [(30.0, 26.0), (40.0, 30.0)], mask)
        reports, latents = [], []

        def on_step(r, opt=opt, reports=reports, latents=latents):
            reports.append(r)
            latents.append(opt.ws)

        opt.run(on_step=on_step, preview_every=every, max_steps=6)
        runs[every] = (reports, latents, opt)
    (plain, plain_ws, _), (shown, shown_ws, opt) = runs[0], runs[1]
    assert len(plain) == len(shown) == 6
    for a, b, wa, wb in zip(plain, shown, plain_ws, shown_ws, strict=True):
        assert a.image is None and b.image is not None
        assert torch.tensor(a.handles).sub(torch.tensor(b.handles)).abs().max() <= 1e-6
        assert (wa - wb).abs().max() <= 1e-6
    # The preview at step k is the image of the latent after step k - 1 (the start for k = 1).
    with torch.no_grad():
        for k, report in enumerate(shown):
            before = ws if k == 0 else shown_ws[k - 1]
            if noise_mode == "random":
                torch.manual_seed(opt.config.seed * 100003 + k)
            expected = G.synthesis.run(before, render_image=True, noise_mode=noise_mode)[0]
            assert (report.image - expected).abs().max() <= 1e-5


def test_resume_with_the_same_points_continues_exactly() -> None:
    """Stop after 3 steps, set the tracked handles again, continue: same as 6 uninterrupted steps."""
    G = _generator(64)
    ws = G.z_to_ws(4)
    targets = [(30.0, 26.0), (40.0, 50.0)]
    straight = DragOptimizer(G, ws, DragConfig())
    straight.set_points([(20.0, 30.0), (44.0, 40.0)], targets)
    for _ in range(6):
        straight.step()
    resumed = DragOptimizer(G, ws, DragConfig())
    resumed.set_points([(20.0, 30.0), (44.0, 40.0)], targets)
    resumed.run(max_steps=3)
    latent = resumed.ws
    resumed.set_points(resumed.handles, targets)
    assert torch.equal(resumed.ws, latent)  # set_points does not touch the latent
    resumed.run(max_steps=3)
    assert torch.equal(resumed.ws, straight.ws)
    assert resumed.handles == straight.handles


def test_resume_with_a_new_point_keeps_the_old_template_and_adam_state() -> None:
    G = _generator(64)
    opt = DragOptimizer(G, G.z_to_ws(4), DragConfig())
    opt.set_points([(20.0, 30.0)], [(30.0, 30.0)])
    opt.run(max_steps=4)
    state = next(iter(opt._opt.state.values()))
    assert int(state["step"]) == 4
    template = opt._templates[0].clone()
    opt.set_points([opt.handles[0], (50.0, 50.0)], [(32.0, 30.0), (45.0, 50.0)])
    assert torch.equal(opt._templates[0], template)
    report = opt.run(max_steps=2)
    assert int(state["step"]) == 6 and report.step == 6
    assert len(report.handles) == 2


def test_stops_when_handles_arrive() -> None:
    G = _generator(64)
    opt = DragOptimizer(G, G.z_to_ws(4), DragConfig())
    opt.set_points([(20.0, 30.0)], [(20.5, 30.0)])
    before = opt.ws
    report = opt.run()
    assert report.done and report.step == 1
    assert torch.equal(opt.ws, before)


@pytest.mark.parametrize(
    ("handles", "targets", "mask"),
    [
        ([], [], None),
        ([(1.0, 2.0)], [], None),
        ([(70.0, 2.0)], [(3.0, 4.0)], None),
        ([(1.0, 2.0)], [(3.0, float("nan"))], None),
        ([(1.0, 2.0)], [(3.0, 4.0)], torch.ones(32, 32)),
    ],
)
def test_bad_points_are_refused_in_plain_words(handles, targets, mask) -> None:
    G = _generator(64)
    opt = DragOptimizer(G, G.z_to_ws(0), DragConfig())
    with pytest.raises(EngineInputError):
        opt.set_points(handles, targets, mask)


def test_step_before_points_is_refused() -> None:
    G = _generator(64)
    with pytest.raises(EngineInputError):
        DragOptimizer(G, G.z_to_ws(0)).step()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_feature_synthesis_half_precision_blocks(dtype: torch.dtype) -> None:
    """The fp16/bf16 path (used on CUDA) agrees with the generator's own half-precision run."""
    torch.manual_seed(0)
    cfg = GeneratorConfig(
        z_dim=32, w_dim=32, img_resolution=128, channel_base=512, channel_max=32, num_fp16_res=3, conv_clamp=256
    )
    G = Generator(cfg).eval()
    ws = G.z_to_ws(1)
    G.synthesis.half_dtype = dtype  # what set_precision does on CUDA; CPU kernels stand in here
    try:
        with torch.no_grad():
            _, full = G.synthesis.run(ws, feature_res=128, render_image=False)
            synth = FeatureSynthesis(G, 128)
            ours, local = synth(ws), synth(ws, [(10, 10, 26, 26)])
    finally:
        G.synthesis.half_dtype = None
    tol = (0.01 if dtype == torch.float16 else 0.08) * float(full.abs().max())
    assert (ours - full).abs().max() < tol
    assert (local[..., 10:26, 10:26] - full[..., 10:26, 10:26]).abs().max() < tol


def test_default_learning_rate_scales_for_small_models() -> None:
    """The paper's 2e-3 from 256 px up; smaller models get proportionally more (8e-3 at 64 px)."""
    assert DragConfig().resolve(1024).lr == DragConfig().resolve(256).lr == pytest.approx(2e-3)
    assert DragConfig().resolve(128).lr == pytest.approx(4e-3)
    assert DragConfig().resolve(64).lr == pytest.approx(8e-3)
    assert DragConfig(lr=1e-3).resolve(64).lr == pytest.approx(1e-3)


def test_default_radii_keep_the_official_values_from_256_px_and_widen_below() -> None:
    assert [DragConfig().resolve(h).r1 for h in (1024, 512, 256, 128, 64)] == [6, 3, 2, 4, 4]
    assert DragConfig(r1=2.5).resolve(64).r1 == 2.5


def test_default_optimised_ws_are_the_official_six_from_128_px_and_fewer_below() -> None:
    assert [DragConfig().resolve(h).optimised_layers for h in (1024, 512, 256, 128, 64, 32)] == [6, 6, 6, 6, 4, 2]
    assert DragConfig(optimised_layers=9).resolve(64).optimised_layers == 9

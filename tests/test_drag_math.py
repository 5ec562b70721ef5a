"""The drag's pure math: sampling equals the official resize-then-index, tracking, motion and mask terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from draggan_daemon.engine.feature_sampling import resized_map, sample_pixels, sample_points
from draggan_daemon.engine.motion import MaskRegion, disk_pixels, mask_is_active, mask_loss, motion_loss
from draggan_daemon.engine.tracking import TrackingOptions, parabola_vertex, quadratic_vertex, track_points

pytestmark = pytest.mark.usefixtures("one_thread")


def _all_pixels(size: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float()


@pytest.mark.parametrize(("f", "size"), [(128, 512), (128, 256), (32, 64), (64, 64), (16, 64)])
def test_pixel_samples_equal_the_official_resized_map(f: int, size: int) -> None:
    torch.manual_seed(f + size)
    feat = torch.randn(1, 6, f, f)
    official = resized_map(feat, size)[0].reshape(6, -1).t()
    ours = sample_pixels(feat, _all_pixels(size), size)
    assert (ours - official).abs().max().item() < 1e-5


@pytest.mark.parametrize(("f", "size"), [(128, 512), (32, 64)])
def test_fractional_samples_equal_grid_sample_on_the_resized_map(f: int, size: int) -> None:
    """The official F(q + d): grid_sample(align_corners=True) on the resized map, zero outside the image."""
    torch.manual_seed(1)
    feat = torch.randn(1, 5, f, f, dtype=torch.float64)
    pts = torch.rand(4000, 2, dtype=torch.float64) * (size + 3) - 1.5  # also just outside the image
    grid = pts / (size - 1) * 2 - 1
    official = F.grid_sample(resized_map(feat, size), grid[None, None], align_corners=True)[0, :, 0].t()
    assert (sample_points(feat, pts, size) - official).abs().max().item() < 1e-9


def test_disk_pixels_match_the_official_meshgrid() -> None:
    size = 256
    xx, yy = torch.meshgrid(torch.linspace(0, size, size), torch.linspace(0, size, size), indexing="ij")
    for py, px, r in [(100, 37, 3), (0, 5, 2), (255, 255, 3), (128, 64, 6)]:
        rows, cols = torch.where(((xx - py) ** 2 + (yy - px) ** 2) ** 0.5 < r)
        official = {(int(c), int(r_)) for r_, c in zip(rows, cols, strict=True)}
        ours = {(int(x), int(y)) for x, y in disk_pixels((px, py), r, size, "official")}
        assert ours == official and len(ours) > 0
    centred = {(int(x), int(y)) for x, y in disk_pixels((10, 10), 2.0, 64, "centred")}
    assert centred == {(10 + dx, 10 + dy) for dx in range(-1, 2) for dy in range(-1, 2)}


def _smooth_field(shift: tuple[float, float], size: int = 48, channels: int = 24, seed: int = 0) -> torch.Tensor:
    """Feature map whose channels are low-frequency waves, translated by `shift` (x, y)."""
    g = torch.Generator().manual_seed(seed)
    freq = (torch.rand(channels, 2, generator=g) - 0.5) * 0.8
    phase = torch.rand(channels, generator=g) * 2 * math.pi
    idx = torch.arange(size, dtype=torch.float64)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    arg = freq[:, 0, None, None] * (xx - shift[0]) + freq[:, 1, None, None] * (yy - shift[1]) + phase[:, None, None]
    return torch.sin(arg).float()[None]


@pytest.mark.parametrize("shift", [(3.0, -2.0), (0.0, 4.0), (-5.0, 1.0)])
def test_nearest_tracking_follows_an_integer_shift(shift: tuple[float, float]) -> None:
    f0, f1 = _smooth_field((0, 0)), _smooth_field(shift)
    handle = (20.0, 25.0)
    template = sample_pixels(f0, torch.tensor([handle]), 48)
    opts = TrackingOptions(radius=6, subpixel=False, guard=False)
    (track,) = track_points(f1, template, [handle], 48, opts)
    assert track.position == (handle[0] + shift[0], handle[1] + shift[1])
    assert track.distance < 1e-4


@pytest.mark.parametrize("shift", [(0.3, -0.4), (1.6, 0.25), (-2.45, 1.1)])
def test_subpixel_tracking_recovers_fractional_shifts(shift: tuple[float, float]) -> None:
    f0, f1 = _smooth_field((0, 0)), _smooth_field(shift)
    handle = (22.0, 21.0)
    template = sample_pixels(f0, torch.tensor([handle]), 48)
    sub = track_points(f1, template, [handle], 48, TrackingOptions(radius=5, subpixel=True, guard=False))[0]
    near = track_points(f1, template, [handle], 48, TrackingOptions(radius=5, subpixel=False, guard=False))[0]
    truth = (handle[0] + shift[0], handle[1] + shift[1])
    err_sub = math.dist(sub.position, truth)
    err_near = math.dist(near.position, truth)
    assert err_sub < 0.08
    assert err_sub < err_near


def test_parabola_vertex() -> None:
    # f(t) = (t - 0.3)^2 sampled at -1, 0, 1.
    assert parabola_vertex(1.69, 0.09, 0.49) == pytest.approx(0.3)
    assert parabola_vertex(1.0, 1.0, 1.0) == 0.0  # flat: no preference
    assert parabola_vertex(0.0, 1.0, 5.0) == -0.5  # clamped to half a pixel


def _blob(center: tuple[float, float], size: int, channels: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    idx = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    g = torch.exp(-((xx - center[0]) ** 2 + (yy - center[1]) ** 2) / (2 * sigma**2))
    return channels[:, None, None] * g[None]


def test_guard_refuses_a_far_look_alike_that_is_not_clearly_better() -> None:
    """The handle's blob fades a little; an equally faded copy 8 px away matches marginally better.
    Nearest neighbour jumps to the copy; the guard keeps the handle on its own blob."""
    size = 40
    sig = torch.linspace(1, 2, 8)
    gen = torch.Generator().manual_seed(0)
    f0 = _blob((15, 20), size, sig)[None]
    template = sample_pixels(f0, torch.tensor([[15.0, 20.0]]), size)
    f1 = (_blob((16, 20), size, sig * 0.88) + _blob((24, 20), size, sig * 0.90))[None]
    f1 = f1 + 0.01 * torch.randn(f1.shape, generator=gen)
    official = track_points(f1, template, [(15.0, 20.0)], size, TrackingOptions(radius=12, subpixel=False, guard=False))
    guarded = track_points(f1, template, [(15.0, 20.0)], size, TrackingOptions(radius=12, subpixel=False, guard=True))
    assert official[0].position == (24.0, 20.0)
    assert guarded[0].position == (16.0, 20.0) and guarded[0].guarded
    # A far match that is clearly better (the content really moved) is still accepted.
    f2 = (_blob((16, 20), size, sig * 0.5) + _blob((24, 20), size, sig))[None]
    moved = track_points(f2, template, [(15.0, 20.0)], size, TrackingOptions(radius=12, subpixel=False, guard=True))
    assert moved[0].position == (24.0, 20.0) and not moved[0].guarded


def test_motion_gradient_moves_content_towards_the_target() -> None:
    size = 32
    feat = _blob((12, 16), size, torch.linspace(0.5, 1.5, 4), sigma=3.0)[None].requires_grad_(True)
    handles, targets = torch.tensor([[12.0, 16.0]]), torch.tensor([[22.0, 16.0]])
    terms = motion_loss(feat, handles, targets, 3, size, grid="centred")
    assert terms.moving == [True] and terms.loss.item() > 0
    terms.loss.backward()
    grad = feat.grad[0, 0]
    assert grad.abs().sum() > 0
    stepped = (feat - 2.0 * feat.grad).detach()[0, 0]
    xs = torch.arange(size, dtype=torch.float32)
    centroid = lambda m: float((m.sum(0) * xs).sum() / m.sum())  # noqa: E731
    assert centroid(stepped) > centroid(feat.detach()[0, 0]) + 0.01
    # Nothing changes far from the disk: gradients live around the handle only.
    assert grad[:, 20:].abs().max() == 0 and grad[:10].abs().max() == 0


def test_motion_loss_skips_handles_within_one_pixel() -> None:
    feat = torch.randn(1, 3, 16, 16, requires_grad=True)
    terms = motion_loss(feat, torch.tensor([[5.0, 5.0], [8.0, 8.0]]), torch.tensor([[5.5, 5.5], [12.0, 8.0]]), 2, 16)
    assert terms.moving == [False, True]
    single = motion_loss(feat, torch.tensor([[8.0, 8.0]]), torch.tensor([[12.0, 8.0]]), 2, 16)
    assert terms.loss.item() == pytest.approx(single.loss.item())


def test_mask_term_equals_the_official_l1_on_resized_maps() -> None:
    torch.manual_seed(3)
    f, size = 32, 64
    feat0 = torch.randn(1, 4, f, f)
    feat = (feat0 + 0.1 * torch.randn(1, 4, f, f)).requires_grad_(True)
    mask = torch.zeros(size, size)
    mask[5:40, 10:60] = 1
    official = F.l1_loss(resized_map(feat, size) * mask, resized_map(feat0, size) * mask)
    ours = mask_loss(feat, MaskRegion.from_mask(mask, feat0))
    assert ours.item() == pytest.approx(official.item(), rel=1e-5)
    g_ours = torch.autograd.grad(ours, feat)[0]
    g_official = torch.autograd.grad(official, feat)[0]
    assert torch.allclose(g_ours, g_official, atol=1e-9, rtol=1e-4)


def test_mask_term_applies_only_when_the_mask_has_both_values() -> None:
    assert not mask_is_active(None)
    assert not mask_is_active(torch.ones(8, 8))
    assert not mask_is_active(torch.zeros(8, 8))
    m = torch.ones(8, 8)
    m[2, 3] = 0
    assert mask_is_active(m)


def test_quadratic_vertex_finds_a_slanted_minimum() -> None:
    # f(x, y) = (x - 0.2)^2 + (y + 0.3)^2 + 0.8 (x - 0.2)(y + 0.3): anisotropic, slanted bowl.
    def f(x: float, y: float) -> float:
        return (x - 0.2) ** 2 + (y + 0.3) ** 2 + 0.8 * (x - 0.2) * (y + 0.3)

    patch = torch.tensor([[f(x, y) for x in (-1, 0, 1)] for y in (-1, 0, 1)])
    ox, oy = quadratic_vertex(patch)
    assert ox == pytest.approx(0.2, abs=1e-6) and oy == pytest.approx(-0.3, abs=1e-6)

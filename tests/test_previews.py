"""Issue 12, item 1: previews without autograd, from the blocks a step computed in full, and drafts when a full
preview would slow the drag (engine/previews.py, `SynthesisNetwork.run(image_res=..., trunk=...)`)."""

from __future__ import annotations

import daemons
import pytest
import torch
from draggan_daemon.engine.drag import DragConfig, DragOptimizer
from draggan_daemon.engine.generator import Trunk, upsample2d
from draggan_daemon.engine.previews import GROWTH, PreviewPlanner
from draggan_daemon.server.models import builtin_test_generator
from draggan_protocol import image_from_message
from test_daemon_support import client_for
from test_drag_engine import _generator


# ---------------------------------------------------------------- the planner
def test_the_planner_starts_cheapest_climbs_while_it_fits_and_drops_when_it_does_not() -> None:
    plan = PreviewPlanner.for_blocks([4, 8, 16, 32, 64, 128, 256], budget=0.5)
    assert plan.levels == [64, 128, 256] and plan.level == 64 and not plan.full
    plan.step_took(1.0)
    plan.preview_took(64, 0.1)  # 0.1 x GROWTH fits in half a step: one block up
    assert plan.level == 128
    plan.preview_took(128, 0.9)  # over half a step: back down
    assert plan.level == 64
    plan.preview_took(64, 0.1)  # 128 is known to cost too much now: stays
    assert plan.level == 64 and plan.cost_s[128] == pytest.approx(0.9)
    for _ in range(20):  # the drag gets slower (a larger mask, a busier machine): 128 fits again
        plan.step_took(4.0)
    plan.preview_took(64, 0.1)
    assert plan.level == 128
    plan.preview_took(128, 0.2)
    assert plan.level == 256 and plan.full
    plan.preview_took(256, 0.2)  # the top: stays
    assert plan.level == 256


def test_the_planner_never_goes_below_its_lowest_block_and_without_a_budget_is_always_full() -> None:
    plan = PreviewPlanner.for_blocks([4, 8, 16, 32, 64, 128], budget=0.5)
    plan.step_took(0.1)
    plan.preview_took(64, 5.0)
    assert plan.level == 64
    assert PreviewPlanner.for_blocks([4, 8, 16, 32], budget=0.5).levels == [32]  # a small model: only its own size
    full = PreviewPlanner.for_blocks([4, 8, 16, 32, 64, 128], budget=None)
    full.step_took(0.1)
    full.preview_took(128, 5.0)
    assert full.level == 128 and full.full
    assert GROWTH > 1


def test_where_even_the_cheapest_draft_costs_too_much_some_asked_for_previews_are_left_out() -> None:
    plan = PreviewPlanner.for_blocks([4, 8, 16, 32, 64, 128, 256], budget=0.5)
    assert plan.ask()  # nothing timed yet: drawn
    plan.step_took(1.0)
    plan.preview_took(64, 0.8)  # the cheapest block: 0.8 steps, over the budget of 0.5
    drawn = 0
    for _ in range(80):
        if plan.ask():
            drawn += 1
            plan.preview_took(plan.level, 0.8)
    assert plan.level == 64
    assert drawn * 0.8 <= 80 * 0.5 + 0.8 and drawn >= 80 * 0.5 / 0.8 - 2  # 5 of every 8: the budget, spent
    cheap = PreviewPlanner.for_blocks([4, 8, 16, 32, 64], budget=0.5)
    cheap.step_took(1.0)
    cheap.preview_took(64, 0.1)
    assert all(cheap.ask() for _ in range(20))  # within the budget: every one drawn
    full = PreviewPlanner.for_blocks([4, 8, 16, 32, 64], budget=None)
    full.step_took(0.1)
    full.preview_took(64, 5.0)
    assert all(full.ask() for _ in range(5))  # full previews are asked for in full: never left out


# ---------------------------------------------------------------- the synthesis
def test_a_draft_is_the_skip_image_of_its_block_up_sampled_the_generators_way() -> None:
    G = _generator(128)
    syn = G.synthesis
    ws = G.z_to_ws(3)
    with torch.no_grad():
        full = syn.run(ws)[0]
        x = img = None
        w = 0
        for res in syn.block_resolutions:
            block = syn.block(res)
            x = block.features(x, ws[:, w : w + block.num_conv], "const", torch.float32)
            w += block.num_conv
            img = block.rgb(x, img, ws[:, w])
            if res == 32:
                break
        by_hand = upsample2d(upsample2d(img, syn.b64.resample_filter), syn.b64.resample_filter)
        draft = syn.run(ws, image_res=32)[0]
    assert draft.shape == full.shape
    assert torch.allclose(draft, by_hand, atol=1e-6)
    assert not torch.allclose(draft, full, atol=1e-3)  # the finer blocks add something
    assert torch.equal(syn.run(ws, image_res=128)[0], full)


@pytest.mark.parametrize("with_mask", [False, True], ids=["crops", "mask"])
def test_a_preview_resumed_from_the_steps_full_blocks_equals_a_render_from_scratch(with_mask: bool) -> None:
    """The trunk holds the blocks the step computed in full (below the crops; with a mask, up to the supervised
    block) and nothing computed on crops."""
    G = _generator(256)
    ws = G.z_to_ws(5)
    opt = DragOptimizer(G, ws, DragConfig())
    mask = None
    if with_mask:
        mask = torch.zeros(256, 256)
        mask[128:, :] = 1.0
    opt.set_points([(80.0, 120.0), (160.0, 90.0)], [(100.0, 120.0), (160.0, 110.0)], mask)
    trunk = Trunk()
    local = not with_mask
    opt._features(opt._compose(), opt._regions() if local else None, trunk)
    assert trunk.res == (32 if local else opt.feature_res)
    assert not trunk.x.requires_grad and trunk.img.shape[-1] == trunk.res
    with torch.no_grad():
        for level in (64, 128, 256):
            if level < trunk.res:
                continue
            draft = None if level == 256 else level
            resumed = G.synthesis.run(ws, image_res=draft, trunk=trunk)[0]
            scratch = G.synthesis.run(ws, image_res=draft)[0]
            assert (resumed - scratch).abs().max() <= 5e-5, level  # fused vs activation-modulated: rounding


def test_draft_previews_show_the_latent_at_their_block_and_full_ones_the_whole_picture() -> None:
    G = _generator(256)
    ws = G.z_to_ws(2)
    for draft in (True, False):
        opt = DragOptimizer(G, ws, DragConfig())
        opt.set_points([(80.0, 120.0)], [(100.0, 120.0)])
        opt.previews.budget = 1e9  # everything fits: none left out, whatever this machine's speed
        before = opt.ws
        reports = [opt.step(render_preview=True, draft=draft) for _ in range(3)]
        first = reports[0]
        assert first.image_res == (64 if draft else 256)  # a drag's first draft is the cheapest block
        with torch.no_grad():
            expected = G.synthesis.run(before, image_res=first.image_res if draft else None)[0]
        assert (first.image - expected).abs().max() <= 5e-5
        assert all(r.image.shape == (1, 3, 256, 256) for r in reports)
        assert all(r.image_res in opt.previews.levels for r in reports)
    plain = DragOptimizer(G, ws, DragConfig())
    plain.set_points([(80.0, 120.0)], [(100.0, 120.0)])
    for _ in range(3):
        plain.step()
    assert torch.allclose(plain.ws, opt.ws, atol=1e-6)  # previews, drafts or not, never change the drag


# ---------------------------------------------------------------- the daemon
def test_the_daemon_says_which_block_a_preview_stops_at_and_full_means_full() -> None:
    with daemons.in_process([("t128", builtin_test_generator(128))]) as server, client_for(server) as c:
        sid = c.open_seed_session(seed=1)["session_id"]
        seen = {}
        for detail in ("draft", "full"):
            events = []
            c.drag(
                sid,
                [(40, 50, 48, 52)],
                params={"steps": 4},
                preview_every=1,
                preview_detail=detail,
                on_progress=events.append,
            )
            previews = [m for m in events if "preview" in m.content]
            assert len(previews) == 4 or (detail == "draft" and previews)  # a draft may be left out (budget)
            p = image_from_message(previews[0], "preview")
            assert (p.width, p.height) == (128, 128)
            seen[detail] = [m.content["preview_res"] for m in previews]
            assert [m.content["preview_draft"] for m in previews] == [r < 128 for r in seen[detail]]
            c.undo(sid)
        assert seen["draft"][0] == 64 and set(seen["draft"]) <= {64, 128}  # the first is always drawn
        assert seen["full"] == [128] * 4


def test_arrival_is_never_judged_on_a_draft() -> None:
    """The optimiser's arrival check gets the full picture of the latent even when the step's preview is a draft."""
    G = _generator(256)
    opt = DragOptimizer(G, G.z_to_ws(4), DragConfig(stop_distance=40.0))  # "arrived" at once: the check is asked
    opt.set_points([(80.0, 120.0)], [(100.0, 120.0)])
    opt.previews.levels, opt.previews.budget = [64], 1e9  # every preview a draft at 64 px, none left out
    seen = []

    def verify(step: int, image: torch.Tensor) -> list[tuple[float, float]]:
        with torch.no_grad():
            seen.append((image - G.synthesis.run(opt.ws)[0]).abs().max().item())
        return list(opt.targets)

    opt.run(preview_every=1, max_steps=3, verify=verify, verify_every=1, draft_previews=True)
    assert seen and max(seen) <= 1e-5, seen


def test_a_draft_previews_arrival_compares_drafts() -> None:
    """A draft is compared with the start picture's draft at the same block: the first preview shows the start
    latent, so its content has not moved at all (against the full start picture, the missing detail would read
    as motion)."""
    with daemons.in_process([("t128", builtin_test_generator(128))]) as server, client_for(server) as c:
        sid = c.open_seed_session(seed=2)["session_id"]
        events = []
        c.drag(sid, [(40, 50, 56, 52)], params={"steps": 2}, preview_every=1, on_progress=events.append)
        first = next(m.content for m in events if "preview" in m.content)
        assert first["preview_res"] == 64 and first["step"] == 1
        assert first["measured"] == [[40.0, 50.0]], first

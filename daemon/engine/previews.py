"""How detailed a drag's live previews can be without slowing the drag: the preview's block, from timings.

A plain drag step is cheap because it computes the large blocks only around the handles (`local_synthesis`); a
preview has to render the whole picture, which on a CPU costs several plain steps (`benchmarks/drag_speed.py
--preview-every 1 --full-previews`, figures in benchmarks/RESULTS.md), so previews every few steps would halve the
drag's speed. A preview may therefore be a draft: the synthesis stops at a lower block and its skip image is
up-sampled to full size (`SynthesisNetwork.run(image_res=...)`), the full picture without the finer blocks' detail.

The rule: previews cost at most `budget` plain steps each, on average (BUDGET 0.4: a preview every 5 steps keeps
≥ 90 % of the step rate, one asked on every step ≤ 1.5× a plain step, with room for what a preview costs beyond its
own time: the caches it empties for the next steps). The planner starts at the cheapest block, measures what
each preview and each plain step take, and moves one block up while the next block's cost (measured, else
estimated) fits and one down when the current one does not. Where even the cheapest block costs more (a large
model on a slow CPU), the cadence gives way too: each asked-for preview earns `budget` steps' worth of time, a
preview is drawn only when the time earned covers it, so some asked-for previews are left out rather than the
drag slowed. Where the hardware is fast enough (a GPU) previews reach full resolution after a few; the final
picture and a drag's kept frames are never drafts and never left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUDGET = 0.4  # a preview's average cost in plain steps
MIN_PREVIEW_RES = 64  # below this a draft shows too little to judge a drag by
GROWTH = 2.2  # a block's preview cost over the one below it, a guess until that block has been timed once
SMOOTHING = 0.3  # weight of a new timing in the running figures


@dataclass
class PreviewPlanner:
    """Which block the next preview stops at. `levels`: the candidate block resolutions, ascending, the last the
    full image; `budget`: a preview's cost in plain steps (None: always the full image)."""

    levels: list[int]
    budget: float | None = BUDGET
    step_s: float | None = None  # running plain-step time
    cost_s: dict[int, float] = field(default_factory=dict)  # running preview time per block
    index: int = 0
    credit_s: float = 0.0  # preview time earned by asked-for previews and not yet spent

    @classmethod
    def for_blocks(cls, block_resolutions: list[int], budget: float | None) -> PreviewPlanner:
        full = block_resolutions[-1]
        levels = [r for r in block_resolutions if r >= min(MIN_PREVIEW_RES, full)]
        return cls(levels, budget)

    @property
    def level(self) -> int:
        """The block the next preview stops at (the last level is the full image)."""
        return self.levels[-1] if self.budget is None else self.levels[self.index]

    @property
    def full(self) -> bool:
        return self.level == self.levels[-1]

    def ask(self) -> bool:
        """A preview is asked for: whether to draw it (at `level`) or leave it out to keep within the budget."""
        if self.budget is None or self.step_s is None:
            return True
        earned = self.budget * self.step_s
        cost = self.cost_s.get(self.level, 0.0)
        self.credit_s = min(self.credit_s + earned, max(cost, earned) + earned)  # no hoard for a later burst
        return self.credit_s >= cost

    def step_took(self, seconds: float) -> None:
        self.step_s = _smooth(self.step_s, seconds)

    def preview_took(self, level: int, seconds: float) -> None:
        self.credit_s = max(self.credit_s - seconds, 0.0)
        self.cost_s[level] = _smooth(self.cost_s.get(level), seconds)
        if self.budget is None or self.step_s is None or level != self.level:
            return
        allowed = self.budget * self.step_s
        if self.cost_s[level] > allowed and self.index > 0:
            self.index -= 1
        elif self.index + 1 < len(self.levels):
            up = self.levels[self.index + 1]
            if self.cost_s.get(up, self.cost_s[level] * GROWTH) <= allowed:
                self.index += 1


def _smooth(old: float | None, new: float) -> float:
    return new if old is None else (1 - SMOOTHING) * old + SMOOTHING * new

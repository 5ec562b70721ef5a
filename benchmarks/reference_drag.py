"""A drag loop that works the way the official DragGAN code does, to measure ours against.

Written for this project after XingangPan/DragGAN `viz/renderer.py` (`_render_drag_impl`): every step renders
the whole image together with the features, resizes the whole supervised feature map to image size, tracks
handles by nearest neighbour on that resized map (integer pixels), and applies motion supervision with
grid_sample on the resized map. Points are (x, y) here; the official code stores them as (row, col).

Used by benchmarks/drag_speed.py (timing) and the tests (one step of ours must equal one step of this).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from draggan_daemon.engine.generator import Generator


class ReferenceDrag:
    def __init__(
        self,
        G: Generator,
        ws: torch.Tensor,
        *,
        lr: float = 2e-3,
        w_plus: bool = True,
        optimised_layers: int = 6,
        r1: int = 3,
        r2: int = 12,
        lambda_mask: float = 20.0,
        feature_res: int | None = None,
        stop_distance: float | None = None,
    ):
        """`r1`, `r2` are in image pixels (the official code passes round(3/512 H) and round(12/512 H))."""
        self.G = G
        self.k = optimised_layers
        self.h = G.img_resolution
        self.feature_res = feature_res or G.feature_resolution()
        self.w0 = ws.detach().clone()
        self.w = (ws.detach().clone() if w_plus else ws[:, 0].detach().clone()).requires_grad_(True)
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.r1, self.r2, self.lambda_mask = r1, r2, lambda_mask
        self.stop_distance = stop_distance if stop_distance is not None else max(2 / 512 * self.h, 2)
        self.feat_refs: list[torch.Tensor] | None = None
        self.feat0_resize: torch.Tensor | None = None
        self.points: list[list[int]] = []  # (row, col)
        self.targets: list[list[float]] = []
        self.mask: torch.Tensor | None = None

    def set_points(self, handles, targets, mask=None) -> None:
        self.points = [[round(p[1]), round(p[0])] for p in handles]
        self.targets = [[t[1], t[0]] for t in targets]
        self.mask = mask
        self.feat_refs = None

    def current_ws(self) -> torch.Tensor:
        ws = self.w if self.w.dim() == 3 else self.w.unsqueeze(1).repeat(1, self.k, 1)
        return torch.cat([ws[:, : self.k], self.w0[:, self.k :]], dim=1)

    def step(self) -> dict:
        h = w = self.h
        ws = self.current_ws()
        img, feat = self.G.synthesis.run(ws, feature_res=self.feature_res, render_image=True)
        X = torch.linspace(0, h, h)
        Y = torch.linspace(0, w, w)
        xx, yy = torch.meshgrid(X, Y, indexing="ij")
        feat_resize = F.interpolate(feat, [h, w], mode="bilinear")
        if self.feat_refs is None:
            self.feat0_resize = F.interpolate(feat.detach(), [h, w], mode="bilinear")
            self.feat_refs = [self.feat0_resize[:, :, py, px] for py, px in self.points]

        with torch.no_grad():
            for j, point in enumerate(self.points):
                r = self.r2
                up, down = max(point[0] - r, 0), min(point[0] + r + 1, h)
                left, right = max(point[1] - r, 0), min(point[1] + r + 1, w)
                patch = feat_resize[:, :, up:down, left:right]
                dist = torch.linalg.norm(patch - self.feat_refs[j].reshape(1, -1, 1, 1), dim=1)
                _, idx = torch.min(dist.view(1, -1), -1)
                width = right - left
                self.points[j] = [idx.item() // width + up, idx.item() % width + left]

        loss_motion = 0
        stop = True
        dev = feat.device
        for j, point in enumerate(self.points):
            target = self.targets[j]
            direction = torch.Tensor([target[1] - point[1], target[0] - point[0]])
            if torch.linalg.norm(direction) > self.stop_distance:
                stop = False
            if torch.linalg.norm(direction) > 1:
                distance = ((xx.to(dev) - point[0]) ** 2 + (yy.to(dev) - point[1]) ** 2) ** 0.5
                relis, reljs = torch.where(distance < self.r1)
                direction = direction / (torch.linalg.norm(direction) + 1e-7)
                gridh = (relis + direction[1].to(dev)) / (h - 1) * 2 - 1
                gridw = (reljs + direction[0].to(dev)) / (w - 1) * 2 - 1
                grid = torch.stack([gridw, gridh], dim=-1).unsqueeze(0).unsqueeze(0)
                target_feat = F.grid_sample(feat_resize.float(), grid, align_corners=True).squeeze(2)
                loss_motion = loss_motion + F.l1_loss(feat_resize[:, :, relis, reljs].detach(), target_feat)

        loss = loss_motion
        if self.mask is not None and self.mask.min() == 0 and self.mask.max() == 1:
            m = self.mask.to(dev).unsqueeze(0).unsqueeze(0)
            loss = loss + self.lambda_mask * F.l1_loss(feat_resize * m, self.feat0_resize * m)
        if not stop:
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return {
            "handles": [(float(p[1]), float(p[0])) for p in self.points],
            "loss": float(loss.detach()) if torch.is_tensor(loss) else float(loss),
            "done": stop,
            "image": img.detach(),
        }

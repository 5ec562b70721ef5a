"""What each worker task does with the engine: prepare a session, invert, drag, composite a result.

Everything here runs on the worker thread. Inputs were validated by the socket thread (types, ranges, buffer
sizes); what is left to refuse is what only the engine can judge (a transparent region, a handle outside the
crop), and that comes back as EngineInputError with a plain-words message.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from draggan_daemon.engine.errors import EngineInputError

from .logs import event
from .models import ModelRegistry
from .pixels import editable_to_keep, frame_to_a8, frame_to_rgba, rgba_to_frame, tensor_to_rgba
from .sessions import EditState, Session

log = logging.getLogger("draggan.engine_ops")

Progress = Callable[[dict[str, Any], list[Any]], None]
ShouldStop = Callable[[], bool]


class FeatureUnavailable(RuntimeError):
    """An engine module this operation needs is not part of this build."""


def _optional_module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            return None
        raise


def inversion_available() -> bool:
    return _optional_module("draggan_daemon.engine.inversion") is not None


class EngineOps:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.device = registry.device

    # ------------------------------------------------------------------ open
    def open(self, s: Session, content: dict[str, Any], buffers: list[Any]) -> dict[str, Any]:
        G = self.registry.get(s.model_name)
        s.generator = G
        s.resolution = int(G.img_resolution)
        if s.source == "seed":
            ws = G.z_to_ws(s.seed, s.psi, device=self.device)
            with torch.no_grad():
                image = G.synthesis.run(ws, render_image=True)[0]
            s.layer = tensor_to_rgba(image)
            s.width = s.height = s.resolution
            s.push(EditState(ws=ws, generator=G, image=image))
        else:
            from draggan_daemon.engine.region import prepare_region

            layer_desc = content["layer"]
            s.layer = frame_to_rgba(buffers[layer_desc["buffer"]], s.width, s.height, layer_desc["format"])
            if "selection" in content:
                s.selection = frame_to_a8(buffers[content["selection"]["buffer"]], s.width, s.height)
            s.prepared = prepare_region(s.layer, s.resolution, s.region, s.selection)
        s.ready = True
        d = s.describe()
        d["busy"] = s.active_job is not None  # this open task itself is not work the client waits on
        return d

    # ------------------------------------------------------------------ invert
    def invert(self, s: Session, args: dict[str, Any], job_id: str, progress: Progress, stop: ShouldStop) -> dict:
        if s.source == "seed":
            return {"state": "done", "stages": [], "message": "a session started from a seed needs no inversion"}
        inv = _optional_module("draggan_daemon.engine.inversion")
        if inv is None:
            raise FeatureUnavailable("this daemon build cannot invert layers yet; open a session from a seed")
        preset = args.get("preset", "fast")
        config = _inversion_config(inv, preset, args.get("pti"), args.get("params") or {}, self.device)
        target = s.prepared.image.to(self.device)

        def on_progress(*a: Any, **kw: Any) -> None:
            info = _progress_fields(a, kw)
            progress({"job_id": job_id, "phase": "invert", **info}, [])

        t0 = time.perf_counter()
        result = inv.invert(s.generator, target, config, on_progress=on_progress, should_stop=stop)
        stages = [_plain(st) for st in (result.stages or [])]
        if getattr(result, "cancelled", False) or stop():
            return {"state": "cancelled", "stages": stages}
        G = result.generator if result.generator is not None else s.generator
        ws = result.ws.detach().to(self.device)
        with torch.no_grad():
            image = G.synthesis.run(ws, render_image=True)[0]
        s.history.clear()
        s.push(EditState(ws=ws, generator=G, prepared=s.prepared, image=image))
        s.inversion = {"preset": preset, "stages": stages, "seconds": round(time.perf_counter() - t0, 3)}
        event(log, "inverted", session=s.session_id, preset=preset, seconds=s.inversion["seconds"])
        return {"state": "done", **s.inversion}

    # ------------------------------------------------------------------ drag
    def drag(
        self, s: Session, args: dict[str, Any], buffers: list[Any], job_id: str, progress: Progress, stop: ShouldStop
    ) -> dict[str, Any]:
        from draggan_daemon.engine.drag import DragConfig, DragOptimizer

        if not s.inverted:
            inv_args = {"preset": args.get("invert_preset", "fast"), "params": args.get("invert_params") or {}}
            inv = self.invert(s, inv_args, job_id, progress, stop)
            if inv["state"] != "done":
                return inv
        state = s.current()
        assert state is not None
        res = s.resolution
        prepared = state.prepared
        # Points and mask into model space.
        handles = [(p[0], p[1]) for p in args["points"]]
        targets = [(p[2], p[3]) for p in args["points"]]
        mask: torch.Tensor | None = None
        if s.source == "seed":
            to_model = _identity
            to_layer = _identity
            if "mask" in args:
                free = frame_to_a8(buffers[args["mask"]["buffer"]], s.width, s.height).astype(np.float32) / 255.0
                mask = torch.from_numpy(1.0 - free)
        else:
            rmap = s.prepared.map
            to_model, to_layer = rmap.layer_to_model, rmap.model_to_layer
            if "mask" in args:
                editable = frame_to_a8(buffers[args["mask"]["buffer"]], s.width, s.height)
                keep = editable_to_keep(editable, rmap)
                if keep.min() > 0.999:
                    raise EngineInputError("the mask leaves nothing inside the region free to move")
                mask = torch.from_numpy(keep) if keep.max() > 1e-3 else None
                x, y, w, h = rmap.region
                prepared = dataclasses.replace(
                    s.prepared, mask=mask, selection=np.ascontiguousarray(editable[y : y + h, x : x + w])
                )
            elif prepared is not None:
                mask = prepared.mask
        h_m, t_m = to_model(handles), to_model(targets)
        for (hx, hy), (lx, ly) in zip(h_m, handles, strict=True):
            if not (0 <= hx <= res - 1 and 0 <= hy <= res - 1):
                raise EngineInputError(f"the handle at ({lx:g}, {ly:g}) lies outside the edited region")
        t_m = [(min(max(x, 0.0), res - 1.0), min(max(y, 0.0), res - 1.0)) for x, y in t_m]

        params = {k: v for k, v in (args.get("params") or {}).items() if v is not None}
        steps = int(params.pop("steps", 200))
        if "r2" in params:
            params["r2"] = max(1, int(round(params["r2"])))
        config = DragConfig(max_steps=steps, **params)
        G = state.generator
        opt = DragOptimizer(G, state.ws.clone(), config)
        opt.set_points(h_m, t_m, mask.to(self.device) if mask is not None else None)
        steps_run = 0
        after_cancel = 0  # steps that finished after the cancel arrived: at most the one in flight
        last_handles = handles

        def on_step(rep: Any) -> None:
            nonlocal steps_run, last_handles, after_cancel
            steps_run = rep.step
            after_cancel += int(stop())
            last_handles = [tuple(map(float, p)) for p in to_layer(rep.handles)]
            content: dict[str, Any] = {
                "job_id": job_id,
                "phase": "drag",
                "step": int(rep.step),
                "max_steps": steps,
                "handles": [list(p) for p in last_handles],
                "loss": float(rep.loss),
            }
            frames: list[Any] = []
            if rep.image is not None:
                content["preview"], frames = self._image_payload(s, rep.image, prepared, "changed", "RGBA8")
            progress(content, frames)

        final = opt.run(
            on_step=on_step,
            should_stop=stop,
            preview_every=int(args.get("preview_every", 0)),
            preview_seconds=args.get("preview_seconds"),
            max_steps=steps,
        )
        cancelled = stop() and not final.done
        if steps_run > 0:
            with torch.no_grad():
                image = opt.render()
            s.push(
                EditState(ws=opt.ws.detach().clone(), generator=G, prepared=prepared, image=image, handles=last_handles)
            )
        return {
            "state": "cancelled" if cancelled else "done",
            "steps": int(steps_run),
            "reached": bool(final.done),
            "handles": [list(p) for p in last_handles],
            "targets": [list(p) for p in targets],
            "loss": float(final.loss),
            "history_depth": max(0, len(s.history) - 1),
            **({"steps_after_cancel": after_cancel} if cancelled else {}),
        }

    # ------------------------------------------------------------------ result
    def result(self, s: Session, area: str, fmt: str) -> tuple[dict[str, Any], list[Any]]:
        state = s.current()
        if state is None:  # a layer session not yet inverted: nothing changed
            rect = (0, 0, s.width, s.height) if area == "layer" else tuple(s.prepared.map.region)
            x, y, w, h = rect
            pixels = np.ascontiguousarray(s.layer[y : y + h, x : x + w])
            return self._describe(s, pixels, rect, fmt)
        if state.image is None:
            with torch.no_grad():
                state.image = state.generator.synthesis.run(state.ws, render_image=True)[0]
        desc, frames = self._image_payload(s, state.image, state.prepared, area, fmt)
        return desc, frames

    def _image_payload(
        self, s: Session, image: torch.Tensor, prepared: Any, area: str, fmt: str
    ) -> tuple[dict[str, Any], list[Any]]:
        if s.source == "seed":
            return self._describe(s, tensor_to_rgba(image), (0, 0, s.width, s.height), fmt)
        from draggan_daemon.engine.region import composite

        full = composite(s.layer, image, prepared if prepared is not None else s.prepared)
        if area == "layer":
            return self._describe(s, full, (0, 0, s.width, s.height), fmt)
        x, y, w, h = s.prepared.map.region
        return self._describe(s, np.ascontiguousarray(full[y : y + h, x : x + w]), (x, y, w, h), fmt)

    def _describe(
        self, s: Session, pixels: np.ndarray, rect: tuple[int, int, int, int], fmt: str
    ) -> tuple[dict[str, Any], list[Any]]:
        x, y, w, h = (int(v) for v in rect)
        desc = {
            "width": w,
            "height": h,
            "format": fmt,
            "rect": [x, y, w, h],
            "offset": [s.offset[0] + x, s.offset[1] + y],
            "buffer": 0,
        }
        return desc, [rgba_to_frame(pixels, fmt)]


def _identity(points: Any) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points]


def _plain(obj: Any) -> Any:
    """Stage records (dataclasses or dicts) as msgpack-friendly dicts."""
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return float(obj)
    return str(obj)


def _progress_fields(a: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
    """Inversion progress reports, whatever shape the engine passes them in, as plain event fields."""
    fields: dict[str, Any] = {}
    for item in (*a, kw):
        p = _plain(item)
        if isinstance(p, dict):
            fields.update({k: v for k, v in p.items() if isinstance(v, (int, float, str, bool)) or v is None})
    return fields


def _inversion_config(inv: Any, preset: str, pti: bool | None, params: dict[str, Any], device: Any) -> Any:
    """The engine's InversionConfig for a request: a preset, PTI switched off when asked, step overrides."""
    overrides = {k: v for k, v in params.items() if v is not None}
    if pti is False:
        overrides["pti_steps"] = 0
    return inv.InversionConfig.from_preset(preset, **overrides)

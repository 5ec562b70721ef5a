"""What each worker task does with the engine: prepare a session, invert, drag, composite a result.

Everything here runs on the worker thread. Inputs were validated by the socket thread (types, ranges, buffer
sizes); what is left to refuse is what only the engine can judge (a transparent region, a handle outside the
crop), and that comes back as EngineInputError with a plain-words message.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from draggan_daemon.engine import inversion
from draggan_daemon.engine.arrival import arrival
from draggan_daemon.engine.drag import DragConfig
from draggan_daemon.engine.errors import EngineInputError
from draggan_daemon.engine.region import picture_u8
from draggan_daemon.engine.transfer import Rendered, estimate_motion, measure_points, render_layer
from draggan_protocol import parameters
from draggan_protocol.spec import DEFAULT_LIMITS

from .logs import event
from .models import ModelRegistry
from .pixels import editable_to_keep, frame_to_a8, frame_to_rgba, rgba_to_frame, tensor_to_rgba
from .sessions import EditState, FrameStore, Look, Session

log = logging.getLogger("draggan.engine_ops")

Progress = Callable[[dict[str, Any], list[Any]], None]
ShouldStop = Callable[[], bool]


class EngineOps:
    def __init__(self, registry: ModelRegistry, max_frames_bytes: int = DEFAULT_LIMITS["max_frames_bytes"]) -> None:
        self.registry = registry
        self.device = registry.device
        self.max_frames_bytes = int(max_frames_bytes)  # per session: the budget of a drag's kept frames

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
        preset = args.get("preset", "fast")
        config = _inversion_config(preset, args.get("pti"), args.get("params") or {})
        target = s.prepared.image.to(self.device)

        def on_progress(*a: Any, **kw: Any) -> None:
            info = _progress_fields(a, kw)
            progress({"job_id": job_id, "phase": "invert", **info}, [])

        t0 = time.perf_counter()
        result = inversion.invert(s.generator, target, config, on_progress=on_progress, should_stop=stop)
        stages = [_plain(st) for st in (result.stages or [])]
        if getattr(result, "cancelled", False) or stop():
            return {"state": "cancelled", "stages": stages}
        G = result.generator if result.generator is not None else s.generator
        s.frames = None  # a new fit: the frames of a drag from the old one go
        ws = result.ws.detach().to(self.device)
        with torch.no_grad():
            image = G.synthesis.run(ws, render_image=True)[0]
        s.history.clear()
        s.push(EditState(ws=ws, generator=G, prepared=s.prepared, image=image))
        s.inversion = {"preset": preset, "stages": stages, "seconds": round(time.perf_counter() - t0, 3)}
        event(log, "inverted", session=s.session_id, preset=preset, seconds=s.inversion["seconds"])
        return {"state": "done", **s.inversion}

    # ------------------------------------------------------------------ suggest
    def suggest(self, s: Session, args: dict[str, Any], job_id: str, progress: Progress, stop: ShouldStop) -> dict:
        """Every model the daemon serves, fitted briefly to the session's layer region, best first (engine.suggest)."""
        from draggan_daemon.engine.suggest import rank_models

        models = self.registry.describe()
        count = len(models)

        def on_model(i: int, name: str) -> None:
            progress({"job_id": job_id, "phase": "suggest", "step": i, "steps": count, "model": name}, [])

        def loader(name: str):
            return lambda: self.registry.get(name)

        t0 = time.perf_counter()
        fits = rank_models(
            s.layer,
            [(m["name"], loader(m["name"])) for m in models],
            steps=int(args.get("steps") or 30),
            selection=s.selection,
            region=s.region,
            on_model=on_model,
            should_stop=stop,
        )
        by_name = {m["name"]: m for m in models}
        ranking = []
        for fit in fits:
            row = fit.as_dict()
            row["domain"] = by_name.get(fit.name, {}).get("domain", "")
            ranking.append(row)
        state = "cancelled" if stop() else "done"
        return {"state": state, "ranking": ranking, "seconds": round(time.perf_counter() - t0, 2)}

    # ------------------------------------------------------------------ drag
    def drag(
        self, s: Session, args: dict[str, Any], buffers: list[Any], job_id: str, progress: Progress, stop: ShouldStop
    ) -> dict[str, Any]:
        from draggan_daemon.engine.drag import DragOptimizer

        fit: dict[str, Any] | None = None  # the fit this drag did first (a layer not fitted yet), said in job_done
        if not s.inverted:
            preset = args.get("invert_preset", parameters.default("invert_preset"))
            inv_args = {"preset": preset, "params": args.get("invert_params") or {}}
            inv = self.invert(s, inv_args, job_id, progress, stop)
            if inv["state"] != "done":
                return {**inv, "fit": {k: v for k, v in inv.items() if k != "state"}}
            fit = {k: v for k, v in inv.items() if k != "state"}
        state = s.current()
        assert state is not None
        res = s.resolution
        space = _drag_space(s, state, args, buffers)
        prepared, mask, to_layer = space.prepared, space.mask, space.to_layer
        handles, targets, h_m, t_m = space.handles, space.targets, space.h_m, space.t_m
        config, check_arrival = drag_config(args.get("params") or {})
        steps = config.max_steps

        pairs = tuple((hx, hy, tx, ty) for (hx, hy), (tx, ty) in zip(h_m, t_m, strict=True))
        output = str(args.get("output", parameters.default("output")))
        look = Look(output, (*state.look.focus, *pairs), args.get("new_content"))
        stop_model = config.resolve(res).stop_distance
        meter = _ArrivalMeter(self, s, state, prepared, look, handles, targets, h_m, to_layer, stop_model)
        # One arrival criterion: the tracker stops where the measure would accept arrival (in layer pixels).
        config.stop_distance = meter.stop_layer / meter.layer_per_model
        G = state.generator
        opt = DragOptimizer(G, state.ws.clone(), config)
        opt.set_points(h_m, t_m, mask.to(self.device) if mask is not None else None)
        steps_run = 0
        after_cancel = 0  # steps that finished after the cancel arrived: at most the one in flight
        last_handles = handles
        preview_every = int(args.get("preview_every", parameters.default("preview_every")))
        preview_seconds = args.get("preview_seconds")
        drafts = str(args.get("preview_detail", parameters.default("preview_detail"))) == "draft"
        s.frames = None  # the frames of an earlier drag go: those kept belong to the session's last drag
        keep = self._frame_store(s, args.get("frames"), output)
        last_preview = time.monotonic()
        before_last = after_last = opt.ws.detach().clone() if keep is not None else None

        def on_step(rep: Any) -> None:
            nonlocal steps_run, last_handles, after_cancel, last_preview, before_last, after_last
            steps_run = rep.step
            if keep is not None:  # the latent before and after this step: did the last step update it?
                before_last, after_last = after_last, opt.ws.detach().clone()
            after_cancel += int(stop())
            last_handles = [tuple(map(float, p)) for p in to_layer(rep.handles)]
            content = _step_content(job_id, rep, steps, last_handles)
            frames: list[Any] = []
            if rep.image is not None:
                # The picture of step k is the latent before step k's update: k − 1 updates (a frame's `step`).
                want_frame = keep is not None and keep.wants(rep.step - 1)
                if keep is None:
                    want_preview = True  # the engine rendered it for a preview
                else:  # the engine renders every step for the frames; previews keep their own schedule
                    now = time.monotonic()
                    want_preview = (preview_every > 0 and rep.step % preview_every == 0) or (
                        preview_seconds is not None and now - last_preview >= preview_seconds
                    )
                    if want_preview:
                        last_preview = now
                if want_frame or want_preview:
                    rendered, report = meter.at(rep.step, rep.image, render=True, level=rep.image_res)
                    if want_frame:
                        keep.add(rep.step - 1, self._changed(s, rendered.layer))
                    if want_preview:
                        content.update(report)
                        content["preview"], frames = self._layer_payload(s, rendered.layer, "changed", "RGBA8")
                        content["preview_res"] = int(rep.image_res or res)
                        content["preview_draft"] = content["preview_res"] < res  # 2.2: what a client labels
            progress(content, frames)

        final = opt.run(
            on_step=on_step,
            should_stop=stop,
            preview_every=1 if keep is not None else preview_every,
            preview_seconds=None if keep is not None else preview_seconds,
            max_steps=steps,
            verify=meter.verify if check_arrival else None,
            draft_previews=drafts and keep is None,  # kept frames are the animation: always in full
        )
        cancelled = stop() and not final.done
        outcome = meter.unmoved()
        if steps_run > 0:
            with torch.no_grad():
                image = opt.render()
            s.push(
                EditState(
                    ws=opt.ws.detach().clone(),
                    generator=G,
                    prepared=prepared,
                    image=image,
                    handles=last_handles,
                    look=look,
                )
            )
            # the latent after the last update, measured anew (and, when frames are kept, pictured: the last frame)
            rendered, outcome = meter.at(_FINAL, image, render=keep is not None)
            if keep is not None:
                # a step that finds every handle arrived makes no update: the result is that step's own picture
                same = before_last is not None and torch.equal(before_last, opt.ws.detach())
                keep.add(steps_run - int(same), self._changed(s, rendered.layer), final=True)
        if keep is not None and len(keep):
            s.frames = keep
        return {
            "state": "cancelled" if cancelled else "done",
            "steps": int(steps_run),
            **outcome,
            "tracker_reached": bool(opt.tracker_claim),
            "reanchored": int(opt.reanchored),
            "handles": [list(p) for p in last_handles],
            "targets": [list(p) for p in targets],
            "loss": float(final.loss),
            "history_depth": max(0, len(s.history) - 1),
            **({"steps_after_cancel": after_cancel} if cancelled else {}),
            **({"fit": fit} if fit is not None else {}),
            **({"frames": s.frames.describe()} if keep is not None and s.frames is keep else {}),
        }

    def _frame_store(self, s: Session, ask: dict[str, Any] | None, output: str) -> FrameStore | None:
        """The store for a drag's frames when the request asks for them (`frames` {every, max_bytes})."""
        if not ask:
            return None
        budget = min(int(ask.get("max_bytes") or self.max_frames_bytes), self.max_frames_bytes)
        x, y, w, h = (0, 0, s.width, s.height) if s.prepared is None else s.prepared.map.region
        return FrameStore(int(ask.get("every", 1)), budget, (x, y, w, h), output)

    def _changed(self, s: Session, full: np.ndarray) -> np.ndarray:
        """The changed rectangle of a layer picture (what previews, frames and get_result `changed` carry)."""
        if s.prepared is None:
            return full
        x, y, w, h = s.prepared.map.region
        return np.ascontiguousarray(full[y : y + h, x : x + w])

    # ------------------------------------------------------------------ result
    def result(self, s: Session, area: str, fmt: str, output: str | None = None) -> tuple[dict[str, Any], list[Any]]:
        state = s.current()
        if state is None:  # a layer session not yet inverted: nothing changed
            rect = (0, 0, s.width, s.height) if area == "layer" else tuple(s.prepared.map.region)
            x, y, w, h = rect
            pixels = np.ascontiguousarray(s.layer[y : y + h, x : x + w])
            return self._describe(s, pixels, rect, fmt)
        look = state.look if output is None else dataclasses.replace(state.look, output=output)
        rendered = self.picture(s, _rendered_image(state), state.prepared, look)
        return self._layer_payload(s, rendered.layer, area, fmt)

    def picture(
        self,
        s: Session,
        image: torch.Tensor,
        prepared: Any,
        look: Look,
        level: int | None = None,
    ) -> Rendered:
        """The session's layer as it looks with generator picture `image`, made as `look` says. A draft `image`
        (stopped at block `level`, see engine/previews.py) is compared with the fitted picture's draft at the same
        block, so the motion read from the two is the drag's, not the missing detail's."""
        if s.source == "seed":  # the "layer" is the generator's own picture
            return Rendered(tensor_to_rgba(image), "generator", None, None)
        prepared = prepared if prepared is not None else s.prepared
        res = s.resolution
        fitted = picture_u8(_rendered_image(s.history[0], level), res)
        return render_layer(
            s.layer,
            fitted,
            picture_u8(image, res),
            prepared,
            look.output,
            focus=look.focus,
            new_content=look.new_content,
        )

    def _layer_payload(self, s: Session, full: np.ndarray, area: str, fmt: str) -> tuple[dict[str, Any], list[Any]]:
        if area == "layer" or s.prepared is None:
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


def drag_config(params: dict[str, Any]) -> tuple[DragConfig, bool]:
    """The engine's DragConfig for a drag request's `params`, and whether arrival is checked by the measure.

    The request's preset (`params.preset`) gives the values the request leaves out; automatic values (None, a
    learning rate of 0) are left to DragConfig, which works them out by model size with the preset's rules.
    """
    values, preset = parameters.with_preset(params)
    steps = int(values.pop("steps", parameters.default("steps")))
    check_arrival = bool(values.pop("measured_arrival", parameters.default("measured_arrival")))
    if "r2" in values:
        values["r2"] = max(1, int(round(values["r2"])))
    return DragConfig(max_steps=steps, scaling=preset.scaling, **values), check_arrival


@dataclasses.dataclass
class _DragSpace:
    """A drag request's points and mask in the model's pixels, and the way back to the layer's."""

    prepared: Any  # the region the drag edits (with the request's mask, if any)
    handles: list[tuple[float, float]]  # layer pixels, as asked
    targets: list[tuple[float, float]]
    h_m: list[tuple[float, float]]  # model pixels
    t_m: list[tuple[float, float]]  # model pixels, clamped onto the picture
    to_layer: Any  # model pixels -> layer pixels
    mask: torch.Tensor | None  # 1 = keep, in model pixels (None: nothing held)


def _drag_space(s: Session, state: EditState, args: dict[str, Any], buffers: list[Any]) -> _DragSpace:
    """Points and mask into model space; a handle off the edited region is an EngineInputError."""
    res = s.resolution
    prepared = state.prepared
    handles = [(p[0], p[1]) for p in args["points"]]
    targets = [(p[2], p[3]) for p in args["points"]]
    mask: torch.Tensor | None = None
    if s.source == "seed":
        to_model = to_layer = _identity
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
    return _DragSpace(prepared, handles, targets, h_m, t_m, to_layer, mask)


def _step_content(job_id: str, rep: Any, max_steps: int, handles: list[tuple[float, float]]) -> dict[str, Any]:
    """A drag step's progress event, before any preview or arrival fields (PROTOCOL.md §6, drag)."""
    return {
        "job_id": job_id,
        "phase": "drag",
        "step": int(rep.step),
        "max_steps": max_steps,
        "handles": [list(p) for p in handles],
        "loss": float(rep.loss),
    }


_FINAL = -1  # cache key of the final picture (step numbers key the pictures seen during the drag)


def _rendered_image(state: EditState, level: int | None = None) -> torch.Tensor:
    """The picture of a history state (cached); with `level` below the model's size, its draft at that block."""
    syn = state.generator.synthesis
    if level is not None and level < syn.img_resolution:
        if level not in state.drafts:
            with torch.no_grad():
                state.drafts[level] = syn.run(state.ws, render_image=True, image_res=level)[0]
        return state.drafts[level]
    if state.image is None:
        with torch.no_grad():
            state.image = syn.run(state.ws, render_image=True)[0]
    return state.image


class _ArrivalMeter:
    """One drag's pictures and measured arrival: the motion from the drag's start picture to a step's picture says
    where the content under each start handle went (the tracker is not asked). Caches by step, so a preview, the
    optimiser's arrival check and the final report of one step share one motion estimate."""

    def __init__(
        self,
        ops: EngineOps,
        s: Session,
        start: EditState,
        prepared: Any,
        look: Look,
        handles: list[tuple[float, float]],
        targets: list[tuple[float, float]],
        handles_model: list[tuple[float, float]],
        to_layer: Callable[[Any], list[tuple[float, float]]],
        stop_model: float,
    ) -> None:
        self.ops, self.s, self.prepared, self.look = ops, s, prepared, look
        self.handles, self.targets, self.handles_model, self.to_layer = handles, targets, handles_model, to_layer
        self.res = s.resolution
        self.start = start
        self.start_pic = picture_u8(_rendered_image(start), self.res)
        # The session's fitted picture is the transfer's reference; when this drag starts there, one field serves both.
        self.same_start = start is s.history[0]
        scale = 1.0 if s.source == "seed" else s.prepared.map.side / self.res
        self.layer_per_model = scale
        self.stop_layer = self._stop_layer(stop_model)
        self._cache: dict[int, tuple[Rendered | None, list[tuple[float, float]], str | None]] = {}

    def _stop_layer(self, stop_model: float) -> float:
        """Arrival tolerance in layer pixels: the drag's stop distance scaled to the layer, but never more than a
        quarter of the shortest asked move (one model pixel is 5 layer pixels on a 320-px crop of a 64-px model,
        and "reached" must not mean "moved 7 of 12 px"), and never under one layer pixel."""
        asked = [math.dist(h, t) for h, t in zip(self.handles, self.targets, strict=True)]
        moving = [a for a in asked if a > 0]
        stop = stop_model * self.layer_per_model
        if moving:
            stop = min(stop, 0.25 * min(moving))
        return max(1.0, stop) if stop_model > 0 else 0.0

    def _measure(
        self, step: int, image: torch.Tensor, render: bool, level: int | None = None
    ) -> tuple[Rendered | None, list, str | None]:
        level = None if level is None or level >= self.res else level
        key = (step, level)
        hit = self._cache.get(key)
        if hit is not None and (hit[0] is not None or not render):
            return hit
        rendered = self.ops.picture(self.s, image, self.prepared, self.look, level) if render else None
        motion = rendered.motion if rendered is not None and self.same_start else None
        if motion is None:
            keep = None if self.prepared is None or self.prepared.mask is None else self.prepared.mask.cpu().numpy()
            start = self.start_pic if level is None else picture_u8(_rendered_image(self.start, level), self.res)
            motion = estimate_motion(start, picture_u8(image, self.res), keep=keep, focus=self.look.focus)
        measured = measure_points(motion, self.handles_model)
        fallback = rendered.fallback if rendered is not None else None
        self._cache = {key: (rendered, measured, fallback)}
        return self._cache[key]

    def verify(self, step: int, image: torch.Tensor) -> list[tuple[float, float]]:
        """Measured handle positions in model pixels (the optimiser's arrival check)."""
        return self._measure(step, image, render=False)[1]

    def at(
        self, step: int, image: torch.Tensor, render: bool, level: int | None = None
    ) -> tuple[Rendered | None, dict[str, Any]]:
        """(the layer picture when `render`, the arrival fields) at a step; `level`: the block a draft stops at."""
        rendered, measured, fallback = self._measure(step, image, render, level)
        return rendered, self._fields(measured, rendered.output if rendered else self.look.output, fallback)

    def unmoved(self) -> dict[str, Any]:
        return self._fields(list(self.handles_model), self.look.output, None)

    def _fields(self, measured_model: list, output: str, fallback: str | None) -> dict[str, Any]:
        report = arrival(self.handles, self.targets, self.to_layer(measured_model), self.stop_layer)
        fields = {**report.fields(), "reached": report.reached, "output": output}
        if fallback:
            fields["fallback"] = fallback
        return fields


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


def _inversion_config(preset: str, pti: bool | None, params: dict[str, Any]) -> inversion.InversionConfig:
    """The engine's InversionConfig for a request: a preset, PTI switched off when asked, step overrides."""
    overrides = {k: v for k, v in params.items() if v is not None}
    if pti is False:
        overrides["pti_steps"] = 0
    return inversion.InversionConfig.from_preset(preset, **overrides)

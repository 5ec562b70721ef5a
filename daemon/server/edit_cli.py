"""`draggan edit IN.png --drag X1,Y1:X2,Y2 [--drag ...] [--mask M.png] -o OUT.png`: a headless client.

Talks to the running daemon (found through its connection file) or, when none answers, starts one inside this
process on a private port. Prints a progress bar on stderr; writes the whole edited layer as an RGBA PNG, and
with `--frames out.gif|out.webp|DIR/` the drag's way there as an animation or numbered PNGs (drag `frames`,
PROTOCOL.md §6).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from draggan_protocol import Client, DaemonError, DaemonUnreachable, arrival_text, drag_request, fallback_text
from draggan_protocol import parameters as table
from draggan_protocol.jobs import Job
from draggan_protocol.progress import plural


def parse_pair(text: str) -> tuple[float, float, float, float]:
    try:
        a, b = text.split(":")
        x1, y1 = (float(v) for v in a.split(","))
        x2, y2 = (float(v) for v in b.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X1,Y1:X2,Y2 (handle:target), got {text!r}") from None
    return x1, y1, x2, y2


def parse_rect(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H, got {text!r}") from None
    return x, y, w, h


def parse_setting(text: str) -> tuple[str, Any]:
    """FIELD=VALUE of `--set`: any field of the drag parameter table, its value read by the table's kind and
    checked against its range (a clear error names the field and what it accepts)."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    if name not in table.BY_NAME:
        raise argparse.ArgumentTypeError(f"no drag field {name!r}; the fields are: {', '.join(table.names())}")
    try:
        return name, table.parse(name, value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _help(name: str) -> str:
    """An option's help: the table's own words, what it accepts and its default (% escaped for argparse)."""
    p = table.get(name)
    default = "" if p.default is None else f"; default {p.default}"
    return f"{p.help} ({table.describe_range(name)}{default})".replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="draggan edit", description="Drag points on an image through the daemon.")
    p.add_argument("input", help="input image (PNG or anything Pillow reads)")
    p.add_argument(
        "--drag",
        action="append",
        type=parse_pair,
        required=True,
        metavar="X1,Y1:X2,Y2",
        help="move the point X1,Y1 to X2,Y2 (image pixels); repeatable",
    )
    p.add_argument("--mask", help="grey image of the same size: white = may change, black = keep fixed")
    p.add_argument("--region", type=parse_rect, metavar="X,Y,W,H", help="edit only this rectangle (default: all)")
    p.add_argument(
        "--preset",
        choices=table.get("preset").choices,
        help=_help("preset") + "; the options below and --set win over the preset's values",
    )
    p.add_argument("--steps", type=int, default=table.default("steps"), help=_help("steps"))
    p.add_argument("--lr", type=float, help=_help("lr"))
    p.add_argument("--mask-weight", type=float, help=_help("mask_weight"))
    p.add_argument(
        "--set",
        action="append",
        type=parse_setting,
        default=[],
        metavar="FIELD=VALUE",
        help="set a drag field by its wire name (PROTOCOL.md §6, drag), 'auto' for the daemon's choice where it "
        "has one; repeatable, wins over the options above; a value out of range is refused with the field's "
        f"range. Fields: {', '.join(table.names())}",
    )
    p.add_argument(
        "--invert-preset",
        choices=table.get("invert_preset").choices,
        default=table.default("invert_preset"),
        help=_help("invert_preset"),
    )
    p.add_argument(
        "--invert-steps",
        type=int,
        metavar="N",
        help="steps per inversion stage (W, W+, pivotal tuning), overriding the preset",
    )
    p.add_argument("--model", help="model name (see the daemon's list); default: the daemon's default")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument(
        "--output-mode",
        choices=table.get("output").choices,
        default=table.default("output"),
        help=_help("output"),
    )
    p.add_argument(
        "--frames",
        metavar="OUT.gif|OUT.webp|DIR/",
        help="also write the drag's frames (every --frame-every steps, and the result's): an animated GIF or WebP, "
        "or numbered PNGs (frame_0001.png ...) in a folder (a path ending in / or an existing folder)",
    )
    p.add_argument("--frame-every", type=int, default=1, metavar="K", help="keep a frame every K steps (default 1)")
    p.add_argument("--frame-ms", type=int, default=80, metavar="MS", help="each frame's time in the animation (80)")
    p.add_argument("--connection-file", help="daemon connection file (default: the standard location)")
    p.add_argument("--in-process", action="store_true", help="always start a private daemon in this process")
    p.add_argument("--builtin-test-model", action="store_true", help="with an in-process daemon: the test model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="daemon logs (with an in-process daemon)")
    return p


def drag_fields(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the drag's `params`, the request's own table fields) from the options: --preset, --steps, --lr and
    --mask-weight, then each --set in order (a later one wins). A --set of an automatic value (auto) leaves
    the field out, to the preset or the daemon."""
    params: dict[str, Any] = {"steps": args.steps}
    if args.preset is not None:
        params["preset"] = args.preset
    if args.lr is not None:
        params["lr"] = args.lr
    if args.mask_weight is not None:
        params["mask_weight"] = args.mask_weight
    request: dict[str, Any] = {}
    for name, value in args.set:
        if name == "output":
            args.output_mode = value
        elif name == "invert_preset":
            args.invert_preset = value
        else:
            into = params if table.get(name).place == table.PARAMS else request
            into.pop(name, None)
            if not table.get(name).is_automatic(value) or table.get(name).nullable:
                into[name] = value
    return params, request


ANIMATIONS = (".gif", ".webp")


def frames_target(path: str) -> str:
    """What `--frames PATH` writes: 'dir' (numbered PNGs), 'gif' or 'webp'; SystemExit for anything else."""
    if path.endswith(("/", "\\")) or Path(path).is_dir():
        return "dir"
    suffix = Path(path).suffix.lower()
    if suffix in ANIMATIONS:
        return suffix[1:]
    raise SystemExit(f"draggan edit: --frames takes OUT.gif, OUT.webp or a folder ending in /, not {path!r}")


def write_frames(path: str, layer: Any, frames: list[Any], frame_ms: int) -> list[Path]:
    """Each frame pasted into the whole layer (outside its rectangle the layer's own pixels), written as `path`
    says (see frames_target). Returns the files written."""
    from PIL import Image

    pictures = []
    for f in frames:
        picture = layer.copy()
        x, y = f.rect[0], f.rect[1]
        picture.paste(Image.frombytes("RGBA", (f.width, f.height), f.pixels), (x, y))
        pictures.append(picture)
    kind = frames_target(path)
    if kind == "dir":
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / f"frame_{i + 1:04d}.png" for i in range(len(pictures))]
        for picture, name in zip(pictures, written, strict=True):
            picture.save(name)
        return written
    first, rest = pictures[0], pictures[1:]
    options: dict[str, Any] = {"save_all": True, "append_images": rest, "duration": max(1, frame_ms), "loop": 0}
    if kind == "gif":
        options["disposal"] = 2  # each frame replaces the last (the layer may be transparent)
    else:
        options["lossless"] = True
    first.save(path, **options)
    return [Path(path)]


class ProgressBar:
    """One line on stderr: the client core's fraction of the whole job (fit and drag on one bar) and its words."""

    WIDTH = 30

    def __init__(self, enabled: bool, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._last = 0.0

    def show(self, job: Job, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.WIDTH * min(max(job.fraction, 0.0), 1.0))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r[{bar}] {int(100 * job.fraction):3d}% {job.text}"[:160].ljust(100))
        self.stream.flush()

    def end(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _connect(args: argparse.Namespace) -> tuple[Client, Any]:
    """A client for a running daemon, else for one started here (returned second, to stop at the end)."""
    if not args.in_process:
        try:
            client = Client.connect(args.connection_file, client_name="draggan-edit")
            try:
                client.hello(timeout=3.0)
                return client, None
            except DaemonUnreachable:
                client.close()
        except (FileNotFoundError, ValueError):
            pass
        if args.connection_file:
            raise SystemExit(f"draggan edit: no daemon answers at {args.connection_file}")
    from draggan_protocol.signing import new_key

    from .serve_cli import build_registry
    from .server import DaemonServer, ServerConfig

    ns = argparse.Namespace(model=[], models_dir=None, builtin_test_model=args.builtin_test_model, no_bundled=False)
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    registry = build_registry(ns, device)
    key = new_key().hex().encode()
    server = DaemonServer(ServerConfig(key=key), registry)
    server.start()
    print(
        f"draggan edit: no running daemon found; started one in this process (model {registry.default}, {device})",
        file=sys.stderr,
    )
    client = Client(server.endpoint, key, client_name="draggan-edit")
    client.hello()
    return client, server


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from PIL import Image

    from .logs import setup_logging

    setup_logging(args.verbose, level=None if args.verbose else logging.WARNING)

    try:
        img = Image.open(args.input)
        img.load()
    except (OSError, ValueError) as exc:
        print(f"draggan edit: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    img = img.convert("RGBA")
    mask_bytes = None
    if args.mask:
        mask = Image.open(args.mask).convert("L")
        if mask.size != img.size:
            print(
                f"draggan edit: the mask is {mask.size[0]}x{mask.size[1]} but the image is {img.size[0]}x{img.size[1]}",
                file=sys.stderr,
            )
            return 2
        mask_bytes = mask.tobytes()
    params, request = drag_fields(args)
    if args.frames:
        frames_target(args.frames)  # a wrong name is refused before any work
        if args.frame_every < 1:
            print("draggan edit: --frame-every must be at least 1", file=sys.stderr)
            return 2

    client, server = _connect(args)
    bar = ProgressBar(not args.quiet)
    try:
        session = client.open_layer_session(
            img.tobytes(), img.width, img.height, region=args.region, model=args.model, name=Path(args.input).name
        )
        sid = session["session_id"]
        n = args.invert_steps
        content, buffers = drag_request(
            sid,
            args.drag,
            mask_bytes,
            params,
            0,
            output=args.output_mode,
            invert_preset=args.invert_preset,
            invert_params=None if n is None else {"w_steps": n, "wplus_steps": n, "pti_steps": n},
            frames=args.frame_every if args.frames else None,
        )
        content.update(request)  # --set of the request's own fields (preview_every, new_content, ...)
        t0 = time.monotonic()
        fit_first, most = not session.get("inverted"), int(params.get("steps") or args.steps)
        job = client.start_job("drag", content, buffers, fit_first=fit_first, max_steps=most)
        done = client.run_job(
            "drag", content, buffers, on_progress=lambda m: bar.show(job, m.msg_type != "progress"), job=job
        )
        bar.end()
        result = client.get_result(sid)
        frames = client.get_frames(sid) if args.frames and done.get("frames") else []
        client.close_session(sid)
        out = Image.frombytes("RGBA", (result.width, result.height), result.pixels)
        out.save(args.output)
        if args.frames:
            if not frames:
                print("draggan edit: the drag kept no frames (it made no step)", file=sys.stderr)
            else:
                write_frames(args.frames, img, frames, args.frame_ms)
                kept = done["frames"]
                thinned = f", thinned {kept['thinned']}x to every {kept['every']} steps" if kept["thinned"] else ""
                print(f"draggan edit: wrote {len(frames)} frames to {args.frames}{thinned}", file=sys.stderr)
        steps = int(done.get("steps", 0))
        handles = ", ".join(f"({x:.1f},{y:.1f})" for x, y in done.get("measured", done.get("handles", [])))
        extra = fallback_text(done)
        print(
            f"draggan edit: {done.get('state')} after {plural(steps, 'step')} in "
            f"{time.monotonic() - t0:.1f} s. {arrival_text(done)}; the handles' content is now at {handles}. "
            f"Wrote {args.output}" + (f". {extra}" if extra else ""),
            file=sys.stderr,
        )
        return 0 if done.get("state") == "done" else 1
    except DaemonError as exc:
        bar.end()
        print(f"draggan edit: the daemon refused: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except DaemonUnreachable as exc:
        bar.end()
        print(f"draggan edit: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.end()
        print("draggan edit: interrupted (the job was cancelled)", file=sys.stderr)
        return 130
    finally:
        client.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

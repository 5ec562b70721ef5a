"""`draggan edit IN.png --drag X1,Y1:X2,Y2 [--drag ...] [--mask M.png] -o OUT.png`: a headless client.

Talks to the running daemon (found through its connection file) or, when none answers, starts one inside this
process on a private port. Prints a progress bar on stderr; writes the whole edited layer as an RGBA PNG.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from draggan_protocol import Client, DaemonError, DaemonUnreachable, Message, arrival_text, drag_request, fallback_text
from draggan_protocol.spec import OUTPUT_MODES


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
    p.add_argument("--steps", type=int, default=200, help="maximum drag steps (default 200)")
    p.add_argument("--lr", type=float, help="learning rate of the latent optimiser")
    p.add_argument("--mask-weight", type=float, help="how strongly masked-out areas are held fixed")
    p.add_argument("--invert-preset", choices=("fast", "quality"), default="fast", help="how the image is fitted")
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
        choices=OUTPUT_MODES,
        default="transfer",
        help="transfer: your own pixels, moved by the generator's motion (default); generator: the generator's picture",
    )
    p.add_argument("--connection-file", help="daemon connection file (default: the standard location)")
    p.add_argument("--in-process", action="store_true", help="always start a private daemon in this process")
    p.add_argument("--builtin-test-model", action="store_true", help="with an in-process daemon: the test model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="daemon logs (with an in-process daemon)")
    return p


class ProgressBar:
    def __init__(self, enabled: bool, stream: Any = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._last = 0.0

    def show(self, label: str, done: int, total: int, extra: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * min(done, total) / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{label:<8} [{bar}] {done}/{total} {extra}".ljust(78))
        self.stream.flush()

    def end(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def on_message(self, msg: Message) -> None:
        c = msg.content
        if msg.msg_type == "job_queued":
            self.show("queued", 0, 1, f"position {c.get('position')}", force=True)
        elif c.get("phase") == "invert":
            psnr = c.get("psnr")
            extra = f"stage {c.get('stage', '')}" + (f" psnr {psnr:.1f} dB" if isinstance(psnr, float) else "")
            self.show("fitting", int(c.get("step", 0)), int(c.get("steps", 1) or 1), extra)
        elif c.get("phase") == "drag":
            remaining = c.get("remaining")
            extra = f"{max(remaining):.1f} px to go" if remaining else f"loss {c['loss']:.4f}"
            self.show("drag", int(c["step"]), int(c["max_steps"]), extra)


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
    params: dict[str, Any] = {"steps": args.steps}
    if args.lr is not None:
        params["lr"] = args.lr
    if args.mask_weight is not None:
        params["mask_weight"] = args.mask_weight

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
        )
        t0 = time.monotonic()
        done = client.run_job("drag", content, buffers, on_progress=bar.on_message)
        bar.end()
        result = client.get_result(sid)
        client.close_session(sid)
        out = Image.frombytes("RGBA", (result.width, result.height), result.pixels)
        out.save(args.output)
        steps = int(done.get("steps", 0))
        handles = ", ".join(f"({x:.1f},{y:.1f})" for x, y in done.get("measured", done.get("handles", [])))
        extra = fallback_text(done)
        print(
            f"draggan edit: {done.get('state')} after {steps} step{'' if steps == 1 else 's'} in "
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

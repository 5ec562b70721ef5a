"""`draggan convert IN OUT`: turn an NVIDIA .pkl or a rosinality .pt into the native .safetensors format.

Converting once means the daemon never has to read a pickle again, and the file carries its architecture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CheckpointError, load_generator
from .native import load_native, save_native


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="draggan convert", description=__doc__.splitlines()[0])
    p.add_argument("input", type=Path, help="checkpoint to read (.pkl, .pt or .safetensors; sniffed from content)")
    p.add_argument("output", type=Path, help="native .safetensors file to write")
    p.add_argument("--name", help="display name stored in the file (default: the input's file name)")
    p.add_argument("--license", dest="license_", metavar="LICENSE", help="licence stored in the file")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"draggan convert: {args.output} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    try:
        model = load_generator(args.input)
        metadata = {k: v for k, v in model.metadata.items() if k != "source_file" and isinstance(v, str)}
        metadata.update(name=args.name or model.name, source_format=model.source_format, source_file=args.input.name)
        if args.license_:
            metadata["license"] = args.license_
        save_native(model.generator, args.output, metadata)
        load_native(args.output)  # read back: a converted file that cannot be loaded is worse than none
    except CheckpointError as exc:
        print(f"draggan convert: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"draggan convert: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    cfg = model.config
    print(
        f"wrote {args.output}: {model.source_format} -> native, {cfg.img_resolution}px, "
        f"z/w {cfg.z_dim}/{cfg.w_dim}, mapping {cfg.mapping_layers}, channels {cfg.channel_base}/{cfg.channel_max}, "
        f"fp16 blocks {cfg.num_fp16_res}, conv_clamp {cfg.conv_clamp}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""`draggan models list | show NAME | pull NAME | add FILE_OR_URL | remove NAME`: the checkpoints a daemon serves.

The catalogue (`models/catalogue.json`) lists the checkpoints DragGAN users bring, with where each fact came from.
`pull` shows an entry's card (URL, resolution, domain, licence, size, how it is checked), downloads it into the
models folder (resuming a cut download), checks it (the sha256 when one is published, then always the same safe
loaders the daemon uses, so a hostile pickle is refused before any of it runs) and only then gives it its name
there, with a card `NAME.json` beside it. A running `draggan serve` watching that folder offers it at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import urllib.parse
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .download import DownloadError, discard_partial, download, human_size, part_path, partial_size
from .server.models import MODEL_SUFFIXES, default_models_dir, read_card

CATALOGUE_FILE = Path(__file__).resolve().parent / "models" / "catalogue.json"
NO_CHECKSUM = (
    "no published sha256: checked only as a loadable checkpoint (the safe loaders), its sha256 recorded on arrival"
)


class ModelsError(Exception):
    """What the user is told, on stderr, before the command exits with status 1."""


# --------------------------------------------------------------------------------------------- catalogue
def load_catalogue(path: Path | None = None) -> list[dict[str, Any]]:
    p = Path(path) if path else CATALOGUE_FILE
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelsError(f"cannot read the catalogue {p}: {exc}") from None
    models = doc.get("models") if isinstance(doc, dict) else doc
    if not isinstance(models, list) or not all(isinstance(m, dict) and m.get("name") for m in models):
        raise ModelsError(f"{p}: not a catalogue (expected {{'models': [{{'name': ..., 'url': ...}}, ...]}})")
    return models


def find_entry(catalogue: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((m for m in catalogue if m["name"] == name), None)


def short_licence(text: str) -> str:
    return (text or "unknown").split(" (")[0]


def resolution_text(width: Any, height: Any) -> str:
    return f"{width}×{height}" if width and height else "?"


# --------------------------------------------------------------------------------------------- models folder
def installed_file(folder: Path, name: str) -> Path | None:
    for suffix in MODEL_SUFFIXES:
        p = folder / f"{name}{suffix}"
        if p.is_file():
            return p
    return None


def installed_models(folder: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        folder / n
        for n in names
        if Path(n).suffix.lower() in MODEL_SUFFIXES and n[:1] != "." and (folder / n).is_file()
    ]


def check_name(name: str) -> str:
    if not name or name.startswith(".") or any(c in name for c in "/\\:") or name != name.strip():
        raise ModelsError(f"{name!r} cannot be a model name (no slashes, colons or leading dot)")
    return name


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_loadable(path: Path) -> Any:
    """Load `path` with the daemon's safe loaders (nothing from the file runs); CheckpointError when refused."""
    from .engine.loaders import load_generator

    return load_generator(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _install(checked: Path, dest: Path, loaded: Any, card: dict[str, Any], move: bool) -> dict[str, Any]:
    """Card first, then the checkpoint under its name: a daemon that sees the file finds its card with it."""
    G = loaded.generator
    cfg = G.synthesis.cfg
    card = {k: v for k, v in card.items() if v not in (None, "")} | {
        "name": dest.stem,
        "resolution": int(G.img_resolution),
        "picture": [int(cfg.img_resolution), int(cfg.width(cfg.img_resolution))],
        "source_format": loaded.source_format,
        "installed": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _write_json_atomic(dest.with_suffix(".json"), card)
    if move:
        os.replace(checked, dest)
    else:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            shutil.copyfile(checked, tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return card


def fetch_and_install(
    url: str,
    dest: Path,
    card: dict[str, Any],
    expected_sha256: str = "",
    expected_size: int | None = None,
    retries: int = 3,
    out=None,
) -> dict[str, Any]:
    from .engine.loaders import CheckpointError

    out = out or sys.stdout

    def on_headers(total: int | None, have: int) -> None:
        size = f"{human_size(total)} ({total:,} bytes)" if total else "not given by the server"
        print(f"  size:       {size}", file=out)
        if have:
            print(f"  resuming:   {human_size(have)} already here", file=out)
        out.flush()

    try:
        got = download(url, dest, expected_size=expected_size, retries=retries, progress=out, on_headers=on_headers)
    except DownloadError as exc:
        if exc.resumable and partial_size(dest):
            raise ModelsError(
                f"{exc}\n{human_size(partial_size(dest))} kept: run the same command again to resume"
            ) from None
        raise ModelsError(str(exc)) from None
    if expected_sha256 and got.sha256 != expected_sha256.lower():
        discard_partial(dest)
        raise ModelsError(
            f"checksum mismatch for {url}: expected sha256 {expected_sha256}, got {got.sha256}; the file was deleted"
        )
    print(
        "  checksum:   " + ("sha256 matches" if expected_sha256 else f"sha256 {got.sha256} (nothing to compare)"),
        file=out,
    )
    try:
        loaded = check_loadable(got.path)
    except CheckpointError as exc:
        discard_partial(dest)
        raise ModelsError(f"refused: {exc.problem}; the downloaded file was deleted") from None
    except Exception as exc:  # an unexpected loader failure: keep nothing half-checked either
        discard_partial(dest)
        raise ModelsError(f"refused: {type(exc).__name__}: {exc}; the downloaded file was deleted") from None
    return _install(got.path, dest, loaded, card | {"sha256": got.sha256, "size": got.size}, move=True)


# --------------------------------------------------------------------------------------------- commands
def cmd_list(args: argparse.Namespace) -> int:
    catalogue = load_catalogue(args.catalogue)
    folder = models_dir(args)
    if args.json:
        rows = []
        for m in catalogue:
            path = installed_file(folder, m["name"])
            rows.append(m | {"installed": str(path) if path else None})
        extra = [{"name": p.stem, "path": str(p)} | read_card(p) for p in installed_models(folder)]
        extra = [e for e in extra if not find_entry(catalogue, e["name"])]
        print(json.dumps({"models_dir": str(folder), "catalogue": rows, "other": extra}, indent=1))
        return 0
    rows = [("NAME", "W×H", "DOMAIN", "SIZE", "LICENCE", "CHECK", "INSTALLED")]
    for m in catalogue:
        path = installed_file(folder, m["name"])
        size = path.stat().st_size if path else m.get("size")
        if path:
            state = "yes"
        elif m.get("format") == "tensorflow-pkl":
            state = "no (TensorFlow: convert first)"
        elif partial_size(folder / f"{m['name']}.pkl"):
            state = f"partial, {human_size(partial_size(folder / (m['name'] + '.pkl')))}"
        else:
            state = "no"
        check = "-" if m.get("format") == "tensorflow-pkl" else "sha256" if m.get("sha256") else "loadable*"
        res = resolution_text(m.get("width"), m.get("height"))
        rows.append(
            (m["name"], res, m.get("domain", "?"), human_size(size), short_licence(m.get("licence", "")), check, state)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"\n* {NO_CHECKSUM}.")
    print("Sizes marked ? are not published; `pull` shows the server's size before it downloads.")
    others = [p for p in installed_models(folder) if not find_entry(catalogue, p.stem)]
    if others:
        print("\nAlso in the models folder:")
        for p in others:
            card = read_card(p)
            res = card.get("resolution")
            picture = card.get("picture")
            res_text = (
                resolution_text(picture[1], picture[0])
                if isinstance(picture, list) and len(picture) == 2
                else str(res or "?")
            )
            print(
                f"  {p.stem}  {res_text}  {card.get('domain') or 'domain not given'}  {human_size(p.stat().st_size)}  "
                f"{short_licence(card.get('licence', ''))}"
            )
    print(f"\nModels folder: {folder}   (`draggan models pull NAME` to fetch one, `show NAME` for its card)")
    return 0


def print_card(m: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    print(f"{m['name']}: {m.get('title', '')}", file=out)
    print(f"  domain:     {m.get('domain', '?')}", file=out)
    print(f"  resolution: {resolution_text(m.get('width'), m.get('height'))} (width × height)", file=out)
    licence = m.get("licence") or "unknown"
    print(f"  licence:    {licence}" + (f" <{m['licence_url']}>" if m.get("licence_url") else ""), file=out)
    print(f"  url:        {m.get('url', '?')}", file=out)
    print(f"  catalogued size: {human_size(m['size']) if m.get('size') else 'not published'}", file=out)
    print(f"  check:      {'sha256 ' + m['sha256'] if m.get('sha256') else NO_CHECKSUM}", file=out)
    if m.get("sources"):
        print(f"  facts from: {'; '.join(m['sources'])}", file=out)
    if m.get("note"):
        print(f"  note:       {m['note']}", file=out)
    out.flush()


def cmd_show(args: argparse.Namespace) -> int:
    m = find_entry(load_catalogue(args.catalogue), args.name)
    if m is None:
        raise ModelsError(f"no catalogue entry named {args.name!r} (see `draggan models list`)")
    print_card(m)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    catalogue = load_catalogue(args.catalogue)
    m = find_entry(catalogue, args.name)
    if m is None:
        names = ", ".join(e["name"] for e in catalogue)
        raise ModelsError(f"no catalogue entry named {args.name!r}; the catalogue has: {names}")
    folder = models_dir(args)
    print_card(m)
    if m.get("format") == "tensorflow-pkl":
        raise ModelsError(f"{m['name']} is {m.get('note') or 'a TensorFlow pickle, which this daemon does not load'}")
    existing = installed_file(folder, m["name"])
    if existing and not args.force:
        print(f"{m['name']} is already installed: {existing} (--force fetches it again)")
        return 0
    dest = folder / f"{m['name']}.pkl"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Downloading into {folder}")
    card = {k: m.get(k) for k in ("title", "domain", "licence", "licence_url", "url")} | {"catalogue": m["name"]}
    fetch_and_install(m["url"], dest, card, m.get("sha256") or "", m.get("size"), args.retries)
    print(f"Installed {m['name']} as {dest}; a running daemon offers it now.")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from .engine.loaders import CheckpointError

    folder = models_dir(args)
    source = args.source
    is_url = urllib.parse.urlsplit(source).scheme in ("http", "https")
    card = {"domain": args.domain, "licence": args.licence, "title": args.title}
    if is_url:
        m = next((e for e in load_catalogue(args.catalogue) if e.get("url") == source), None)
        base = Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).name
        name = check_name(args.name or (m["name"] if m else Path(base).stem or "model"))
        suffix = Path(base).suffix.lower() if Path(base).suffix.lower() in MODEL_SUFFIXES else ".pkl"
        if m:
            card = (
                {k: m.get(k) for k in ("title", "domain", "licence", "licence_url")}
                | {k: v for k, v in card.items() if v}
                | {"catalogue": m["name"]}
            )
        card["url"] = source
        dest = folder / f"{name}{suffix}"
        if installed_file(folder, name) and not args.force:
            raise ModelsError(f"a model named {name!r} is already in {folder} (--name another, or --force)")
        folder.mkdir(parents=True, exist_ok=True)
        print(
            f"{name}: {source}\n  domain:     {card.get('domain') or 'not given (--domain)'}\n"
            f"  licence:    {card.get('licence') or 'not given (--licence)'}"
        )
        print(f"  check:      {'sha256 ' + args.sha256 if args.sha256 else NO_CHECKSUM}")
        sha = args.sha256 or (m.get("sha256", "") if m else "")
        fetch_and_install(source, dest, card, sha, m.get("size") if m else None, args.retries)
        print(f"Installed {name} as {dest}; a running daemon offers it now.")
        return 0
    src = Path(source).expanduser()
    if not src.is_file():
        raise ModelsError(f"{source}: no such file (give a checkpoint file or an http(s) URL)")
    name = check_name(args.name or src.stem)
    m = find_entry(load_catalogue(args.catalogue), name)  # e.g. a converted lsun-car added under its catalogue name
    if m:
        card = (
            {k: m.get(k) for k in ("title", "domain", "licence", "licence_url", "url")}
            | {k: v for k, v in card.items() if v}
            | {"catalogue": m["name"]}
        )
    suffix = src.suffix.lower() if src.suffix.lower() in MODEL_SUFFIXES else ".pkl"
    dest = folder / f"{name}{suffix}"
    there = installed_file(folder, name)
    if there and not args.force and there.resolve() != src.resolve():
        raise ModelsError(f"a model named {name!r} is already in {folder} (--name another, or --force)")
    if args.sha256:
        got = sha256_of(src)
        if got != args.sha256.lower():
            raise ModelsError(f"checksum mismatch for {src}: expected sha256 {args.sha256}, got {got}; nothing added")
    try:
        loaded = check_loadable(src)
    except CheckpointError as exc:
        raise ModelsError(f"refused: {exc}") from None
    folder.mkdir(parents=True, exist_ok=True)
    card |= {"sha256": sha256_of(src), "size": src.stat().st_size, "source_file": str(src.resolve())}
    if src.resolve() == dest.resolve():  # already in place: only the card is new
        _install(src, dest, loaded, card, move=True)
    else:
        _install(src, dest, loaded, card, move=False)
    print(
        f"Added {name} ({loaded.generator.img_resolution} px, {loaded.source_format}) as {dest}; "
        "a running daemon offers it now."
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    folder = models_dir(args)
    name = check_name(args.name)
    path = installed_file(folder, name)
    removed = []
    if path:
        path.unlink()
        removed.append(path)
    card = folder / f"{name}.json"
    if card.is_file():
        card.unlink()
        removed.append(card)
    for suffix in MODEL_SUFFIXES:
        dest = folder / f"{name}{suffix}"
        if part_path(dest).exists():
            discard_partial(dest)
            removed.append(part_path(dest))
    if not removed:
        raise ModelsError(f"no model named {name!r} in {folder}")
    for p in removed:
        print(f"removed {p}")
    if path:
        print("A running daemon stops offering it now (a session that has it open keeps it until the daemon stops).")
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    """A short fit of the image with every candidate model, best first (daemon/engine/suggest.py)."""
    import numpy as np
    import torch
    from PIL import Image

    from .engine.loaders import load_generator
    from .engine.suggest import rank_models
    from .server.models import BUNDLED_FILE

    try:
        image = Image.open(args.image)
        image.load()
    except (OSError, ValueError) as exc:
        raise ModelsError(f"cannot read {args.image}: {exc}") from None
    layer = np.asarray(image.convert("RGBA"))
    files = [Path(f) for f in args.model]
    if not args.no_bundled and BUNDLED_FILE.is_file():
        files.insert(0, BUNDLED_FILE)
    files += installed_models(models_dir(args))
    if not files:
        raise ModelsError("no models to try: pull or add one first (draggan models list)")
    torch.set_num_threads(max(1, min(args.threads or torch.get_num_threads(), torch.get_num_threads())))

    def loader(path: Path):
        return lambda: load_generator(path).generator.eval().requires_grad_(False)

    names = {f: (f.stem if f != BUNDLED_FILE else "bundled") for f in files}
    size = f"{layer.shape[1]}×{layer.shape[0]}"
    print(f"fitting {args.image} ({size}) into {len(files)} model(s), {args.steps} steps a stage")
    fits = rank_models(
        layer,
        [(names[f], loader(f)) for f in files],
        steps=args.steps,
        on_model=lambda i, name: print(f"  {i + 1}/{len(files)} {name}…", flush=True),
    )
    print("\nbest first (higher PSNR: the model reproduces the image more closely, so a drag keeps more of it):")
    for rank, fit in enumerate(fits, 1):
        if fit.psnr_db is None:
            print(f"  -  {fit.name}: not tried, {fit.skipped}")
        else:
            print(f"  {rank}. {fit.name} ({fit.resolution} px): {fit.psnr_db:.1f} dB in {fit.seconds:.1f} s")
    return 0 if any(f.psnr_db is not None for f in fits) else 1


# --------------------------------------------------------------------------------------------- entry point
def models_dir(args: argparse.Namespace) -> Path:
    return Path(args.models_dir).expanduser() if args.models_dir else default_models_dir()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--models-dir", metavar="DIR", help=f"the models folder (default $DRAGGAN_MODELS_DIR or {default_models_dir()})"
    )
    common.add_argument("--catalogue", metavar="FILE", help="a catalogue JSON file instead of the built-in one")
    p = argparse.ArgumentParser(prog="draggan models", description="List, fetch, add and remove generator checkpoints.")
    sub = p.add_subparsers(dest="command", required=True, metavar="list|show|pull|add|remove|suggest")
    s = sub.add_parser("list", parents=[common], help="the catalogue, and what is installed")
    s.add_argument("--json", action="store_true", help="machine-readable")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("show", parents=[common], help="one catalogue entry's card")
    s.add_argument("name")
    s.set_defaults(func=cmd_show)
    for cmd, func, help_ in (
        ("pull", cmd_pull, "download a catalogue entry into the models folder"),
        ("add", cmd_add, "add a checkpoint file or URL to the models folder"),
    ):
        s = sub.add_parser(cmd, parents=[common], help=help_)
        if cmd == "pull":
            s.add_argument("name")
        else:
            s.add_argument("source", metavar="FILE_OR_URL")
            s.add_argument("--name", help="the model's name in the folder (default: the file's name)")
            s.add_argument("--domain", default="", help="what it draws, shown by the plug-ins (e.g. 'cat faces')")
            s.add_argument("--licence", default="", help="its licence, as the model's author states it")
            s.add_argument("--title", default="", help="a longer name")
            s.add_argument("--sha256", default="", help="refuse the file unless its sha256 is this")
        s.add_argument("--force", action="store_true", help="replace a model of the same name")
        s.add_argument("--retries", type=int, default=3, help="resume a cut download this many times (default 3)")
        s.set_defaults(func=func)
    s = sub.add_parser("remove", parents=[common], help="delete a model (and its card) from the models folder")
    s.add_argument("name")
    s.set_defaults(func=cmd_remove)
    s = sub.add_parser("suggest", parents=[common], help="which installed model reproduces an image best")
    s.add_argument("image", help="the picture (PNG or anything Pillow reads)")
    s.add_argument("--model", action="append", default=[], metavar="FILE", help="also try this checkpoint")
    s.add_argument("--no-bundled", action="store_true", help="do not try the bundled model")
    s.add_argument("--steps", type=int, default=30, help="steps of each fitting stage (default 30)")
    s.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    s.set_defaults(func=cmd_suggest)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ModelsError as exc:
        sys.stdout.flush()
        print(f"draggan models: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume the download", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

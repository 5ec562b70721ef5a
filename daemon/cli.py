"""The `draggan` command: one entry point, each subcommand implemented by the module that owns the job."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module, one-line help). Each module exposes `main(argv: list[str]) -> int`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("draggan_daemon.server.serve_cli", "run the daemon (bundled model by default)"),
    "edit": ("draggan_daemon.server.edit_cli", "drag points on a PNG through a daemon, for scripts"),
    "convert": (
        "draggan_daemon.engine.loaders.convert",
        "convert an NVIDIA .pkl or rosinality .pt to the native format",
    ),
    "models": ("draggan_daemon.models_cli", "list, pull, add or remove checkpoints (list shows the catalogue)"),
    "sample": ("draggan_daemon.training.sample", "render random samples or a grid from a model"),
    "train": ("draggan_daemon.training.train", "train the bundled model from the emoji data set"),
    "package": ("draggan_daemon.plugin_install", "build an installable plugin archive (krita)"),
    "install": ("draggan_daemon.plugin_install", "install a plugin for the current user (krita | gimp)"),
}


def usage() -> str:
    lines = ["usage: draggan <command> [options]", "", "commands:"]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"draggan: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    if name in ("package", "install"):
        rest = [name, *rest]
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

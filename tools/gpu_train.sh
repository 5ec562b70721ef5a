#!/usr/bin/env bash
# Train the bundled emoji StyleGAN2 on one CUDA GPU (H100/H200) in about nine minutes, offline.
#
# usage: tools/gpu_train.sh [OUT_DIR]        (OUT_DIR defaults to $OUT, else .cache/model/gpu_run)
# env:   MINUTES (default 8.5)  DATA (prepared .npz, default .cache/model/emoji64.npz)
#        DEVICE (auto|cuda|cpu)  PRESET (default: gpu)  ITERATIONS (stop after N, for a dry run)  PYTHON
#
# The GPU machine has no network: the data set must be prepared beforehand (`draggan train --prepare-only`) and
# carried along with the working tree. Only torch, numpy and Pillow are needed there. OUT_DIR receives at most
# eight small files: bundled.safetensors (G_ema, native format) + bundled.json (its card), samples.png (4x4,
# psi 0.7), last_training_grid.png, reals.png, log.txt, history.json and g_ema_checkpoint.pt (G_ema, plus G/D/E
# when under 15 MiB).
#
# With this workplace's device tool: carry [".cache/model/emoji64.npz"], command `tools/gpu_train.sh`
# (it writes into $OUT), timeout_s 600. Then bring the model home:
#   cp <files_at>/bundled.safetensors <files_at>/bundled.json daemon/models/ &&
#   draggan sample --grid daemon/models/samples.png
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-${OUT:-$REPO/.cache/model/gpu_run}}"
MINUTES="${MINUTES:-8.5}"
DATA="${DATA:-$REPO/.cache/model/emoji64.npz}"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d)"
mkdir -p "$DEST"
if [ ! -f "$DATA" ]; then
  echo "no prepared data set at $DATA (run: draggan train --prepare-only)" >&2
  exit 2
fi
# Import the package straight from the working tree (no install needed on a bare machine).
ln -s "$REPO/daemon" "$WORK/draggan_daemon"
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import torch, numpy, PIL; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true

STOP=(--minutes "$MINUTES")
if [ -n "${ITERATIONS:-}" ]; then STOP=(--iterations "$ITERATIONS"); fi
start=$(date +%s)
"$PY" -m draggan_daemon.cli train --device "${DEVICE:-auto}" --preset "${PRESET:-gpu}" --data "$DATA" \
  --run-dir "$WORK/run" --no-resume "${STOP[@]}" --export "$DEST/bundled.safetensors" 2>&1 | tee "$DEST/log.txt"
echo "training wall time: $(( $(date +%s) - start )) s" | tee -a "$DEST/log.txt"

"$PY" -m draggan_daemon.cli sample --model "$DEST/bundled.safetensors" --grid "$DEST/samples.png" --count 16
cp "$WORK/run/reals.png" "$DEST/"
last_grid="$(ls "$WORK"/run/samples_*kimg.png | sort | tail -n 1)"
cp "$last_grid" "$DEST/last_training_grid.png"
"$PY" - "$WORK/run" "$DEST" <<'PY'
import json, sys, torch
from pathlib import Path
run, dest = Path(sys.argv[1]), Path(sys.argv[2])
best = run / "best.pt" if (run / "best.pt").exists() else run / "checkpoint.pt"
sd = torch.load(best, map_location="cpu", weights_only=False)
(dest / "history.json").write_text(json.dumps(sd["history"], indent=1))
slim = {k: sd[k] for k in ("format", "train_config", "generator_config", "G_ema", "cur_nimg", "iteration",
                           "seconds", "best_fd", "history")}
# Resuming needs the full state; a slim G_ema-only copy is what can travel back (files over 16 MiB do not).
slim.update(G=sd["G"], D=sd["D"], E=sd["E"])
torch.save(slim, dest / "g_ema_checkpoint.pt")
if (dest / "g_ema_checkpoint.pt").stat().st_size > 15 * 2**20:
    for k in ("G", "D", "E"):
        slim.pop(k)
    torch.save(slim, dest / "g_ema_checkpoint.pt")
print("kept", best.name, "at", sd["cur_nimg"] / 1000, "kimg; fd", sd["best_fd"])
PY
ls -la "$DEST"
rm -rf "$WORK"

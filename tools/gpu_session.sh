#!/usr/bin/env bash
# The one prepared script for a lent GPU machine (H100/H200, no network, ~15 minutes of device time):
# train the bundled model, then CUDA checks and timings of the engine, everything into $OUT.
#
# With this workplace's device tool: carry [".cache/model/emoji64.npz"] (prepare it first with
# `draggan train --prepare-only`), command `tools/gpu_session.sh`, timeout_s 600. Benchmark figures are appended
# to $OUT/log.txt (the device tool brings back at most eight files). Then bring the model home:
#   cp <files_at>/bundled.safetensors <files_at>/bundled.json daemon/models/ && draggan sample --grid daemon/models/samples.png
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${OUT:-$REPO/.cache/model/gpu_run}"
mkdir -p "$DEST"
MINUTES="${MINUTES:-7}" "$REPO/tools/gpu_train.sh" "$DEST" || echo "gpu_session: training failed (rc $?)" | tee -a "$DEST/log.txt"

# The benchmarks import the package straight from the tree, as gpu_train.sh does.
WORK="$(mktemp -d)"; ln -s "$REPO/daemon" "$WORK/draggan_daemon"
export PYTHONPATH="$WORK:$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
  echo "== drag step, 512 px config-f, CUDA fp16 (ours vs official-style loop)"
  timeout 120 python3 "$REPO/benchmarks/drag_speed.py" --device cuda --res 512 --fp16 --steps 20
  echo "== previews on CUDA, 512 px fp16: one asked every 5 steps, and every step (drafts where they would slow it)"
  timeout 90 python3 "$REPO/benchmarks/drag_speed.py" --device cuda --res 512 --fp16 --steps 20 --preview-every 5
  timeout 90 python3 "$REPO/benchmarks/drag_speed.py" --device cuda --res 512 --fp16 --steps 20 --preview-every 1
  echo "== drag step, 256 px, CUDA fp32"
  timeout 60 python3 "$REPO/benchmarks/drag_speed.py" --device cuda --res 256 --steps 20
  echo "== inversion of the new model on CUDA"
  model="$DEST/bundled.safetensors"; [ -f "$model" ] || model="$REPO/daemon/models/bundled.safetensors"
  timeout 90 python3 "$REPO/benchmarks/inversion.py" --device cuda --model "$model" --preset quality
  echo "== drag check of the new model (needs opencv): eye raised 8 px, mouth corner 10 px; summary lines"
  for part in eye mouth; do
    dist=10; [ "$part" = eye ] && dist=8
    timeout 90 python3 -m draggan_daemon.training.drag_check --model "$model" --part "$part" --distance "$dist" \
      --seeds 0-15 | tail -1
  done
} 2>&1 | tee -a "$DEST/log.txt"
rm -rf "$WORK"

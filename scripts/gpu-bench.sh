#!/usr/bin/env bash
# One command on a CUDA machine: generation fps (one step + latent decode) of the SD-Turbo
# architecture (random weights) and the built-in model at 512 px, eager / half / channels-last /
# compiled, against the diffusers pipeline in the same process; then whether a stream encoded on
# the CPU decodes on the device to the same frames. JSONs land in $OUT (default bench-gpu/).
#
#   scripts/gpu-bench.sh                      # cuda, 512 px, both models, all variants
#   DEVICE=cpu HALF=bf16 SIZE=16 FRAMES=2 REPS=1 MODELS=tiny VARIANTS="eager half channels-last" \
#     scripts/gpu-bench.sh                    # the CPU path the test suite runs
set -euo pipefail
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-512}
FRAMES=${FRAMES:-10}
REPS=${REPS:-5}
INV_ITERS=${INV_ITERS:-2}
HALF=${HALF:-fp16}
MODELS=${MODELS:-"sd-turbo-arch tiny"}
VARIANTS=${VARIANTS:-"eager half channels-last compile"}
CROSS_SIZE=${CROSS_SIZE:-$SIZE}
OUT=${OUT:-bench-gpu}
PY=${PYTHON:-python}
mkdir -p "$OUT"
for model in $MODELS; do
  for v in $VARIANTS; do
    case $v in
      eager) flags=() ;;
      half) flags=(--dtype "$HALF") ;;
      channels-last) flags=(--channels-last) ;;
      compile) flags=(--compile) ;;
      *) echo "error: unknown variant $v (eager, half, channels-last, compile)" >&2; exit 2 ;;
    esac
    echo "== $model $v" >&2
    "$PY" -m promptlab bench --model "$model" --size "$SIZE" --frames "$FRAMES" --reps "$REPS" \
      --inv-iters "$INV_ITERS" --device "$DEVICE" "${flags[@]}" --json "$OUT/$model-$SIZE-$v.json"
  done
done
echo "== cross-device decode" >&2
"$PY" -m promptlab.bench.cross_device --device "$DEVICE" --size "$CROSS_SIZE" --json "$OUT/cross-device.json"

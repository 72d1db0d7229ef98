#!/usr/bin/env bash
# Create the venv for the reference library imitation 1.0.1 at bench/.venvs/imitation (idempotent).
# imitation pins gymnasium 0.29 and numpy<2, which clash with the project's own venv, hence a separate one.
# torch goes in first from the CPU wheel on this machine's disk; a bare torch requirement pulls CUDA.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venvs/imitation"
MARKER="$VENV/.setup-complete"
TORCH="torch==2.13.0"
REQS=(imitation==1.0.1 "numpy<2" "gymnasium[classic-control]==0.29.1" stable-baselines3==2.2.1)
STAMP="$TORCH ${REQS[*]}"

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$STAMP" ]]; then
    echo "reference venv ready: $VENV" >&2
    exit 0
fi

start=$SECONDS
rm -rf "$VENV"
python3 -m venv "$VENV"
pip_install() {  # drops pip's noise about this machine's partial local index; keeps pip's exit status
    "$VENV/bin/python" -m pip install --quiet --no-input "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
}
pip_install "$TORCH"
# Name torch again so that the resolver keeps the CPU wheel instead of fetching a CUDA build.
pip_install "${REQS[@]}" "$TORCH"
"$VENV/bin/python" - <<'EOF'
import gymnasium, imitation, numpy, stable_baselines3, torch
from imitation.algorithms import preference_comparisons  # noqa: F401
assert numpy.__version__ < "2", numpy.__version__
assert not torch.cuda.is_available() and "+cpu" in torch.__version__, torch.__version__
print("imitation", imitation.__version__, "torch", torch.__version__, "numpy", numpy.__version__,
      "gymnasium", gymnasium.__version__, "sb3", stable_baselines3.__version__)
EOF
echo "$STAMP" > "$MARKER"
echo "reference venv created in $((SECONDS - start)) s: $VENV" >&2

#!/usr/bin/env bash
# The optional `saebench` extra, in its own environment (.venv-saebench): SAE Bench 0.6.0 pins
# numpy < 2 and datasets < 4 and pulls torchvision, none of which the project environment shares.
# Used to cross-check taulib's metrics against SAE Bench's own code (`make saebench-check`).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-saebench
STAMP=$VENV/.installed
want=$(cat pyproject.toml constraints.txt scripts/install_saebench.sh | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "==> creating $VENV (sae-bench cross-check environment)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # no pip cache: its copies of the wheels would double the environment's ~2.8 GB on disk
  pip() { "$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir "$@"; }
  pip install -q --upgrade pip
  pip install -q "torch==2.13.0"
  # beartype 0.18+ breaks sae-bench's probe training; the pins keep torch, transformers and nnsight
  # only what the cross-check imports: taulib, SAE Bench and pytest (not the notebook and browser tooling of `dev`)
  pip install -q -c constraints.txt -e ".[saebench]" "pytest>=8" "pytest-timeout>=2.3"
  # torchvision comes with sae-lens's dependencies but fails to import beside the CPU torch; nothing here uses it
  pip uninstall -q -y torchvision || true
  # NCCL (0.5 GB) comes with xgboost, which only sae-bench's sae_probes eval imports, and serves multi-GPU training only
  pip uninstall -q -y nvidia-nccl-cu12 || true
  echo "$want" > "$STAMP"
fi
echo "==> sae-bench environment ready"

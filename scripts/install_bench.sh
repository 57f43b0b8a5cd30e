#!/usr/bin/env bash
# The optional `bench` extra, in its own environment (.venv-bench): the reference SAE trainers that
# benchmarks/training_speed.py runs side by side with taulib's. sae-lens resolves beside the pinned
# torch, transformers and nnsight; dictionary-learning 0.1.0 pins nnsight < 0.4 and pulls wandb,
# umap-learn and datasets, none of which its trainers import, so it is installed without its
# dependencies (its package still imports with nnsight 0.8.1).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-bench
STAMP=$VENV/.installed
want=$(cat pyproject.toml constraints.txt scripts/install_bench.sh | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "==> creating $VENV (reference trainers for the benchmarks)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # no pip cache: its copies of the wheels would double the environment's size on disk
  pip() { "$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir "$@"; }
  pip install -q --upgrade pip
  pip install -q "torch==2.13.0"
  pip install -q -c constraints.txt -e ".[dev,bench]"
  pip install -q --no-deps "dictionary-learning==0.1.0"
  # torchvision, if a dependency pulls it, fails to import beside the CPU torch; nothing here uses it
  pip uninstall -q -y torchvision || true
  echo "$want" > "$STAMP"
fi
echo "==> benchmark environment ready"

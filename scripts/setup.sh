#!/usr/bin/env bash
# CPU / CI install: a virtual environment in .venv with the pinned, tested dependencies.
# torch is pinned to 2.13.0 (the CPU wheel): an unpinned torch pulls several GB of CUDA packages.
# torchvision is never installed on this path (every PyPI build is CUDA-linked and breaks imports).
# Usage: bash scripts/setup.sh            (idempotent; re-running only checks the install)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade "pip>=24" >/dev/null
echo "[setup] installing pinned CPU dependencies (torch==2.13.0 CPU wheel)"
python -m pip install -q -e ".[cpu,test,da3]"
echo "[setup] installing depth-anything-3 without its declared dependencies (no torchvision on the CPU path)"
python -m pip install -q --no-deps depth-anything-3==0.1.1 evo==1.38.1
echo "[setup] done: activate with 'source .venv/bin/activate'"

#!/usr/bin/env bash
# Thin wrapper: run_pipeline.sh --input_dir DIR --traj_txt_path FILE [flags]  ==  python -m pipeline run [same flags].
# Uses the project's .venv when present. See `python -m pipeline run --help` for every flag.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${ROOT}/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3 || command -v python)"
exec "$PY" -m pipeline run "$@"

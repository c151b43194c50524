#!/usr/bin/env bash
# Everything a GPU can tell about this project, in one command (random weights; no internet needed).
#
#   bash scripts/gpu_check.sh            # on a machine with one CUDA GPU, from the repository root
#   bash scripts/gpu_check.sh --smoke    # the same code paths on the CPU at reduced sizes (CI runs this)
#
# Prints one summary table at the end; with $OUT set, also writes $OUT/gpu_check.json (and the raw
# per-section files under $OUT/gpu_check/). Exit status 1 when any section failed.
#
# Runs from the source tree (PYTHONPATH=repo root), with `python3` or $PYTHON. Needed everywhere:
# torch, safetensors, numpy. Per section:
#   env, dit, vae_encode, umt5, render   nothing more
#   generate_memory, pipeline_run        av (PyAV) for video IO, transformers (umT5 tokenizer);
#                                        pipeline_run also typer and plyfile.
# A bare GPU machine lacks av/typer/plyfile: carry their wheels (pip download av typer plyfile
# --only-binary=:all: -d wheels/ on a machine with internet; then pip install --no-index wheels/*)
# or those two sections report "skipped" with the wheel they need. Each section runs in its own
# process under its own time limit; a failing section reports its error and the others still run.
# To add a section: write scripts/gpu_sections/<name>.py with run(section) + section_main (see
# scripts/gpu_sections/common.py) and add "<name>:<seconds>" to SECTIONS below.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SMOKE=()
SCALE=1
if [[ "${1:-}" == "--smoke" ]]; then
    SMOKE=(--smoke)
    SCALE=4  # CPU runners are slow and often shared
elif [[ $# -gt 0 ]]; then
    echo "usage: bash scripts/gpu_check.sh [--smoke]" >&2
    exit 2
fi
# name:time limit in seconds of the full run (limits, not durations: the whole run is expected to take under
# 8 minutes on one H200); the smoke run allows SCALE times more.
SECTIONS=(env:30 dit:210 vae_encode:80 umt5:60 render:30 generate_memory:40 pipeline_run:30 spacetimepilot:150)
if [[ -n "${OUT:-}" ]]; then RESULTS="$OUT/gpu_check"; else RESULTS=$(mktemp -d); fi
mkdir -p "$RESULTS"
names=()
for entry in "${SECTIONS[@]}"; do
    name=${entry%%:*}
    limit=$(( ${entry##*:} * SCALE ))
    names+=("$name")
    echo "---- section $name (limit ${limit}s) ----"
    timeout --kill-after=10 "$limit" "$PY" -m "scripts.gpu_sections.$name" "${SMOKE[@]}" --results "$RESULTS"
    status=$?
    [[ $status -eq 124 || $status -eq 137 ]] && echo "section $name: time limit of ${limit}s reached"
done
"$PY" -m scripts.gpu_sections.summary --results "$RESULTS" --sections "${names[@]}" ${OUT:+--json "$OUT/gpu_check.json"}

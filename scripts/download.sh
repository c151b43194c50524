#!/usr/bin/env bash
# Fetch the model checkpoints into checkpoints/ (resumable), then check that each file loads.
#
# Usage: bash scripts/download.sh [--dry-run] [all|inspatio|inspatio15|wan|da3|florence|tae|spacetimepilot|check]...
#   all       every required model (inspatio wan da3 florence) plus the optional TAEHV decoder
#   inspatio  causal DiT          -> checkpoints/InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors
#   inspatio15 InSpatio-World 1.5 (optional, same layout; use it with --checkpoint_path)
#                                 -> checkpoints/InSpatio-World-1.5-1.3B/InSpatio-World-1.5-1.3B.safetensors
#   wan       Wan2.1-T2V-1.3B     -> checkpoints/Wan2.1-T2V-1.3B/{config.json,Wan2.1_VAE.pth,
#                                    models_t5_umt5-xxl-enc-bf16.pth,google/umt5-xxl/}
#   da3       DA3 nested giant    -> checkpoints/DA3/{config.json,model.safetensors}
#   florence  Florence-2-large    -> checkpoints/Florence-2-large/
#   tae       TAEHV (optional)    -> checkpoints/taehv/taew2_1.pth
#   spacetimepilot  second generator (optional, --generator spacetimepilot; also needs wan)
#                                 -> checkpoints/SpaceTimePilot/SpacetimePilot_1.3B_v1.ckpt
#   check     only check what is there (python -m pipeline.weights)
# --dry-run prints the download commands instead of running them.
# Environment: INSPATIO_CHECKPOINTS (default: checkpoints), HF_TOKEN for gated or rate-limited access.
# Downloads use the Hugging Face CLI ('hf download', or the older 'huggingface-cli download'), which
# resumes interrupted transfers; TAEHV comes from its GitHub project with 'curl -C -'.
set -euo pipefail
cd "$(dirname "$0")/.."

CKPT=${INSPATIO_CHECKPOINTS:-checkpoints}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
DRY=0
TAEHV_URL=https://github.com/madebyollin/taehv/raw/main/taew2_1.pth

run() {
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

hf_download() {
  local cli
  if [ -x .venv/bin/hf ]; then cli=(.venv/bin/hf download)
  elif command -v hf >/dev/null; then cli=(hf download)
  elif command -v huggingface-cli >/dev/null; then cli=(huggingface-cli download)
  else
    echo "error: the Hugging Face CLI is missing; install it with: $PY -m pip install huggingface_hub" >&2
    exit 2
  fi
  HF_HUB_OFFLINE=0 run "${cli[@]}" "$@"
}

get_inspatio() { hf_download inspatio/world InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors --local-dir "$CKPT"; }

get_inspatio15() {
  hf_download inspatio/world-1.5 InSpatio-World-1.5-1.3B.safetensors --local-dir "$CKPT/InSpatio-World-1.5-1.3B"
}

get_wan() {
  hf_download Wan-AI/Wan2.1-T2V-1.3B config.json Wan2.1_VAE.pth models_t5_umt5-xxl-enc-bf16.pth \
    --local-dir "$CKPT/Wan2.1-T2V-1.3B"
  hf_download Wan-AI/Wan2.1-T2V-1.3B --include "google/umt5-xxl/*" --local-dir "$CKPT/Wan2.1-T2V-1.3B"
}

get_da3() { hf_download depth-anything/DA3NESTED-GIANT-LARGE --local-dir "$CKPT/DA3"; }

get_florence() { hf_download microsoft/Florence-2-large --local-dir "$CKPT/Florence-2-large"; }

get_spacetimepilot() { hf_download zhening/SpaceTimePilot SpacetimePilot_1.3B_v1.ckpt --local-dir "$CKPT/SpaceTimePilot"; }

get_tae() {
  if [ -f "$CKPT/taehv/taew2_1.pth" ]; then echo "[download] $CKPT/taehv/taew2_1.pth present (delete it to fetch again)"; return; fi
  run mkdir -p "$CKPT/taehv"
  # download to a .part file (resumed with -C -) and rename only when complete
  run curl -fL --retry 3 -C - -o "$CKPT/taehv/taew2_1.pth.part" "$TAEHV_URL"
  run mv "$CKPT/taehv/taew2_1.pth.part" "$CKPT/taehv/taew2_1.pth"
}

targets=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    all) targets+=(inspatio wan da3 florence tae) ;;
    inspatio|inspatio15|wan|da3|florence|tae|spacetimepilot|check) targets+=("$arg") ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$arg' (expected all, inspatio, inspatio15, wan, da3, florence, tae, spacetimepilot, check, --dry-run)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=(inspatio wan da3 florence tae)

only=()
check_all=0
dit15=0
for t in "${targets[@]}"; do
  case "$t" in
    inspatio|wan) get_"$t"; only+=(--only generate) ;;
    inspatio15) get_inspatio15; dit15=1 ;;
    da3) get_da3; only+=(--only geometry) ;;
    florence) get_florence; only+=(--only caption) ;;
    tae) get_tae; only+=(--only tae) ;;
    spacetimepilot) get_spacetimepilot; only+=(--only spacetimepilot) ;;
    check) check_all=1 ;;
  esac
done
[ "$check_all" = 1 ] && only=()

[ "$DRY" = 1 ] && exit 0
if [ "$dit15" = 1 ]; then
  "$PY" -m pipeline.weights --dit "$CKPT/InSpatio-World-1.5-1.3B/InSpatio-World-1.5-1.3B.safetensors"
  [ ${#only[@]} -eq 0 ] && [ "$check_all" = 0 ] && exit 0
fi
echo "[download] checking $CKPT"
"$PY" -m pipeline.weights "$CKPT" "${only[@]}"

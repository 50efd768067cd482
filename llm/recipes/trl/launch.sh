#!/usr/bin/env bash
# Launch a TRL recipe with accelerate + DeepSpeed ZeRO-3.
#   llm/recipes/trl/launch.sh CONFIG.yaml --model_name_or_path /models/X --train_files /data/train.parquet [more overrides]
# Environment: ACCELERATE_CONFIG (default: accelerate_zero3.yaml next to this script), NUM_PROCESSES
# (default: from the accelerate config), and the usual NCCL / CUDA_VISIBLE_DEVICES settings.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: $0 CONFIG.yaml [--key value ...]" >&2
  exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="$1"; shift
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1   # everything is local
ACCEL=(--config_file "${ACCELERATE_CONFIG:-$HERE/accelerate_zero3.yaml}")
if [[ -n "${NUM_PROCESSES:-}" ]]; then ACCEL+=(--num_processes "$NUM_PROCESSES"); fi
exec accelerate launch "${ACCEL[@]}" "$HERE/train_lad.py" --config "$CONFIG" "$@"

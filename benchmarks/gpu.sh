#!/usr/bin/env bash
# The GPU run, one command:  benchmarks/gpu.sh [OUT.json]   (default: gpu.json)
#
# On one CUDA GPU, in under 8 minutes, installing nothing and reaching no network, it measures the Qwen3-0.6B
# architecture (random weights: speed and memory do not depend on weight values) with a bf16 base:
#   1. LoRA chunks training at batch 1, 2, 4, ... chunks until memory runs out (or 4 minutes pass):
#      targets/s, tokens/s, MFU against the measured bf16 matmul peak and the card's data-sheet peak (FLOPs:
#      4·N per token + causal attention 6·L·heads·head_dim·T(T+1) per sequence), peak GPU memory;
#   2. backtest inference targets/s (1,000 origins of the NASDAQ sample, batch 8);
#   3. `stockllm evaluate --models naive,lora` on the bundled NASDAQ sample with --max_train_seconds 120.
# and writes one JSON file. The tokenizer is a character-level one built in code (each digit one token, as in
# Qwen3's), or the folder named by $STOCKLLM_TOKENIZER.
# STOCKLLM_GPU_TINY=1 runs the same script on a CPU with a tiny random model (a minute; figures mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-gpu.json}")
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
TINY=${STOCKLLM_GPU_TINY:-0}
if [[ $TINY == 1 ]]; then DEVICE=cpu; TIMEOUT_TRAIN=600; TIMEOUT_EVAL=900; EVAL_SECONDS=5
else DEVICE=cuda; TIMEOUT_TRAIN=330; TIMEOUT_EVAL=200; EVAL_SECONDS=120; fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stockllm-gpu.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { echo "[gpu.sh $(date +%H:%M:%S)] $*" >&2; }

if [[ $DEVICE == cuda ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu.sh: error: no CUDA GPU is visible to torch: run it on a GPU machine (or STOCKLLM_GPU_TINY=1 on a CPU)" >&2
  exit 1
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  > "$WORK/nvidia-smi.txt" 2>/dev/null || true

say "1-2. training sweep and inference (at most ${TIMEOUT_TRAIN}s) ..."
SPEC=$("$PY" -c 'import json, sys; print(json.dumps({"work": sys.argv[1], "device": sys.argv[2],
  "tiny": sys.argv[3] == "1", "budget_s": 240, "tokenizer": sys.argv[4] or None}))' \
  "$WORK" "$DEVICE" "$TINY" "${STOCKLLM_TOKENIZER:-}")
status=0
timeout "$TIMEOUT_TRAIN" "$PY" benchmarks/stepbench.py gpu "$SPEC" > "$WORK/train.json" 2> "$WORK/train.log" || status=$?
[[ $status == 0 ]] || { say "training sweep failed (exit $status): $(tail -n 3 "$WORK/train.log")"; }

say "3. evaluate naive + lora on the NASDAQ sample, --max_train_seconds $EVAL_SECONDS ..."
eval_status=0
start=$(date +%s)
if [[ -f "$WORK/qwen3/config.json" ]]; then
  timeout "$TIMEOUT_EVAL" "$PY" -m stockllm evaluate --data nasdaq --models naive,lora --model_path "$WORK/qwen3" \
    --max_train_seconds "$EVAL_SECONDS" --device "$DEVICE" --output_dir "$WORK/eval" --quiet \
    > "$WORK/eval.log" 2>&1 || eval_status=$?
else
  eval_status=-1; echo "no model folder: the training sweep did not get that far" > "$WORK/eval.log"
fi
EVAL_S=$(( $(date +%s) - start ))

"$PY" benchmarks/stepbench.py merge "$("$PY" -c 'import json, sys; print(json.dumps(dict(zip(
  ["work", "out", "train_status", "eval_status", "eval_seconds", "eval_train_seconds", "tiny"],
  [sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]),
   sys.argv[7] == "1"]))))' "$WORK" "$OUT" "$status" "$eval_status" "$EVAL_S" "$EVAL_SECONDS" "$TINY")"
say "wrote $OUT"

#!/usr/bin/env bash
# One lent-GPU session (the device tool: 15 minutes of device time in all, machine start included,
# torch + triton but no dvc / mlflow / venv): the GPU tests, then every benchmark of the batched
# cell and the CUDA-graph steps, in at most ~8 minutes. Each variant runs in its own process under
# its own time limit, cheapest and most important first, compile / capture-heavy ones last; every
# JSON line is printed and appended to $OUT/bench.jsonl the moment it is measured, so a cut-short
# session still brings back what it measured. Run from the repository root:
#
#   OUT=/tmp/out bash bench/gpu_session.sh            # on the GPU machine ($OUT: what comes back)
#   SMOKE=1 OUT=/tmp/out bash bench/gpu_session.sh    # CPU, toy sizes, nothing kept (CI runs this)
#
# Back here: `python bench/ingest.py $OUT/bench.jsonl` appends the CUDA lines to reports/bench/
# and rewrites reports/bench.md (bench/README.md, "On a lent GPU machine").
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
export PYTHONPATH=packages/nascore/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 NASCORE_PROGRESS=0
PY=${PY:-python3}
LINES=$OUT/bench.jsonl
START=$(date +%s)
BUDGET=${BUDGET:-480}   # seconds for everything below; an item that would not start in time is skipped

if [[ ${SMOKE:-0} == 1 ]]; then   # CPU, toy sizes, no file under reports/bench/ touched
  DEV=(--device cpu --no-save); SIZE=(--layers 3 --C 4); B64=4; B256=6; TRAIN=(--layers 3 --C 8 --batch 4)
  STEPS=(--warmup 1 --steps 1 --runs 1)  # bf16 + channels_last is refused on a CPU: fp32 for the search
  SEARCH=(--images 64 --batch 16 --epochs 2 --layers 3 --C 4 --impl batched_fp32)
  TESTS=(tests/unit/train/test_graphs.py -k "cuda or capturable")
else
  DEV=(); SIZE=(); B64=64; B256=256; TRAIN=(); STEPS=(--warmup 2 --steps 3 --runs 3)
  SEARCH=(--epochs 1)  # ~70 s of search at the H200's measured step time, plus data and capture
  TESTS=(tests/unit/train/test_graphs.py tests/unit/ops/test_kernels.py tests/unit/ops/test_fused_mixed_op.py -k cuda)
fi

left() { echo $((BUDGET - ($(date +%s) - START))); }
# item LIMIT CMD...: run CMD under LIMIT seconds (less if the budget is short), its JSON lines to $LINES
item() {
  local limit=$1; shift
  local remaining; remaining=$(left)
  if (( remaining < 15 )); then echo "# skipped (budget spent): $*" | tee -a "$OUT/session.log"; return; fi
  (( limit > remaining )) && limit=$remaining
  echo "# $(date +%T) [$limit s] $*" | tee -a "$OUT/session.log"
  timeout -k 5 "$limit" "$PY" "$@" 2>>"$OUT/stderr.log" | tee -a "$OUT/stdout.log" | grep --line-buffered '^{' >>"$LINES"
  local rc=${PIPESTATUS[0]}
  (( rc != 0 )) && echo "#   exit $rc (124: time limit)" | tee -a "$OUT/session.log"
  return 0
}

{ "$PY" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', sys.version.split()[0])"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  date -u +%FT%TZ; git rev-parse HEAD 2>/dev/null; } >"$OUT/device.txt" 2>&1

# 1. correctness on the device: replayed graphs vs eager, no host sync, compiled Triton kernels
item 120 -m pytest -q -p no:cacheprovider "${TESTS[@]}"
# 2. eager variants. What the batched cell cuts: ATen ops and CUDA kernels of one first-order step
for v in eager_fp32 loop_fp32 batched_fp32; do
  item 45 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants $v --batch $B64 --kernels --top 15 --warmup 0 --steps 1 --runs 1
done
#    the search step at batch 64, each variant alone, then batch 256; second order against first
for v in eager_fp32 loop_fp32 fused_fp32 batched_fp32 batched_bf16_cl; do
  item 45 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants $v --batch $B64 "${STEPS[@]}"
done
for v in eager_fp32 batched_bf16_cl; do
  item 50 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants $v --batch $B256 "${STEPS[@]}"
done
for v in batched_fp32 batched_bf16_cl; do  # the second-order step is not captured
  item 50 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants $v --batch $B64 --order 2 "${STEPS[@]}"
done
#    DARTS_V2 training (20 cells, C=36, batch 96), the data pipeline
for v in eager_fp32 bf16_cl; do
  item 45 bench/derived_train.py "${DEV[@]}" "${TRAIN[@]}" --variants $v "${STEPS[@]}"
done
item 30 bench/data_pipeline.py "${DEV[@]}" $([[ ${SMOKE:-0} == 1 ]] && echo --images 200 --batch 50 --runs 1)
# 3. captured variants (CUDA graphs): kernels, the search step, training, a whole search (a line per epoch)
item 45 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants batched_bf16_cl_graphs --batch $B64 --kernels --top 15 --warmup 0 --steps 1 --runs 1
for v in batched_fp32_graphs batched_bf16_cl_graphs batched_recompute_bf16_cl_graphs; do
  item 50 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants $v --batch $B64 "${STEPS[@]}"
done
item 50 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants batched_bf16_cl_graphs --batch $B256 "${STEPS[@]}"
item 150 bench/search_to_genotype.py "${DEV[@]}" "${SEARCH[@]}"
for v in fp32_graphs bf16_cl_graphs; do
  item 50 bench/derived_train.py "${DEV[@]}" "${TRAIN[@]}" --variants $v "${STEPS[@]}"
done
# 4. what is left of the budget: torch.compile variants (slow to compile)
item 90 bench/derived_train.py "${DEV[@]}" "${TRAIN[@]}" --variants bf16_cl_compiled "${STEPS[@]}"
item 90 bench/supernet_step.py "${DEV[@]}" "${SIZE[@]}" --variants fused_bf16_cl_cudagraphs --batch $B64 "${STEPS[@]}"

echo "# done in $(( $(date +%s) - START )) s; $(grep -c . "$LINES" 2>/dev/null || echo 0) JSON lines in $LINES" | tee -a "$OUT/session.log"

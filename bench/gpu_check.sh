#!/usr/bin/env bash
# The GPU checks in one command, on a machine where torch sees CUDA (docs/benchmarks.md, "Training on a GPU").
#   bash bench/gpu_check.sh tests OUT                   # the gpu-marked tests: plain trl, then with unsloth
#   bash bench/gpu_check.sh train OUT [MODEL] [CASES]   # bench/train_gpu_bench.py cases side by side + report
# PYTHON: the interpreter (python3). STEPS: training steps per case (100: about two epochs of the sample).
# WORK: where the cases train (OUT/work). UNSLOTH_PATH: a folder put first on PYTHONPATH for the unsloth
# runs only: unsloth 2026.10 pins trl<=1.15 and datasets<5 while this project pins trl 1.16 and datasets
# 5.2, so unsloth lives in its own environment (or its own folder of packages) beside ours.
set -u -o pipefail
stage=${1:?tests or train}; out=${2:?output folder}; py=${PYTHON:-python3}
mkdir -p "$out"
with_unsloth() {      # unsloth's own folder first on the path, when given; else the current environment
  if [ -n "${UNSLOTH_PATH:-}" ]; then PYTHONPATH="$UNSLOTH_PATH${PYTHONPATH:+:$PYTHONPATH}" "$@"; else "$@"; fi; }
case $stage in
tests)
  $py -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider -rA; rc=$?
  if [ -n "${UNSLOTH_PATH:-}" ]; then with_unsloth $py -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider -rA || rc=1; fi
  exit $rc ;;
train)
  model=${3:-smollm2}; cases=${4:-trl-lora unsloth-lora trl-qlora unsloth-qlora torchrun-lora}; rc=0
  for c in $cases; do
    run=(timeout 600 $py bench/train_gpu_bench.py run "$c" --model "$model" --out-dir "$out" --steps "${STEPS:-100}"
         --work-dir "${WORK:-$out/work}")
    case $c in unsloth-*) with_unsloth "${run[@]}" || rc=1 ;; *) "${run[@]}" || rc=1 ;; esac
  done
  $py bench/train_gpu_bench.py report "$out" --json "$out/results.json"
  exit $rc ;;
*) echo "unknown stage $stage: tests | train" >&2; exit 2 ;;
esac

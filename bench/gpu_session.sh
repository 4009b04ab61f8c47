#!/usr/bin/env bash
# One-shot GPU check for a lent device machine (torch + Triton preinstalled there, no network), sized
# for the device tool's limits: one command of at most 10 minutes, at most 8 files back from $OUT.
#
#   bash bench/gpu_session.sh [BUDGET_S]        (default 540: ends by itself inside a 600 s timeout_s)
#
# Stages, in order of value, each under its own time cap and never past the budget: build with the
# CUDA kernels; the gpu-marked tests; the op microbenchmarks (--quick); bench/train_step.py; the
# loader bench. Every log and JSON goes to a work folder that is packed into $OUT/gpu_results.tgz
# after each stage (so a run cut short still returns what it finished), with $OUT/summary.txt
# saying which stage ended how. Unpack here with
#   tar xzf /path/to/gpu_results.tgz -C /tmp/gpu && cp /tmp/gpu/results/*.json bench/results/<device>/
# (the logs beside results/ are for reading: pytest_gpu.log, bench.log, train_step.log, ...)
# Packages the device image lacks (open_clip_torch for LCP-GAN; see bench/gpu_wheels.sh) are
# installed from ./.whl when it is carried.
set -uo pipefail
BUDGET=${1:-540}
OUT=${OUT:-gpu_out}
W=$(mktemp -d)
R="$W/results"  # the JSON records, named as under bench/results/<device>/
mkdir -p "$OUT" "$R"
START=$(date +%s)
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PY=${PY:-python3}

pack() { tar czf "$OUT/gpu_results.tgz" -C "$W" . 2>/dev/null; cp "$W/summary.txt" "$OUT/summary.txt" 2>/dev/null; }

# stage NAME CAP_S LOG CMD...: run CMD with at most min(CAP_S, what is left of the budget) seconds
stage() {
  local name=$1 cap=$2 log=$3; shift 3
  local left=$(( BUDGET - ($(date +%s) - START) - 10 ))
  (( left < cap )) && cap=$left
  if (( cap < 15 )); then
    echo "$name: skipped (budget spent)" >> "$W/summary.txt"; pack; return 0
  fi
  local t0=$(date +%s) rc
  timeout --kill-after=5 "$cap" "$@" > "$W/$log" 2>&1
  rc=$?
  local what="rc $rc"
  (( rc == 124 || rc == 137 )) && what="cut at its ${cap} s cap"
  echo "$name: $what after $(( $(date +%s) - t0 )) s (log: $log)" >> "$W/summary.txt"
  tail -3 "$W/$log" | sed 's/^/    /' >> "$W/summary.txt"
  pack
  return $rc
}

{ nvidia-smi -L; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } \
  > "$W/device.txt" 2>&1
cp "$W/device.txt" "$W/summary.txt"
if ls .whl/*.whl > /dev/null 2>&1; then
  stage wheels 60 wheels.log $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
stage build 240 build.log bash -c "$PY -m pip install -q --no-build-isolation --no-deps -e . && \
  $PY -c 'import ssgan_fast; ssgan_fast.build_info(print_=True)'" || { echo "build failed: stopping" >> "$W/summary.txt"; pack; exit 1; }
XDIST=""
$PY -c "import xdist" 2> /dev/null && XDIST="-n 8"
stage gpu_tests 200 pytest_gpu.log $PY -m pytest -q -m gpu $XDIST -p no:cacheprovider tests
stage op_bench 150 bench.log $PY bench/run.py --device cuda --quick --out "$R"
stage train_step 120 train_step.log $PY bench/train_step.py --device cuda --quick --out "$R/train_step.json"
SSGAN_FAST_TRAIN_STEP_JSON="$R/train_step.json" \
  stage loader 60 loader.log $PY bench/loader.py --device cuda --quick --out "$R/loader.json"
echo "total $(( $(date +%s) - START )) s of a $BUDGET s budget" >> "$W/summary.txt"
pack
cat "$W/summary.txt"

#!/usr/bin/env bash
# One-shot GPU check for a lent device machine (torch + Triton preinstalled there, no network), sized
# for the device tool's limits: one command of at most 10 minutes, at most 8 files back from $OUT.
#
#   bash tools/gpu_session.sh [BUDGET_S]        (default 540: ends by itself inside 9 minutes)
#
# Prepare here first (no GPU needed), then carry both in the run:
#   bash tools/gpu_prebuild.sh    -> .prebuilt/  the cp312 / torch 2.11 / sm_90 _C (no compiling there)
#   bash tools/gpu_wheels.sh      -> .whl/       packages the device image lacks (open_clip_torch, ...)
#
# Stages, in order of value, each under its own time cap and never past the budget: install (the
# prebuilt _C when it matches the sources and loads, else a build there); the gpu-marked tests; the
# op microbenchmarks (--quick); the table's Triton kernels compiled and loaded there and compared with
# the table (registers, spills, occupancy from the device's limits); bench/train_step.py; the loader
# bench. Every log and JSON goes to a work folder that is packed into $OUT/gpu_results.tgz after each
# stage (a run cut short still returns what it finished), with $OUT/summary.txt saying first what
# failed, then which stage ended how. Unpack here with
#   tar xzf /path/to/gpu_results.tgz -C /tmp/gpu && cp /tmp/gpu/results/*.json bench/results/<device>/
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
JOBS=$(nproc 2>/dev/null || echo 8)
: > "$W/stages.txt"
: > "$W/failed.txt"

summary() {  # what failed first, then the stages in order
  { cat "$W/device.txt"
    if [ -s "$W/failed.txt" ]; then echo "FAILED:"; sed 's/^/  /' "$W/failed.txt"; else echo "FAILED: nothing"; fi
    echo "STAGES:"; cat "$W/stages.txt"; } > "$W/summary.txt"
}
pack() { summary; tar czf "$OUT/gpu_results.tgz" -C "$W" . 2>/dev/null; cp "$W/summary.txt" "$OUT/summary.txt" 2>/dev/null; }

# stage NAME CAP_S LOG CMD...: run CMD with at most min(CAP_S, what is left of the budget) seconds
stage() {
  local name=$1 cap=$2 log=$3; shift 3
  local left=$(( BUDGET - ($(date +%s) - START) - 10 ))
  (( left < cap )) && cap=$left
  if (( cap < 15 )); then
    echo "$name: skipped (budget spent)" >> "$W/stages.txt"; echo "$name: skipped (budget spent)" >> "$W/failed.txt"
    pack; return 0
  fi
  local t0=$(date +%s) rc
  timeout --kill-after=5 "$cap" "$@" > "$W/$log" 2>&1
  rc=$?
  local what="rc $rc"
  (( rc == 124 || rc == 137 )) && what="cut at its ${cap} s cap"
  echo "$name: $what after $(( $(date +%s) - t0 )) s (log: $log)" >> "$W/stages.txt"
  tail -3 "$W/$log" | sed 's/^/    /' >> "$W/stages.txt"
  if (( rc != 0 )); then
    echo "$name: $what (log: $log)" >> "$W/failed.txt"
    # the lines that say what: failing tests, differing kernels, errors
    grep -E "^(FAILED|ERROR|DIFF:|FAIL:)|Error:" "$W/$log" | head -15 | sed 's/^/    /' >> "$W/failed.txt"
  fi
  pack
  return $rc
}

{ nvidia-smi -L; $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } \
  > "$W/device.txt" 2>&1
if ls .whl/*.whl > /dev/null 2>&1; then
  stage wheels 60 wheels.log $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
CHECK="import ssgan_fast, ssgan_fast._C; ssgan_fast.build_info(print_=True)"
if $PY tools/prebuilt.py use > "$W/prebuilt.log" 2>&1 && \
   stage install 60 build.log bash -c "SSGAN_FAST_PREBUILT=1 $PY -m pip install -q --no-build-isolation --no-deps -e . \
     && $PY -c '$CHECK'"; then
  echo "install: the prebuilt _C ($(head -1 "$W/prebuilt.log"))" >> "$W/stages.txt"
else
  cat "$W/prebuilt.log" >> "$W/stages.txt"
  rm -f ssgan_fast/_C*.so
  stage build 240 build.log bash -c "$PY -m pip install -q --no-build-isolation --no-deps -e . && $PY -c '$CHECK'" \
    || { echo "build failed: stopping" >> "$W/failed.txt"; pack; cat "$W/summary.txt"; exit 1; }
fi
XDIST=""
$PY -c "import xdist" 2> /dev/null && XDIST="-n 8"
stage gpu_tests 200 pytest_gpu.log $PY -m pytest -q -m gpu $XDIST -p no:cacheprovider tests
stage op_bench 150 bench.log $PY bench/run.py --device cuda --quick --out "$R"
stage aot_device 90 aot_device.log $PY tools/aot.py device --jobs "$JOBS" --out "$R/aot_device.json"
stage train_step 120 train_step.log $PY bench/train_step.py --device cuda --quick --out "$R/train_step.json"
SSGAN_FAST_TRAIN_STEP_JSON="$R/train_step.json" \
  stage loader 60 loader.log $PY bench/loader.py --device cuda --quick --out "$R/loader.json"
echo "total $(( $(date +%s) - START )) s of a $BUDGET s budget" >> "$W/stages.txt"
pack
cat "$W/summary.txt"

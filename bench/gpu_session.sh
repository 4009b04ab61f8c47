#!/usr/bin/env bash
# One-shot GPU check for a lent device machine (torch + Triton preinstalled there, no network):
# build with the CUDA kernels, run the gpu-marked tests and the benchmarks, leave logs and JSON
# in $OUT (or ./gpu_out). Usage: bash bench/gpu_session.sh [--quick]
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
nvidia-smi -L | tee "$OUT/device.txt"
python -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -5 | tee "$OUT/build.log"
python -c "import ssgan_fast; ssgan_fast.build_info(print_=True)" | tee -a "$OUT/build.log"
python -m pytest -q -m gpu tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -15
python -m pytest -q tests/ops/test_api.py 2>&1 | tail -3 | tee -a "$OUT/pytest_gpu.log"
python bench/run.py --device cuda --out "$OUT/bench" ${1:-} 2>&1 | tee "$OUT/bench.log" | tail -80
python bench/train_step.py --device cuda --out "$OUT/train_step.json" 2>&1 | tee "$OUT/train_step.log" | tail -20
SSGAN_FAST_TRAIN_STEP_JSON="$OUT/train_step.json" python bench/loader.py --device cuda --out "$OUT/loader.json" 2>&1 | tee "$OUT/loader.log" | tail -20

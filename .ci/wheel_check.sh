#!/usr/bin/env bash
# A plain wheel, as a PyTorch user builds it: nothing set (no FORCE_CUDA, CUDA_HOME or
# TORCH_CUDA_ARCH_LIST; setup.py finds the toolkit behind the nvcc wrapper and picks sm_80 + sm_90 +
# compute_90 PTX when no GPU is visible), installed into a fresh venv (torch from the pinned wheel,
# nothing else of this checkout) and used from outside the tree: build_info reports the CUDA
# kernels built, the _C holds sm_80 / sm_90 code and compute_90 PTX, and a smoke subset of the op
# tests passes against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-python}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
t0=$(date +%s)
env -u FORCE_CUDA -u CUDA_HOME -u CUDA_PATH -u TORCH_CUDA_ARCH_LIST -u SSGAN_FAST_NO_CUDA MAX_JOBS=${MAX_JOBS:-2} \
  $PY -m pip wheel -q --no-build-isolation --no-deps -w "$W/wheels" . 2>&1 | grep -v "^WARNING: Location" || true
WHL=$(ls "$W"/wheels/ssgan_fast-*.whl)
echo "built $(basename "$WHL") ($(du -h "$WHL" | cut -f1)) in $(( $(date +%s) - t0 )) s"
$PY -m venv "$W/venv"
V="$W/venv/bin/python"
$V -m pip install -q -U pip 2>&1 | grep -v "^WARNING: Location" || true
$V -m pip install -q torch==2.14.1 numpy pytest scipy "$WHL" 2>&1 | grep -v "^WARNING: Location" || true
# the smoke tests run from a copy outside the checkout, so nothing can import the tree instead
mkdir -p "$W/smoke/tests"
cp tests/__init__.py tests/conftest.py "$W/smoke/tests/"
cp -r tests/ops tests/kernels "$W/smoke/tests/"
printf '[pytest]\nmarkers =\n    gpu: needs a CUDA device\n    slow: long-running\n' > "$W/smoke/pytest.ini"
cd "$W/smoke"
$V - <<PY
import os, subprocess, sys
import ssgan_fast, ssgan_fast._C as C
from ssgan_fast import build_info
assert not ssgan_fast.__file__.startswith("$ROOT"), ssgan_fast.__file__
info = build_info(print_=True)
assert info["extension"]["with_cuda"], "the wheel was built without its CUDA kernels"
from ssgan_fast.evaluation import _shipped_manifest, shipped_classifier
assert len(_shipped_manifest()) == 3 and all(shipped_classifier(n) for n in _shipped_manifest()), "shipped classifiers"
tool = os.path.join(os.path.dirname(__import__("triton").__file__), "backends", "nvidia", "bin", "cuobjdump")
elf = subprocess.run([tool, "--list-elf", C.__file__], capture_output=True, text=True).stdout
ptx = subprocess.run([tool, "--list-ptx", C.__file__], capture_output=True, text=True).stdout
for arch in ("sm_80", "sm_90"):
    assert f".{arch}.cubin" in elf, (arch, elf)
assert ".sm_90.ptx" in ptx, ptx
print("wheel _C:", C.__file__, "- cubins sm_80 + sm_90, compute_90 PTX")
PY
# (the cpu-cuda-emu cases need the checkout's CUDA emulation build, tools/cuda_emu.py: not part of the wheel)
SSGAN_FAST_AOT_COVERAGE=0 $V -m pytest -q -p no:cacheprovider tests/ops/test_api.py tests/ops/test_aam.py \
  tests/kernels/test_launch_errors.py -k "not every_cuda_launch_is_checked and not cuda-emu" -x
echo "wheel check passed in $(( $(date +%s) - t0 )) s"

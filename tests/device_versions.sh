#!/usr/bin/env bash
# The whole test suite on CPU under the versions of the lent GPU machines (torch 2.11.0 + Triton 3.6.0;
# this machine's torch is 2.14.1 with Triton 3.8): catches API drift in the Python code, in the
# Triton kernels (run by 3.6's interpreter, which needs a numpy < 2.4) and in the C++ / CUDA sources
# (compiled against 2.11's headers, FORCE_CUDA=1 where nvcc exists) before a GPU session does.
# A side venv (system packages visible: the CUDA 13 libraries, scipy, ...) and a copy of the working
# tree's files, so the main environment and build are left as they are. About 530 MB of wheels.
#   bash tests/device_versions.sh [pytest args]      (make test-device-versions)
set -euo pipefail
cd "$(dirname "$0")/.."
ENV=${SSGAN_DEVICE_ENV:-/tmp/ssgan-device-env}
SRC=${SSGAN_DEVICE_SRC:-/tmp/ssgan-device-src}
PY=${PY:-python}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if [ ! -x "$ENV/bin/python" ]; then
  $PY -m venv --system-site-packages "$ENV"
  "$ENV/bin/python" -m pip install -q --no-deps torch==2.11.0 torchvision==0.26.0 triton==3.6.0 numpy==2.2.6
fi
rm -rf "$SRC" && mkdir -p "$SRC"
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$SRC"
cd "$SRC"
if [ -x "$CUDA_HOME/bin/nvcc" ]; then export FORCE_CUDA=1 CUDA_HOME TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}; fi
MAX_JOBS=${MAX_JOBS:-2} "$ENV/bin/python" -m pip install -q --no-build-isolation --no-deps -e .
"$ENV/bin/python" -c "import ssgan_fast; ssgan_fast.build_info(print_=True)"
"$ENV/bin/python" -m pytest -q -p no:cacheprovider "${@:-tests}"

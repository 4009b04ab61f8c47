#!/usr/bin/env bash
# Build here, ahead of a GPU session, the ssgan_fast._C that the lent GPU machines load: CPython 3.12,
# torch 2.11.0 headers (the device image's torch 2.11.0+cu130), nvcc 13, sm_90 only. Writes
# .prebuilt/_C.cpython-312-x86_64-linux-gnu.so and .prebuilt/_C.json (sources' sha256, torch, Python,
# architectures): git-ignored, <= 30 MB; name .prebuilt in the device run's `carry`, and
# tools/gpu_session.sh installs it when it matches the sources, else builds there.
#   bash tools/gpu_prebuild.sh          (PY312=/path/to/python3.12 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY312=${PY312:-$(command -v python3.12 || echo "$(pyenv root 2>/dev/null || echo ~/.pyenv)/versions/3.12.1/bin/python")}
ENV=${SSGAN_CP312_ENV:-/tmp/ssgan-cp312}
SRC=${SSGAN_CP312_SRC:-/tmp/ssgan-cp312-src}
TORCH=${TORCH_VERSION:-2.11.0}
if [ ! -x "$ENV/bin/python" ]; then
  "$PY312" -m venv "$ENV"
  "$ENV/bin/python" -m pip install -q -U pip
fi
"$ENV/bin/python" -m pip install -q --no-deps "torch==$TORCH" numpy setuptools wheel ninja typing_extensions sympy \
  mpmath filelock networkx jinja2 markupsafe fsspec
# the CUDA 13 headers torch's CUDA headers include (cublas, cusparse, ...) come with this machine's
# nvidia wheels (the device image has them installed)
EXTRA=$(python3 -c "import glob, site; print(':'.join(d for sp in site.getsitepackages() for d in glob.glob(sp + '/nvidia/cu*/include')))")
# torch imports its CUDA libraries (cudnn, cublas, ...) at import: this machine's, not installed in the venv
export LD_LIBRARY_PATH=$(python3 -c "import glob, site; print(':'.join(d for sp in site.getsitepackages() for d in glob.glob(sp + '/nvidia/*/lib')))")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
rm -rf "$SRC" && mkdir -p "$SRC"
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$SRC"
cd "$SRC"
FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 SSGAN_FAST_EXTRA_INCLUDE="$EXTRA" MAX_JOBS=${MAX_JOBS:-2} \
  "$ENV/bin/python" setup.py -q build_ext --inplace 2>&1 | grep -v "^WARNING: Location" | tail -5
SO=$(ls ssgan_fast/_C.cpython-312-*.so)
strip --strip-debug "$SO"
mkdir -p "$ROOT/.prebuilt"
rm -f "$ROOT"/.prebuilt/_C*.so
cp "$SO" "$ROOT/.prebuilt/"
"$ENV/bin/python" - "$ROOT" "$(basename "$SO")" <<'PY'
import json, os, sys, sysconfig
root, name = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(root, "tools"))
import torch
from prebuilt import sources_hash
meta = {"file": name, "sources_sha256": sources_hash(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"), "archs": "9.0"}
json.dump(meta, open(os.path.join(root, ".prebuilt", "_C.json"), "w"), indent=1)
print(meta)
PY
SIZE=$(du -m "$ROOT/.prebuilt/$(basename "$SO")" | cut -f1)
echo "prebuilt: .prebuilt/$(basename "$SO") ($SIZE MB)"
if [ "$SIZE" -gt 30 ]; then echo "error: the prebuilt _C is over 30 MB" >&2; exit 1; fi

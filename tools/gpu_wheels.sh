#!/usr/bin/env bash
# Fetch (here, where pip reaches the registry) the wheels that the device image lacks, into ./.whl
# (git-ignored); name .whl in the device run's `carry` and tools/gpu_session.sh installs them there.
# open_clip_torch (LCP-GAN's CLIP architectures and tokenizer) and its two needs that the image does
# not hold; the rest of its needs (timm, huggingface_hub, regex, safetensors, tqdm) are there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
ver() { python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
for pkg in open_clip_torch ftfy wcwidth; do
  v=$(ver "$pkg")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg${v:+==$v}"
done
ls -la .whl

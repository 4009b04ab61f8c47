"""The CUDA kernels executed on the CPU (tools/cuda_emu.py, csrc/emu/cuda_emu.h): the op tests' backend
sweep runs every op through them (backend cpu-cuda-emu) against the float64 reference; here, the race
check. Every kernel runs once under ThreadSanitizer (the emulation built with -fsanitize=thread, in a
process started with the sanitizer's runtime preloaded) with no report; and a planted missing
__syncthreads (SSGAN_EMU_SKIP_SYNC skips one barrier) must be reported as a data race, so the check can
fail."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# every emulated kernel once, at shapes with ragged tiles (B, K, D not multiples of the block or tile sizes)
SCRIPT = r"""
import os, sys, torch
os.environ.pop("LD_PRELOAD")  # this process runs under the sanitizer; the compiler it starts does not
sys.path.insert(0, os.environ["SSGAN_ROOT"])
torch.set_num_threads(1)
from tools import cuda_emu
cuda_emu.build(tsan=True, install=False)
os.environ["SSGAN_FAST_BACKEND"] = "cuda_emu"
from ssgan_fast import ops
g = torch.Generator().manual_seed(0)
x = torch.randn(5, 37, generator=g, requires_grad=True)
w = torch.randn(70, 37, generator=g, requires_grad=True)
t = torch.randint(0, 70, (5,), generator=g)
ops.aam_cross_entropy(x, w, t).backward()
ops.aam_logits(x, w, t).sum().backward()
tau = torch.tensor(0.3, requires_grad=True)
(ops.cosine_softmax(x, w, tau) * torch.randn(5, 70, generator=g)).sum().backward()
ops.prototype_ema_update(w.detach().clone(), x.detach(), torch.rand(5, 70, generator=g), 0.9)
a, b = torch.randn(45, 9, generator=g), torch.randn(38, 9, generator=g)
ops.knn_smallest(a, b, 3)
ops.knn_radius_count(a, b, torch.rand(45, generator=g) * 9, torch.rand(38, generator=g) * 9)
st = ops.FeatureStats(70, num_classes=3)
st.update(torch.randn(50, 70, generator=g), torch.randint(0, 3, (50,), generator=g))
xa, xb = torch.randn(2, 3, 9, 7, generator=g, requires_grad=True), torch.randn(2, 3, 9, 7, generator=g)
boxes = torch.tensor([[1, 2, 6, 5], [0, 0, 9, 3]], dtype=torch.int32)
ops.cutmix(xa, xb, boxes)[0].sum().backward()
feat = torch.randn(2, 3, 9, 7, generator=g, requires_grad=True)
emb = torch.randn(2, 1, 3, 3, generator=g, requires_grad=True)
ops.mask_embed(feat, emb).sum().backward()
print("ran every kernel")
"""


def _tsan_lib() -> str | None:
    try:
        path = subprocess.run(["gcc", "-print-file-name=libtsan.so"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


def _run_under_tsan(skip: str | None):
    lib = _tsan_lib()
    if lib is None:
        pytest.skip("no ThreadSanitizer runtime (gcc -print-file-name=libtsan.so)")
    env = {k: v for k, v in os.environ.items() if k not in ("SSGAN_FAST_BACKEND", "SSGAN_EMU_SKIP_SYNC")}
    env.update(LD_PRELOAD=lib, SSGAN_ROOT=ROOT, OMP_NUM_THREADS="1",
               TSAN_OPTIONS="halt_on_error=0 report_signal_unsafe=0 exitcode=66 history_size=2")
    if skip:
        env["SSGAN_EMU_SKIP_SYNC"] = skip
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=1800)


def _barrier_line(path: str, after: str) -> str:
    """'file:line' of the first __syncthreads() after the line containing `after`."""
    lines = open(os.path.join(ROOT, path)).read().splitlines()
    start = next(i for i, s in enumerate(lines) if after in s)
    i = next(i for i in range(start, len(lines)) if "__syncthreads();" in lines[i])
    return f"{os.path.basename(path)}:{i + 1}"


@pytest.mark.skipif(sys.platform != "linux", reason="ThreadSanitizer preload: Linux")
def test_emulated_kernels_are_race_free_and_a_missing_barrier_is_caught():
    clean = _run_under_tsan(None)
    assert "ran every kernel" in clean.stdout, clean.stderr[-4000:]
    races = re.findall(r"WARNING: ThreadSanitizer: ([a-z -]+)", clean.stderr)
    assert not races, clean.stderr[-6000:]
    # the knn tile loader's barrier: without it a thread reads the shared tile while others still write it
    planted = _run_under_tsan(_barrier_line("csrc/knn/knn_cuda.cu", "void tile_dot"))
    assert "ran every kernel" in planted.stdout, planted.stderr[-4000:]
    assert "WARNING: ThreadSanitizer: data race" in planted.stderr, planted.stderr[-3000:]
    assert "knn_cuda.cu" in planted.stderr  # the report points at the kernel


def test_emulation_is_only_used_when_forced(use_backend, monkeypatch):
    """cuda_emu is never a default; forced, it runs the CUDA kernels' path on CPU tensors (the host functions
    take the GPU branch: the fused cross-entropy's row kernel, not the CPU one)."""
    from ssgan_fast import _backends as B
    from ssgan_fast.ops import aam_cross_entropy
    monkeypatch.delenv("SSGAN_FAST_BACKEND", raising=False)
    assert B.pick_backend(torch.device("cpu")) != "cuda_emu"
    use_backend("cuda_emu")
    assert B.pick_backend(torch.device("cpu")) == "cuda_emu"
    ok, why = B.availability("cuda_emu", "cuda")
    assert not ok and "CPU tensors" in why
    x, w, t = torch.randn(3, 5), torch.randn(4, 5), torch.tensor([0, 3, 1])
    emulated = aam_cross_entropy(x, w, t)
    use_backend("cpp")
    torch.testing.assert_close(emulated, aam_cross_entropy(x, w, t))


@pytest.mark.parametrize("B,D,C,chunk", [(1, 7, 100_000, None), (3, 33, 1023, 1024), (3, 33, 1025, 1024),
                                         (2, 5, 3000, 1000)], ids=["B1-C100k", "C-under-chunk", "C-over-chunk",
                                                                   "3-chunks"])
def test_emulated_cross_entropy_at_the_gpu_paths_branches(B, D, C, chunk, use_backend):
    """The CE row kernels where the host code branches: one row of 100 000 classes (the papers' largest
    heads), C just under / over a column chunk, several chunks; values and gradients against float64."""
    from ssgan_fast.ops import aam_cross_entropy
    from ssgan_fast.ops import reference as R

    from .util import assert_close
    use_backend("cuda_emu")
    g = torch.Generator().manual_seed(C)
    x0, w0 = torch.randn(B, D, generator=g), torch.randn(C, D, generator=g)
    t = torch.randint(0, C, (B,), generator=g)
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    loss = aam_cross_entropy(x, w, t, chunk_size=chunk)
    loss.backward()
    xr, wr = x0.double().requires_grad_(), w0.double().requires_grad_()
    ref = R.aam_cross_entropy(xr, wr, t)
    ref.backward()
    assert_close(loss, ref, 1e-5, 1e-4, "loss")
    assert_close(x.grad, xr.grad, 1e-5, 1e-4, "grad x")
    assert_close(w.grad, wr.grad, 1e-5, 1e-4, "grad w")

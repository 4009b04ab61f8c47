"""A kernel that fails to compile or launch raises an error naming the op, the kernel, the shapes and
dtypes and the way to force another backend - never a traceback from deep inside Triton, never a
silent fallback. Tried on CPU by making kernels fail on purpose (Triton interpreter; the CUDA
message through the same C++ function the launch check calls)."""
import glob
import os
import re

import pytest
import torch

from ssgan_fast._backends import KernelError
from ssgan_fast.ops import aam_cross_entropy, cosine_softmax, cutmix, mask_embed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

triton = pytest.importorskip("triton")


class _Failing:
    """Stands in for a @triton.jit kernel: indexing and calling it raises what Triton raises when a
    kernel does not compile (the NameError of a non-constexpr global, for instance)."""

    def __init__(self, real, exc):
        self.fn, self.exc = real.fn, exc
        self.kwargs = getattr(real, "kwargs", {})  # the decorator's arguments (do_not_specialize), as recorded

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            raise self.exc
        return run


def _break(monkeypatch, module, name, exc=None):
    import importlib
    mod = importlib.import_module(f"ssgan_fast.kernels.{module}")
    exc = exc or NameError("Cannot access global variable NORM_EPS from within @jit'ed function")
    monkeypatch.setattr(mod, name, _Failing(getattr(mod, name), exc))


def _check(msg, op, kernel, *shapes):
    assert f"op {op}" in msg, msg
    assert kernel in msg, msg
    for s in shapes:
        assert s in msg, msg
    assert "SSGAN_FAST_BACKEND=" in msg and "cpp" in msg and "ref" in msg, msg
    assert "NORM_EPS" in msg or "cause:" in msg, msg


def test_forward_compile_failure_names_op_kernel_shapes(monkeypatch, use_backend):
    use_backend("triton")
    _break(monkeypatch, "cosine_logits_fused", "_fused_fwd_kernel")
    x, p = torch.randn(5, 7, requires_grad=True), torch.randn(3, 7, requires_grad=True)
    with pytest.raises(KernelError) as e:
        cosine_softmax(x, p, 0.5)
    _check(str(e.value), "cosine_softmax", "_fused_fwd_kernel", "float32[5, 7]", "float32[3, 7]")
    assert isinstance(e.value.__cause__, NameError)  # the original error stays attached


def test_backward_failure_names_the_backward(monkeypatch, use_backend):
    use_backend("triton")
    x, p = torch.randn(5, 7, requires_grad=True), torch.randn(3, 7, requires_grad=True)
    y = cosine_softmax(x, p, 0.5)
    _break(monkeypatch, "cosine_logits_fused", "_fused_bwd_kernel")
    with pytest.raises(KernelError) as e:
        y.square().sum().backward()
    _check(str(e.value), "cosine_softmax (backward)", "_fused_bwd_kernel", "float32[5, 3]")
    assert x.grad is None  # no other backend filled in the gradient


def test_row_kernel_failure_on_the_large_C_path(monkeypatch, use_backend):
    use_backend("triton")
    _break(monkeypatch, "cosine_logits", "_ce_rows_kernel", RuntimeError("out of resources: shared memory"))
    x, w = torch.randn(4, 8, requires_grad=True), torch.randn(300, 8, requires_grad=True)
    with pytest.raises(KernelError) as e:
        aam_cross_entropy(x, w, torch.tensor([0, 1, 2, 299]))
    _check(str(e.value), "aam_cross_entropy", "_ce_rows_kernel", "float32[4, 300]")


def test_image_kernels(monkeypatch, use_backend):
    use_backend("triton")
    _break(monkeypatch, "cutmix", "_cutmix_kernel")
    a = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    boxes = torch.tensor([[0, 0, 4, 4], [1, 1, 8, 8]], dtype=torch.int32)
    with pytest.raises(KernelError) as e:
        cutmix(a, a.clone(), boxes)
    _check(str(e.value), "cutmix", "_cutmix_kernel", "float32[2, 3, 8, 8] channels_last")
    _break(monkeypatch, "cutmix", "_mask_embed_fwd_kernel")
    with pytest.raises(KernelError) as e:
        mask_embed(torch.randn(2, 4, 8, 8), torch.randn(2, 1, 4, 4))
    _check(str(e.value), "mask_embed", "_mask_embed_fwd_kernel", "float32[2, 4, 8, 8]")


def test_working_kernels_are_untouched(use_backend):
    """The wrapper is transparent when nothing fails (same values as the reference)."""
    use_backend("triton")
    from ssgan_fast.ops import reference as R
    x, p = torch.randn(5, 7), torch.randn(3, 7)
    torch.testing.assert_close(cosine_softmax(x, p, 0.5), R.cosine_softmax(x, p, 0.5).float(), rtol=1e-5, atol=1e-6)


def test_cuda_launch_message():
    """The text every CUDA launch check raises (SSGAN_CHECK_LAUNCH -> launch_error_message)."""
    C = pytest.importorskip("ssgan_fast._C")
    del C
    msg = torch.ops.ssgan_fast_C.launch_error_message(
        "aam_cross_entropy", "ce_rows_kernel", ["dots", "target"],
        [torch.zeros(64, 200), torch.zeros(64, dtype=torch.long)], "no kernel image is available for execution")
    assert msg.startswith("ssgan_fast op aam_cross_entropy: the cuda kernel ce_rows_kernel failed to launch"), msg
    assert "dots=Float[64, 200] cpu" in msg and "target=Long[64] cpu" in msg, msg
    assert "no kernel image" in msg and "SSGAN_FAST_BACKEND=triton" in msg and "SSGAN_FAST_BACKEND=ref" in msg, msg


def test_every_cuda_launch_is_checked():
    """Each launch in csrc/<family>/*.cu (SSGAN_LAUNCH(...), nvcc's <<<...>>>, common.cuh) is followed by
    SSGAN_CHECK_LAUNCH before the next launch or the end of its function; torch's generic
    C10_CUDA_KERNEL_LAUNCH_CHECK (no op, no shapes) is gone, and no launch bypasses the macro."""
    n = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "csrc", "*", "*.cu"))):
        name = os.path.relpath(path, ROOT)
        src = open(path).read()
        assert "C10_CUDA_KERNEL_LAUNCH_CHECK" not in src, name
        assert "<<<" not in src, f"{name}: a launch written <<<...>>> (use SSGAN_LAUNCH, which the CPU emulation runs)"
        for m in re.finditer(r"SSGAN_LAUNCH\(", src):
            rest = src[m.end():]
            nxt = re.search(r"SSGAN_LAUNCH\(|\n}\n", rest)
            body = rest[:nxt.start()] if nxt else rest
            assert "SSGAN_CHECK_LAUNCH" in body, f"{name}: launch at offset {m.start()} is not checked"
            n += 1
    assert n >= 9

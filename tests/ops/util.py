"""Shared helpers of the op tests: backends per device, dtype tolerance tables, comparison."""
import pytest
import torch

# (device, backend) pairs: CPU backends always (with the CUDA kernels' CPU emulation); GPU ones marked `gpu`
# (skipped without CUDA).
BACKENDS = [
    pytest.param("cpu", "cpp", id="cpu-cpp"),
    pytest.param("cpu", "triton", id="cpu-triton-interp"),
    pytest.param("cpu", "cuda_emu", id="cpu-cuda-emu"),  # the CUDA kernels emulated on the CPU (tools/cuda_emu.py)
    pytest.param("cuda", "triton", id="cuda-triton", marks=pytest.mark.gpu),
    pytest.param("cuda", "cuda", id="cuda-cuda", marks=pytest.mark.gpu),
]

# dtype, atol, rtol vs the float64 reference (tolerances relative to the largest reference value)
DTYPES = [
    pytest.param(torch.float32, 1e-5, 1e-4, id="fp32"),
    pytest.param(torch.bfloat16, 2e-2, 2e-2, id="bf16"),
    pytest.param(torch.float16, 5e-3, 5e-3, id="fp16"),
]


def assert_close(actual, expected, atol, rtol, what):
    """|a - e| <= atol + rtol * max|e|, elementwise; reports the first mismatching index."""
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    scale = expected.abs().max().item() if expected.numel() else 0.0
    err = (actual - expected).abs()
    bad = err > atol + rtol * scale
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.numel()} mismatch; first at {idx}: "
                             f"got {actual[idx].item():.6g}, want {expected[idx].item():.6g} "
                             f"(max err {err.max().item():.3g}, scale {scale:.3g})")


def leaf(t, dtype, device):
    return t.detach().to(device=device, dtype=dtype).requires_grad_(True)


def ref_leaf(t):
    """float64 reference copy of the (already rounded) low-precision input."""
    return t.detach().double().cpu().requires_grad_(True)

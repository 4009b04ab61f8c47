"""Op family 2 (aam_logits, aam_cross_entropy) vs the float64 reference."""
import math

import pytest
import torch

from ssgan_fast.ops import aam_cross_entropy, aam_logits
from ssgan_fast.ops import reference as R

from .util import BACKENDS, DTYPES, assert_close, leaf, ref_leaf

SHAPES = [(1, 3, 2), (7, 13, 5), (33, 70, 129), (5, 17, 1500)]


def _inputs(B, D, C, seed=0, wide_angles=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g)
    w = torch.randn(C, D, generator=g)
    t = torch.randint(0, C, (B,), generator=g)
    if wide_angles and B >= 3:
        x[0] = -w[t[0]]        # theta_y = pi: theta + m > pi branch
        x[1] = w[t[1]] * 3.0   # theta_y = 0: |cos| at the clamp
        x[2] = -0.95 * w[t[2]] + 0.3 * torch.randn(D, generator=g)
    return x, w, t, torch.randn(B, C, generator=g)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("B,D,C", SHAPES)
def test_aam_logits_values_and_grads(device, backend, dtype, atol, rtol, B, D, C, use_backend):
    use_backend(backend)
    x0, w0, t, g0 = _inputs(B, D, C)
    x, w = leaf(x0, dtype, device), leaf(w0, dtype, device)
    out = aam_logits(x, w, t.to(device), s=30.0, m=0.5)
    assert out.dtype == dtype and out.shape == (B, C)
    (out.float() * g0.to(device)).sum().backward()
    xr, wr = ref_leaf(x), ref_leaf(w)
    ref = R.aam_logits(xr, wr, t, 30.0, 0.5)
    (ref * g0.double()).sum().backward()
    assert_close(out, ref, atol, rtol, "logits")
    # rows at |cos| = 1 have a clamped (zero) margin derivative in both; compare the rest
    assert_close(x.grad, xr.grad, atol, rtol, "grad x")
    assert_close(w.grad, wr.grad, atol, rtol, "grad weight")


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("B,D,C,chunk", [(1, 3, 2, None), (7, 13, 5, 2), (33, 70, 129, 50), (5, 17, 1500, None),
                                         (6, 9, 2500, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_aam_cross_entropy_values_and_grads(device, backend, dtype, atol, rtol, B, D, C, chunk, reduction,
                                            use_backend):
    use_backend(backend)
    x0, w0, t, g0 = _inputs(B, D, C, seed=1)
    x, w = leaf(x0, dtype, device), leaf(w0, dtype, device)
    loss = aam_cross_entropy(x, w, t.to(device), 30.0, 0.5, reduction, chunk_size=chunk)
    assert loss.dtype == torch.float32
    up = g0[:, 0].to(device) if reduction == "none" else torch.tensor(1.7, device=device)
    (loss * up).sum().backward()
    xr, wr = ref_leaf(x), ref_leaf(w)
    ref = R.aam_cross_entropy(xr, wr, t, 30.0, 0.5, reduction)
    (ref * up.double().cpu()).sum().backward()
    assert_close(loss, ref, atol, rtol, "loss")
    assert_close(x.grad, xr.grad, atol, rtol, "grad x")
    assert_close(w.grad, wr.grad, atol, rtol, "grad weight")


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_aam_cross_entropy_recompute_path_for_large_weights(device, backend, reduction, use_backend, monkeypatch):
    """Above FUSED_CE_MAX_WEIGHT the scalar losses keep only lse and recompute in backward."""
    from ssgan_fast.ops import cosine_logits
    monkeypatch.setattr(cosine_logits, "FUSED_CE_MAX_WEIGHT", 0)
    use_backend(backend)
    x0, w0, t, _ = _inputs(11, 9, 700, seed=6)
    x, w = leaf(x0, torch.float32, device), leaf(w0, torch.float32, device)
    loss = aam_cross_entropy(x, w, t.to(device), 30.0, 0.5, reduction, chunk_size=256)
    (3.0 * loss).backward()
    xr, wr = ref_leaf(x), ref_leaf(w)
    (3.0 * R.aam_cross_entropy(xr, wr, t, 30.0, 0.5, reduction)).backward()
    assert_close(x.grad, xr.grad, 1e-5, 1e-4, "grad x")
    assert_close(w.grad, wr.grad, 1e-5, 1e-4, "grad weight")


def test_aam_cross_entropy_sum_and_large_C(use_backend):
    """C = 100 000 classes (face-recognition size) in several chunks on the C++ path."""
    use_backend("cpp")
    x0, w0, t, _ = _inputs(4, 16, 100_000, seed=2, wide_angles=False)
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    loss = aam_cross_entropy(x, w, t, 64.0, 0.5, "sum", chunk_size=30_000)
    loss.backward()
    xr, wr = x0.double().requires_grad_(), w0.double().requires_grad_()
    ref = R.aam_cross_entropy(xr, wr, t, 64.0, 0.5, "sum")
    ref.backward()
    assert_close(loss, ref, 1e-5, 1e-4, "loss")
    assert_close(x.grad, xr.grad, 1e-5, 1e-4, "grad x")
    assert_close(w.grad, wr.grad, 1e-5, 1e-4, "grad weight")


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_aam_cross_entropy_without_grad(device, backend, reduction, use_backend):
    """The no-grad path (column chunks, no gradient work) gives the same loss."""
    use_backend(backend)
    x0, w0, t, _ = _inputs(9, 12, 300, seed=5)
    with torch.no_grad():
        loss = aam_cross_entropy(x0.to(device), w0.to(device), t.to(device), 30.0, 0.5, reduction, chunk_size=128)
    ref = R.aam_cross_entropy(x0.double(), w0.double(), t, 30.0, 0.5, reduction)
    assert_close(loss, ref, 1e-5, 1e-4, "loss")


def test_margin_branches_and_zero_margin():
    """theta + m > pi uses cos - m sin m; m = 0 gives plain cosine logits."""
    c = torch.tensor([-1.0, -0.99, 0.0, 0.5], dtype=torch.float64)
    m = 0.5
    out = R.arcface_margin(c, m)
    th = math.cos(math.pi - m)
    for ci, oi in zip(c.tolist(), out.tolist(), strict=False):
        want = math.cos(math.acos(ci) + m) if ci > th else ci - math.sin(math.pi - m) * m
        assert abs(oi - want) < 1e-6
    x0, w0, t, _ = _inputs(6, 5, 4, seed=3, wide_angles=False)
    assert torch.allclose(aam_logits(x0, w0, t, 10.0, 0.0), 10.0 * R.cosine_logits(x0, w0), atol=1e-5)


@pytest.mark.parametrize("backend", ["ref", "cpp"])
def test_gradcheck_float64(backend, use_backend):
    use_backend(backend)
    x0, w0, t, _ = _inputs(5, 4, 3, seed=4, wide_angles=False)
    x0[0] = -w0[t[0]] + 0.2 * x0[0]  # theta_y + m > pi: the linear branch (away from the clamp at |cos| = 1)
    x0[1] = w0[t[1]] + 0.2 * x0[1]   # small theta_y
    assert R.cosine_logits(x0[:1], w0[t[:1]])[0, 0] < math.cos(math.pi - 0.5)
    x = x0.double().requires_grad_()
    w = w0.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: aam_logits(a, b, t, 4.0, 0.5), (x, w))
    for red in ("mean", "none"):
        assert torch.autograd.gradcheck(lambda a, b, red=red: aam_cross_entropy(a, b, t, 4.0, 0.5, red, chunk_size=2),
                                        (x, w))


def test_mixed_float64_and_meta_tensors_are_refused_with_the_ops_message():
    """float64 features with a float32 weight were accepted silently; meta tensors failed inside .item()."""
    from ssgan_fast.ops import aam_cross_entropy
    x, w, y = torch.randn(4, 8, dtype=torch.float64), torch.randn(3, 8), torch.tensor([0, 1, 2, 0])
    with pytest.raises(TypeError, match="float64 is not mixed"):
        aam_cross_entropy(x, w, y)
    aam_cross_entropy(x.float().bfloat16(), w, y)  # autocast-style mixes stay allowed
    with pytest.raises(ValueError, match="meta tensors"):
        aam_cross_entropy(x.float().to("meta"), w.to("meta"), y.to("meta"))


@pytest.mark.parametrize("backend", ["ref", "cpp", "triton"])
def test_learnable_scale_tensor(backend, use_backend):
    """A one-value tensor s (a learnable scale): values equal the float-s op's, gradients reach x, W and s
    (gradcheck in float64); a bad s is refused with the op's message. AAMHead(learn_s=True) learns it."""
    from ssgan_fast.nn import AAMHead
    use_backend(backend)
    x0, w0, t, _ = _inputs(5, 4, 3, seed=5, wide_angles=False)
    s = torch.tensor(7.0)
    torch.testing.assert_close(aam_logits(x0, w0, t, s, 0.5), aam_logits(x0, w0, t, 7.0, 0.5), rtol=1e-5, atol=1e-5)
    for red in ("mean", "sum", "none"):
        want = aam_cross_entropy(x0, w0, t, 7.0, 0.5, red)
        torch.testing.assert_close(aam_cross_entropy(x0, w0, t, s, 0.5, red), want, rtol=1e-5, atol=1e-5)
    x, w = x0.double().requires_grad_(), w0.double().requires_grad_()
    sd = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    if backend != "triton":  # the interpreter's float64 is checked by the float-s tests above
        assert torch.autograd.gradcheck(lambda a, b, c: aam_cross_entropy(a, b, t, c, 0.5), (x, w, sd))
        assert torch.autograd.gradcheck(lambda a, b, c: aam_logits(a, b, t, c, 0.5), (x, w, sd))
    bads = ((torch.tensor([1.0, 2.0]), TypeError), (torch.tensor(3), TypeError), (torch.tensor(-1.0), ValueError))
    for bad, err in bads:
        with pytest.raises(err, match="s"):
            aam_cross_entropy(x0, w0, t, bad, 0.5)
    head = AAMHead(4, 3, s=10.0, learn_s=True)
    assert "learn_s=True" in repr(head) and float(head.scale) == pytest.approx(10.0)
    loss = head.loss(x0, t)
    loss.backward()
    assert head.log_s.grad is not None and float(head.log_s.grad) != 0.0

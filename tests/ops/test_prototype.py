"""Op family 1 (cosine_softmax, clustering_loss, prototype_ema_update) vs the float64 reference."""
import pytest
import torch

from ssgan_fast.ops import clustering_loss, cosine_softmax, group_offsets, prototype_ema_update
from ssgan_fast.ops import reference as R

from .util import BACKENDS, DTYPES, assert_close, leaf, ref_leaf

# B, D, K: B = 1; odd sizes; several C++ threads; several Triton column tiles (K > 1024)
SHAPES = [(1, 3, 2), (7, 13, 5), (33, 70, 129), (5, 17, 1500)]


def _inputs(B, D, K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g), torch.randn(K, D, generator=g), torch.randn(B, K, generator=g)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("B,D,K", SHAPES)
def test_cosine_softmax_values_and_grads(device, backend, dtype, atol, rtol, B, D, K, use_backend):
    use_backend(backend)
    x0, p0, g0 = _inputs(B, D, K)
    x, p = leaf(x0, dtype, device), leaf(p0, dtype, device)
    tau = torch.tensor(0.3, device=device, requires_grad=True)
    out = cosine_softmax(x, p, tau)
    assert out.dtype == dtype and out.shape == (B, K)
    (out.float() * g0.to(device)).sum().backward()

    xr, pr = ref_leaf(x), ref_leaf(p)
    taur = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    ref = R.cosine_softmax(xr, pr, taur)
    (ref * g0.double()).sum().backward()
    assert_close(out, ref, atol, rtol, "probs")
    assert_close(x.grad, xr.grad, atol, rtol, "grad x")
    assert_close(p.grad, pr.grad, atol, rtol, "grad protos")
    assert_close(tau.grad, taur.grad, atol, max(rtol, 1e-4), "grad tau")


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES[:2])
def test_cosine_softmax_group(device, backend, dtype, atol, rtol, use_backend):
    """LCP-GAN Eq. (3): each row only sees its class's clusters; the rest is exactly 0."""
    use_backend(backend)
    counts = [2, 3, 1, 3]
    offsets = group_offsets(counts).to(device)
    K = sum(counts)
    B, D = 19, 10
    x0, p0, g0 = _inputs(B, D, K, seed=1)
    labels = torch.randint(0, len(counts), (B,), generator=torch.Generator().manual_seed(2)).to(device)
    x, p = leaf(x0, dtype, device), leaf(p0, dtype, device)
    out = cosine_softmax(x, p, 0.5, group=(labels, offsets))
    (out.float() * g0.to(device)).sum().backward()
    xr, pr = ref_leaf(x), ref_leaf(p)
    ref = R.cosine_softmax(xr, pr, 0.5, group=(labels.cpu(), offsets.cpu()))
    (ref * g0.double()).sum().backward()
    assert_close(out, ref, atol, rtol, "probs")
    assert_close(x.grad, xr.grad, atol, rtol, "grad x")
    assert_close(p.grad, pr.grad, atol, rtol, "grad protos")
    lo, hi = offsets[labels].cpu(), offsets[labels + 1].cpu()
    k = torch.arange(K)
    outside = (k[None] < lo[:, None]) | (k[None] >= hi[:, None])
    assert (out.cpu()[outside] == 0).all()
    assert torch.allclose(out.float().sum(1).cpu(), torch.ones(B), atol=1e-2)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("B,D,K", SHAPES[1:])
@pytest.mark.parametrize("lam", [0.0, 4.0])
def test_clustering_loss_values_and_grads(device, backend, dtype, atol, rtol, B, D, K, lam, use_backend):
    use_backend(backend)
    x0, p0, _ = _inputs(B, D, K, seed=3)
    x, p = leaf(x0, dtype, device), leaf(p0, dtype, device)
    tau = torch.tensor(0.7, device=device, requires_grad=True)
    loss = clustering_loss(x, p, tau, lam)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    (2.5 * loss).backward()
    xr, pr = ref_leaf(x), ref_leaf(p)
    taur = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ref = R.clustering_loss(xr, pr, taur, lam)
    (2.5 * ref).backward()
    assert_close(loss, ref, atol, rtol, "loss")
    assert_close(x.grad, xr.grad, atol, rtol, "grad x")
    assert_close(p.grad, pr.grad, atol, rtol, "grad protos")
    assert_close(tau.grad, taur.grad, atol, max(rtol, 1e-4), "grad tau")


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES[:2])
def test_prototype_ema_update(device, backend, dtype, atol, rtol, use_backend):
    use_backend(backend)
    N, K, D = 37, 6, 11
    g = torch.Generator().manual_seed(4)
    protos0 = torch.randn(K, D, generator=g)
    feats = torch.randn(N, D, generator=g)
    weights = torch.softmax(torch.randn(N, K, generator=g), 1)
    weights[:, 2] = 0  # a prototype with no mass this batch stays as it is
    protos = protos0.to(device=device, dtype=dtype)
    before = protos.clone()
    ret = prototype_ema_update(protos, feats.to(device, dtype), weights.to(device, dtype), 0.1)
    assert ret is protos
    ref = R.prototype_ema_update(before.double().cpu(), feats.to(dtype).double(), weights.to(dtype).double(), 0.1)
    assert_close(protos, ref, atol, rtol, "protos")
    assert torch.equal(protos[2], before[2])
    assert not torch.equal(protos[0], before[0])


def test_prototype_ema_matches_sequential_eq2_for_one_sample():
    """With one sample and weight u, Eq. (2) is rho <- (1 - mu) rho + mu f (for u > 0)."""
    protos = torch.randn(3, 4, dtype=torch.float64)
    f = torch.randn(1, 4, dtype=torch.float64)
    w = torch.tensor([[0.2, 0.0, 0.8]], dtype=torch.float64)
    want = protos.clone()
    want[0] = 0.9 * protos[0] + 0.1 * f[0]
    want[2] = 0.9 * protos[2] + 0.1 * f[0]
    R.prototype_ema_update(protos, f, w, 0.1)
    assert torch.allclose(protos, want)


@pytest.mark.parametrize("backend", ["ref", "cpp"])
def test_gradcheck_float64(backend, use_backend):
    use_backend(backend)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g, requires_grad=True)
    p = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    tau = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, t: cosine_softmax(a, b, t), (x, p, tau))
    assert torch.autograd.gradcheck(lambda a, b, t: clustering_loss(a, b, t, 2.0), (x, p, tau))
    offsets = group_offsets([1, 3])
    labels = torch.tensor([0, 1, 1, 0, 1, 1])
    assert torch.autograd.gradcheck(lambda a, b: cosine_softmax(a, b, 0.5, (labels, offsets)), (x, p))


def test_backends_agree_exactly_on_float64(use_backend):
    """The C++ path in float64 equals the reference to float64 round-off."""
    x0, p0, _ = _inputs(9, 8, 7, seed=6)
    x, p = x0.double(), p0.double()
    use_backend("cpp")
    a = cosine_softmax(x, p, 0.2)
    use_backend("ref")
    b = cosine_softmax(x, p, 0.2)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)

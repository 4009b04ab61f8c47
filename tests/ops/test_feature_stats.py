"""Op family 4: FeatureStats (feature_stats_moments kernels) and frechet_distance."""
import numpy as np
import pytest
import scipy.linalg
import torch

from ssgan_fast.ops import FeatureStats, frechet_distance
from ssgan_fast.ops import reference as R

from .util import BACKENDS


def _np_stats(x):
    x = np.asarray(x, dtype=np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def _scipy_fid(mu1, s1, mu2, s2):
    """pytorch-fid's calculate_frechet_distance (sqrtm-based), the value users compare against."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("device,backend", BACKENDS + [pytest.param("cpu", "ref", id="cpu-ref")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=["fp32", "fp64", "bf16"])
def test_feature_stats_matches_numpy(device, backend, dtype, use_backend):
    """Several updates, odd sizes, a large common offset (the case naive float32 sums get wrong)."""
    use_backend(backend)
    g = torch.Generator().manual_seed(0)
    D, C = 37, 5
    st = FeatureStats(D, num_classes=C, device=device)
    un = FeatureStats(D, device=device)
    xs, ys = [], []
    for n in (1, 50, 129, 7):
        x = (torch.randn(n, D, generator=g) * 0.3 + 100.0).to(dtype)
        y = torch.randint(0, C - 1, (n,), generator=g)  # class C - 1 never appears
        st.update(x.to(device), y.to(device))
        un.update(x.to(device))
        xs.append(x.double())
        ys.append(y)
    x, y = torch.cat(xs).numpy(), torch.cat(ys).numpy()
    rel = 1e-9 if dtype == torch.float64 and backend != "triton" else 2e-5
    mu, cov = _np_stats(x)
    for s in (st, un):
        np.testing.assert_allclose(s.mean().cpu().numpy(), mu, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(s.cov().cpu().numpy(), cov, rtol=rel, atol=rel * np.abs(cov).max())
        assert s.total() == len(x)
    for c in range(C - 1):
        muc, covc = _np_stats(x[y == c])
        np.testing.assert_allclose(st.mean(c).cpu().numpy(), muc, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(st.cov(c).cpu().numpy(), covc, rtol=rel, atol=rel * np.abs(covc).max())
    idx, means, covs = st.class_stats()
    assert idx.tolist() == [c for c in range(C - 1) if (y == c).sum() >= 2]
    with pytest.raises(ValueError, match="no features"):
        st.mean(C - 1)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_feature_stats_moments_kernel_vs_reference(device, backend, use_backend):
    """The raw kernel: several row chunks (> 4096 rows of one class) and tiles (D > 64)."""
    import ssgan_fast._backends as B
    g = torch.Generator().manual_seed(1)
    N, D, C = 4500, 70, 3
    x = torch.randn(N, D, generator=g) + 5
    lab = torch.cat([torch.zeros(4200, dtype=torch.int64), torch.randint(1, C, (N - 4200,), generator=g)])
    shift = torch.randn(C, D, generator=g).float()
    acc = [torch.zeros(C, dtype=torch.float64), torch.zeros(C, D, dtype=torch.float64),
           torch.zeros(C, D, D, dtype=torch.float64)]
    acc = [a.to(device) for a in acc]
    if backend == "triton":
        if device == "cpu":
            pytest.skip("too large for the interpreter; covered by test_feature_stats_matches_numpy")
        B.triton_kernels("feature_stats").moments(x.to(device), lab.to(device), shift.to(device), *acc)
    else:
        B.c_ops(backend).feature_stats_moments(x.to(device), lab.to(device), shift.to(device), *acc)
    want = R.feature_stats_moments(x, lab, shift, C)
    acc[2], want = torch.triu(acc[2]), (*want[:2], torch.triu(want[2]))  # kernels define the upper triangle
    for got, ref, name in zip(acc, want, ("count", "sum", "xtx"), strict=False):
        torch.testing.assert_close(got.cpu(), ref, rtol=2e-6, atol=1e-6 * ref.abs().max().item(), msg=name)


def test_merge_state_dict_and_bad_input():
    g = torch.Generator().manual_seed(2)
    D, C = 6, 3
    a, b, full = (FeatureStats(D, C) for _ in range(3))
    x1, y1 = torch.randn(40, D, generator=g) + 3, torch.randint(0, C, (40,), generator=g)
    x2, y2 = torch.randn(30, D, generator=g) - 2, torch.randint(0, C, (30,), generator=g)
    a.update(x1, y1)
    b.update(x2, y2)
    full.update(torch.cat([x1, x2]), torch.cat([y1, y2]))
    a.merge(b)
    for c in (None, 0, 1, 2):
        torch.testing.assert_close(a.mean(c), full.mean(c), rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(a.cov(c), full.cov(c), rtol=2e-6, atol=1e-6)  # float32 products
    s = FeatureStats(D, C).load_state_dict(a.state_dict())
    torch.testing.assert_close(s.cov(1), a.cov(1))
    with pytest.raises(ValueError, match="merge"):
        a.merge(FeatureStats(D + 1, C))
    with pytest.raises(ValueError, match="NaN"):
        a.update(torch.full((2, D), float("nan")), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[N, 6\]"):
        a.update(torch.randn(2, D + 1), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="required"):
        a.update(torch.randn(2, D))
    with pytest.raises(ValueError, match="values in"):
        a.update(torch.randn(2, D), torch.tensor([0, C]))
    with pytest.raises(ValueError, match="empty"):
        a.update(torch.randn(0, D), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match=">= 2 samples"):
        FeatureStats(D).update(torch.randn(1, D)).cov()


@pytest.mark.parametrize("D", [1, 8, 64])
def test_frechet_matches_scipy(D):
    rng = np.random.default_rng(D)
    x1 = rng.standard_normal((4 * D + 50, D)) @ rng.standard_normal((D, D)) + 1
    x2 = rng.standard_normal((4 * D + 50, D)) * 1.5
    mu1, s1 = _np_stats(x1)
    mu2, s2 = _np_stats(x2)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    want = _scipy_fid(mu1, s1, mu2, s2)
    got = frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), torch.from_numpy(mu2), torch.from_numpy(s2))
    assert isinstance(got, float)
    assert abs(got - want) <= 1e-6 * abs(want)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8 * np.trace(s1))


def test_frechet_singular_and_batched():
    rng = np.random.default_rng(0)
    D = 40
    # N < dim: both covariances singular; scipy's sqrtm is unreliable here, the value must stay finite
    a, b = rng.standard_normal((10, D)), rng.standard_normal((12, D)) + 0.5
    (mu1, s1), (mu2, s2) = _np_stats(a), _np_stats(b)
    d = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(d) and d > 0
    # one singular, one full: compare with the eigen form computed independently in numpy
    c = rng.standard_normal((200, D))
    mu3, s3 = _np_stats(c)
    w, V = np.linalg.eigh(s3)
    r3 = (V * np.sqrt(w)) @ V.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(r3 @ s1 @ r3), 0, None)).sum()
    want = ((mu1 - mu3) ** 2).sum() + np.trace(s1) + np.trace(s3) - 2 * tr
    assert frechet_distance(mu1, s1, mu3, s3) == pytest.approx(want, rel=1e-8)
    # batched = per-pair, including a singular pair
    mus1, mus2 = np.stack([mu1, mu3]), np.stack([mu2, mu1])
    ss1, ss2 = np.stack([s1, s3]), np.stack([s2, s1])
    got = frechet_distance(mus1, ss1, mus2, ss2)
    assert got.shape == (2,) and got.dtype == torch.float64
    assert got[0].item() == pytest.approx(d, rel=1e-9)
    assert got[1].item() == pytest.approx(frechet_distance(mu3, s3, mu1, s1), rel=1e-9)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu1 * np.nan, s1, mu2, s2)
    with pytest.raises(ValueError, match="sigma1 and sigma2"):
        frechet_distance(mu1, s1[:5, :5], mu2, s2)


def _ddp_worker(rank, world, path, out):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(10 + rank)
    st = FeatureStats(5, num_classes=3)
    st.update(torch.randn(20 + rank, 5, generator=g) + 10 * rank, torch.randint(0, 3, (20 + rank,), generator=g))
    st.all_reduce()
    torch.save(st.state_dict(), f"{out}.{rank}")
    dist.destroy_process_group()


def test_all_reduce_two_gloo_processes(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "st")), nprocs=2)
    full = FeatureStats(5, num_classes=3)
    for rank in range(2):
        g = torch.Generator().manual_seed(10 + rank)
        full.update(torch.randn(20 + rank, 5, generator=g) + 10 * rank, torch.randint(0, 3, (20 + rank,), generator=g))
    for rank in range(2):
        st = FeatureStats(5, num_classes=3).load_state_dict(torch.load(tmp_path / f"st.{rank}"))
        for c in (None, 0, 1, 2):
            torch.testing.assert_close(st.mean(c), full.mean(c), rtol=1e-7, atol=1e-7)
            torch.testing.assert_close(st.cov(c), full.cov(c), rtol=2e-6, atol=1e-6)


def test_frechet_distance_refuses_a_matrix_that_is_not_a_covariance():
    """A negative-definite or asymmetric sigma is an error (it returned 0.0); a rank-deficient covariance
    (fewer samples than dimensions) is accepted, with rounding-sized negative eigenvalues."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 12, generator=g, dtype=torch.float64)
    s, mu = a @ a.T, torch.zeros(12, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma1 is not positive semi-definite"):
        frechet_distance(mu, -s, mu, -s)
    with pytest.raises(ValueError, match="sigma2 is not symmetric"):
        frechet_distance(mu, s, mu, s + torch.triu(torch.ones_like(s), 1))
    x = torch.randn(5, 12, generator=g, dtype=torch.float64)
    c = torch.cov(x.T)  # rank 4
    assert frechet_distance(mu, c, mu, c) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(mu[None].repeat(3, 1), c[None].repeat(3, 1, 1), mu[None].repeat(3, 1),
                            s[None].repeat(3, 1, 1)).shape == (3,)

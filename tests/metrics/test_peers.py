"""Agreement with the libraries GAN papers cite, on the same features (the peers are test dependencies,
installed by `make install` against the torch pin): KID = torch-fidelity's and torchmetrics' (the same
subsets) and stylegan2-ada-pytorch's algorithm; IS = torch-fidelity's ISC; P/R and D/C = prdc's, P/R =
stylegan2-ada-pytorch's algorithm (d <= r); FID = pytorch-fid's; the FID Inception = pytorch-fid's
network (same random weights, nothing downloaded)."""
import logging

import numpy as np
import pytest
import torch
from prdc import compute_prdc
from pytorch_fid import fid_score
from pytorch_fid import inception as pf_inception
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torchmetrics.image.kid import poly_mmd

from ssgan_fast.metrics import FIDInceptionV3, InceptionScore, fid
from ssgan_fast.metrics.kid import intra_kid, kid, mmd2_unbiased
from ssgan_fast.metrics.manifold import manifold_metrics
from ssgan_fast.ops import FeatureStats

CPU_BACKENDS = ["cpp", "ref"]


def _feats(n_real=300, n_fake=260, dim=48, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n_real, dim, generator=g, dtype=torch.float64).abs() * 0.5  # ReLU-like, as pool3
    fake = torch.randn(n_fake, dim, generator=g, dtype=torch.float64).abs() * 0.55 + 0.02
    return real.to(dtype), fake.to(dtype)


def _subsets(n_fake, n_real, m, subsets, seed):
    """The subset draws of torch-fidelity (and of ssgan_fast.metrics.kid): fake, then real, per subset."""
    rng = np.random.RandomState(seed)
    return [(rng.choice(n_fake, m, replace=False), rng.choice(n_real, m, replace=False)) for _ in range(subsets)]


# ----------------------------------------------------------------------------------------------- KID

def test_kid_equals_torch_fidelity():
    real, fake = _feats()
    ours = kid(real, fake, subsets=20, subset_size=100, seed=7)
    theirs = kid_features_to_metric(fake, real, kid_subsets=20, kid_subset_size=100, rng_seed=7, kid_kernel="poly",
                                    kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
                                    verbose=False)
    assert ours["mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)
    assert ours["mean"] > 0  # the sides differ: a test that could fail


def test_kid_equals_torchmetrics_on_the_same_subsets():
    real, fake = _feats(seed=1)
    ours = kid(real, fake, subsets=15, subset_size=80, seed=3)
    vals = [float(poly_mmd(real[r], fake[f])) for f, r in _subsets(len(fake), len(real), 80, 15, 3)]
    assert ours["mean"] == pytest.approx(np.mean(vals), rel=1e-9)
    assert ours["std"] == pytest.approx(np.std(vals), rel=1e-9)  # torchmetrics: std(unbiased=False)


def test_kid_follows_stylegan2_ada():
    """metrics/kernel_inception_distance.py of stylegan2-ada-pytorch, on our subsets: t accumulates
    (sum(a) - sum(diag(a))) / (m - 1) - 2 sum(b) / m, then t / subsets / m."""
    real, fake = _feats(seed=2)
    n, m, subsets = real.shape[1], 90, 12
    t = 0.0
    for f, r in _subsets(len(fake), len(real), m, subsets, 11):
        x, y = fake[f].numpy(), real[r].numpy()
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    assert kid(real, fake, subsets=subsets, subset_size=m, seed=11)["mean"] == pytest.approx(t / subsets / m, rel=1e-9)


def test_kid_small_samples_shrink_the_subset_with_a_warning(caplog):
    real, fake = _feats(n_real=40, n_fake=55)
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        out = kid(real, fake, subsets=5, subset_size=1000)
    assert out["subset_size"] == 40 and "subsets of 40 instead of 1000" in caplog.text
    assert out["mean"] == pytest.approx(kid(real, fake, subsets=5, subset_size=40)["mean"], rel=1e-12)


def test_kid_bad_input():
    real, fake = _feats()
    with pytest.raises(ValueError, match="feature dims differ: real 48, generated 47"):
        kid(real, fake[:, :47])
    bad = fake.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(ValueError, match="1 row\\(s\\) with NaN"):
        kid(real, bad)
    with pytest.raises(ValueError, match=">= 2 features on each side"):
        kid(real[:1], fake)
    with pytest.raises(ValueError, match="same size m >= 2"):
        mmd2_unbiased(real[:5], fake[:6])


def test_intra_kid_is_the_mean_of_per_class_kid():
    real, fake = _feats(n_real=120, n_fake=90)
    rl, fl = torch.arange(120) % 3, torch.arange(90) % 3
    mean, per = intra_kid(real, rl, fake, fl, 3, subsets=4, subset_size=1000)
    for c in range(3):
        want = kid(real[rl == c], fake[fl == c], 4, 30, seed=2020 + c)
        assert per[c]["mean"] == pytest.approx(want["mean"], rel=1e-12) and per[c]["subset_size"] == 30
    assert mean == pytest.approx(np.mean([per[c]["mean"] for c in range(3)]))


# ------------------------------------------------------------------------------------------------ IS

def test_inception_score_equals_torch_fidelity_isc():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1003, 1008, generator=g, dtype=torch.float64) * 3
    acc = InceptionScore(1003, 10, shuffle_seed=2020)
    for i in range(0, 1003, 64):
        acc.update(logits[i:i + 64])
    m, s = acc.compute()
    theirs = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    assert m == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
    assert s == pytest.approx(theirs["inception_score_std"], rel=1e-8)


# ------------------------------------------------------------------------------- P/R, D/C (k-NN op)

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_prdc_equals_prdc(backend, use_backend):
    use_backend(backend)
    real, fake = _feats(n_real=400, n_fake=350, dim=32, seed=4)
    for k in (3, 5):
        theirs = compute_prdc(real.numpy(), fake.numpy(), k)
        ours = manifold_metrics(real, fake, k_pr=k, k_dc=k)
        for name in ("precision", "recall", "density", "coverage"):
            assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-12), (name, k)
    # P/R at k = 3 and D/C at k = 5 from one call = two prdc calls
    both = manifold_metrics(real, fake)
    p3, p5 = compute_prdc(real.numpy(), fake.numpy(), 3), compute_prdc(real.numpy(), fake.numpy(), 5)
    assert both["precision"] == pytest.approx(float(p3["precision"]), abs=1e-12)
    assert both["recall"] == pytest.approx(float(p3["recall"]), abs=1e-12)
    assert both["density"] == pytest.approx(float(p5["density"]), abs=1e-12)
    assert both["coverage"] == pytest.approx(float(p5["coverage"]), abs=1e-12)
    assert 0 < both["precision"] < 1 and 0 < both["coverage"] < 1  # not a degenerate case


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_prdc_float32_features_agree_with_prdc(backend, use_backend):
    """float32 features (the kept dtype), GEMM-form distances: equal to prdc's values."""
    use_backend(backend)
    real, fake = _feats(n_real=500, n_fake=450, dim=64, seed=5, dtype=torch.float32)
    theirs = compute_prdc(real.numpy(), fake.numpy(), 5)
    ours = manifold_metrics(real, fake, k_pr=5, k_dc=5)
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(theirs[name]), abs=1e-9), name


def test_precision_recall_follow_stylegan2_ada():
    """metrics/precision_recall.py of stylegan2-ada-pytorch: radii = kthvalue(k + 1) of the distances
    within a manifold (itself included at 0), a probe counts where dist <= radius for some point."""
    real, fake = _feats(n_real=300, n_fake=280, dim=24, seed=6)
    k = 3
    res = {}
    for name, manifold, probes in (("precision", real, fake), ("recall", fake, real)):
        kth = torch.cdist(manifold, manifold).kthvalue(k + 1, dim=1).values
        res[name] = float((torch.cdist(probes, manifold) <= kth[None, :]).any(1).double().mean())
    ours = manifold_metrics(real, fake, k_pr=k, k_dc=None, inclusive=True)
    assert ours["precision"] == pytest.approx(res["precision"], abs=1e-12)
    assert ours["recall"] == pytest.approx(res["recall"], abs=1e-12)


def test_manifold_bad_input():
    real, fake = _feats()
    with pytest.raises(ValueError, match="feature dims differ"):
        manifold_metrics(real, fake[:, :10])
    with pytest.raises(ValueError, match="more than 5 features per side"):
        manifold_metrics(real[:5], fake)
    bad = real.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        manifold_metrics(bad, fake)


# ----------------------------------------------------------------------------------------------- FID

def test_fid_equals_pytorch_fid():
    real, fake = _feats(n_real=500, n_fake=400, dim=40, seed=8)
    a, b = FeatureStats(40).update(real), FeatureStats(40).update(fake)
    theirs = fid_score.calculate_frechet_distance(real.numpy().mean(0), np.cov(real.numpy(), rowvar=False),
                                                  fake.numpy().mean(0), np.cov(fake.numpy(), rowvar=False))
    assert fid(a, b) == pytest.approx(theirs, rel=1e-8)


def test_fid_inception_gives_pytorch_fid_features(monkeypatch):
    """pytorch-fid's InceptionV3 (FID blocks), loaded with our network's random weights instead of the
    download: the pool3 features of the same images agree."""
    torch.manual_seed(0)
    ours = FIDInceptionV3(pretrained=False)
    sd = ours.net.state_dict()
    monkeypatch.setattr(pf_inception, "load_state_dict_from_url", lambda *a, **k: sd)
    theirs = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                                      normalize_input=True, use_fid_inception=True).eval()
    x = torch.rand(3, 3, 40, 52) * 2 - 1
    with torch.no_grad():
        f_ours = ours(x)["pool"]
        f_theirs = theirs((x + 1) / 2)[0].flatten(1)  # pytorch-fid takes [0, 1] and maps it to [-1, 1]
    assert f_ours.shape == f_theirs.shape == (3, 2048)
    torch.testing.assert_close(f_ours, f_theirs, rtol=1e-4, atol=1e-5)
    assert float(f_ours.std()) > 0

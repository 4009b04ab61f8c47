"""SphericGAN: every loss term present and switchable, fp32 / bf16 steps, fused vs reference ops."""
import pytest
import torch

from ssgan_fast.data import TensorLoader, images_to_tensor, make_split, open_dataset
from ssgan_fast.engine.amp import Amp
from ssgan_fast.models import get_model


def _model(**kw):
    M = get_model("sphericgan")
    cfg = M.Config(**{"ch": 4, "c_ch": 4, "z_dim": 8, "latent_dim": 8, "num_prototypes": 4, "prior_samples": 200,
                      **kw})
    torch.manual_seed(0)
    m = M(cfg, {"kind": "image", "size": 8, "channels": 1, "num_classes": 10})
    ds = open_dataset("digits", size=8)
    m.fit_prior(images_to_tensor(ds.images))
    loader = TensorLoader(ds, make_split(ds.labels, 10, label_fraction=0.1), 4, 4, seed=0)
    return m, loader


@pytest.mark.parametrize("amp", [None, "bf16"])
def test_sphericgan_step_all_terms(amp):
    m, loader = _model()
    losses = m.train_step(next(loader), 0, Amp(amp, "cpu"))
    want = {"P/clust", "D/prt_adv", "D/class_adv", "D/lat_eval", "D/lat_adv", "D/align", "G/adv", "G/verify",
            "G/lat_eval", "G/lat_adv", "G/align", "F/lat_adv", "F/align", "F/cons", "C/labeled", "C/entropy", "C/fake"}
    assert set(losses) == want
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("switch,gone", [("latent_clustering", {"P/clust", "D/lat_eval", "G/lat_eval"}),
                                         ("cluster_alignment", {"D/lat_adv", "D/align", "G/lat_adv", "G/align",
                                                                "F/lat_adv", "F/align", "F/cons"}),
                                         ("semantic_verification", {"G/verify"})])
def test_sphericgan_switches(switch, gone):
    full, loader = _model()
    ref = full.train_step(next(loader), 0)
    m, loader = _model(**{switch: False})
    losses = m.train_step(next(loader), 0)
    assert gone <= set(ref) and not (gone & set(losses)) and set(losses) == set(ref) - gone


def test_fused_ops_match_reference_over_steps(monkeypatch):
    """The same 8 steps with the fused C++ ops and with SSGAN_FAST_BACKEND=ref: same losses within tolerance."""
    runs = []
    for backend in ("cpp", "ref"):
        monkeypatch.setenv("SSGAN_FAST_BACKEND", backend)
        m, loader = _model()
        runs.append([m.train_step(next(loader), i) for i in range(8)])
    for a, b in zip(*runs, strict=False):
        for k in a:
            assert float(a[k]) == pytest.approx(float(b[k]), rel=2e-3, abs=2e-4), k


def test_slerp_is_the_great_circle():
    from ssgan_fast.models.sphericgan import slerp
    g = torch.Generator().manual_seed(0)
    a, b = torch.nn.functional.normalize(torch.randn(2, 16, generator=g), dim=1)
    t = torch.linspace(0, 1, 9)
    p = slerp(a, b, t)
    assert torch.allclose(p.norm(dim=1), torch.ones(9), atol=1e-6)
    assert torch.allclose(p[0], a, atol=1e-6) and torch.allclose(p[-1], b, atol=1e-6)
    steps = torch.arccos((p[:-1] * p[1:]).sum(1).clamp(-1, 1))  # constant angular speed
    assert torch.allclose(steps, steps.mean().expand(8), atol=1e-5)
    assert torch.allclose(steps.sum(), torch.arccos(a @ b), atol=1e-5)
    same = slerp(a, a, t)
    assert torch.allclose(same, a.expand(9, -1), atol=1e-6)


def test_interpolation_passes_the_prototype_and_generates_the_class():
    m, _ = _model()
    m.eval()
    imgs, path = m.interpolation(3, steps=5, prototype=2, generator=torch.Generator().manual_seed(1))
    assert imgs.shape == (9, 1, 8, 8) and path.shape == (9, 8)
    P = torch.nn.functional.normalize(m.P.detach(), dim=1)
    assert torch.allclose(path[4], P[2], atol=1e-6)  # the middle of the path is the prototype
    assert torch.allclose(path.norm(dim=1), torch.ones(9), atol=1e-5)
    want = m.G2(path, torch.full((9,), 3))
    assert torch.allclose(imgs, want, atol=1e-6)
    _, between = m.interpolation(0, steps=4, prototypes=(0, 1))
    assert torch.allclose(between[0], P[0], atol=1e-6) and torch.allclose(between[-1], P[1], atol=1e-6)
    with pytest.raises(ValueError, match="prototypes 0..3"):
        m.interpolation(0, prototype=9)


def test_generate_interp_cli(tmp_path):
    import numpy as np

    from ssgan_fast.generate import main as generate_main
    from ssgan_fast.train import main as train_main
    args = ["--model", "sphericgan", "--steps", "1", "--out", str(tmp_path), "--name", "r", "--size", "8",
            "--batch", "4", "--no-progress", "--no-final-eval", "--set", "model.ch=4", "--set", "model.c_ch=4",
            "--set", "model.z_dim=8", "--set", "model.latent_dim=8", "--set", "model.num_prototypes=4",
            "--set", "model.prior_samples=200"]
    assert train_main(args) == 0
    out = tmp_path / "interp.png"
    assert generate_main(["interp", "--ckpt", str(tmp_path / "r"), "--classes", "1", "2", "--steps", "4",
                          "--out", str(out)]) == 0
    z = np.load(tmp_path / "interp.npz")
    assert out.stat().st_size > 0 and z["images"].shape == (2 * 2 * 7, 8, 8, 1) and z["latents"].shape == (4, 7, 8)
    with pytest.raises(SystemExit):
        generate_main(["interp", "--ckpt", str(tmp_path / "r"), "--prototypes", "0", "9", "--out", str(out)])


def test_prior_features_fall_back_to_thumbnails_without_weights(tmp_path, monkeypatch, caplog):
    """auto: ResNet-50 features where the registry's file is present, else thumbnails - logged, and named
    in preparation_info (metrics.json)."""
    import logging
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path))  # an empty weights folder
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        m, _ = _model()
    assert m.prior_kind == "thumbnail" and m.centroids.shape == (4, 64)
    assert "fall back" in caplog.text and "thumbnails" in m.preparation
    assert m.preparation_info()["prior_clusters"]["features"] == "thumbnail"
    with pytest.raises(Exception, match="not found"):
        _model(prior_features="resnet50")  # required and missing: the weights error, no fallback


def test_prior_clusters_on_resnet50_features():
    """prior_features=resnet50 (random weights here): k-means on L2-normalised 2048-d features, each real
    image assigned to its nearest centroid; the frozen network never enters the checkpoint."""
    m, _ = _model(prior_features="resnet50", prior_weights="", prior_feat_size=32, prior_samples=60)
    assert m.prior_kind == "resnet50" and m.centroids.shape == (4, 2048) and bool(m.prior_fitted)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    f = m._thumb(x)
    assert torch.allclose(f.norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.equal(m.prior_of(x), torch.cdist(f, m.centroids).argmin(1))
    assert not any("prior_net" in k for k in m.state_dict())
    assert m.preparation_info()["prior_clusters"] == {
        "features": "resnet50", "weights": "", "k": 4,
        "substitute_for": "IMSAT deep clustering (the SphericGAN paper's ref. [16])"}

"""Metrics package: weights registry, extractors, streaming FID / Intra-FID / cFID / IS, evaluate CLI."""
import hashlib
import json
import logging

import numpy as np
import pytest
import scipy.linalg
import torch

from ssgan_fast import weights as W
from ssgan_fast.metrics import (
    FIDInceptionV3,
    InceptionScore,
    SmallClassifier,
    WeightsError,
    cfid,
    collect,
    fid,
    intra_fid,
)
from ssgan_fast.ops import FeatureStats


class _Fixed(torch.nn.Module):
    """A deterministic 'extractor' (identity on flattened pixels) so the metrics can be checked by hand."""
    dim = 6
    ident = "fixed"

    def forward(self, x):
        f = x.flatten(1)[:, :6].double()
        return {"pool": f, "logits": f[:, :4] * 3}


def _scipy_fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def _data(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 3, generator=g) + shift
    y = torch.randint(0, 3, (n,), generator=g)
    x[y == 1] += 2.0
    return x, y


def _batches(x, y, b=17):
    for i in range(0, len(x), b):
        yield x[i:i + b], y[i:i + b]


def test_fid_intra_cfid_against_numpy(caplog):
    xr, yr = _data(300, 0)
    xf, yf = _data(250, 1, shift=0.3)
    yf[yf == 2] = 0  # class 2 has no generated samples: skipped with a warning
    ext = _Fixed()
    r = collect(_batches(xr, yr), ext, num_classes=3)
    f = collect(_batches(xf, yf), ext, num_classes=3)
    a, b = xr.flatten(1)[:, :6].double().numpy(), xf.flatten(1)[:, :6].double().numpy()
    assert fid(r.stats, f.stats) == pytest.approx(_scipy_fid(a, b), rel=1e-6)
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        mean, per = intra_fid(r.cstats, f.cstats)
    assert "[2]" in caplog.text and set(per) == {0, 1}
    yr_, yf_ = yr.numpy(), yf.numpy()
    for c in (0, 1):
        assert per[c] == pytest.approx(_scipy_fid(a[yr_ == c], b[yf_ == c]), rel=1e-6)
    assert mean == pytest.approx(np.mean([per[0], per[1]]))
    # cFID: class-frequency-weighted mean distance + trace term of pooled within-class covariances
    cls = [0, 1]
    w = np.array([(yr_ == c).sum() for c in cls], dtype=float)
    mean_term = sum(w[i] / w.sum() * ((a[yr_ == c].mean(0) - b[yf_ == c].mean(0)) ** 2).sum()
                    for i, c in enumerate(cls))

    def pooled(z, y):
        ns = np.array([(y == c).sum() - 1 for c in cls], dtype=float)
        return sum(ns[i] / ns.sum() * np.cov(z[y == c], rowvar=False) for i, c in enumerate(cls))
    sr, sf = pooled(a, yr_), pooled(b, yf_)
    covmean = scipy.linalg.sqrtm(sr @ sf)
    covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    want = mean_term + np.trace(sr) + np.trace(sf) - 2 * np.trace(covmean.real)
    assert cfid(r.cstats, f.cstats) == pytest.approx(want, rel=1e-6)


def test_inception_score_streaming_equals_direct():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(103, 7, generator=g) * 2
    acc = InceptionScore(103, splits=4)
    for i in range(0, 103, 10):
        acc.update(logits[i:i + 10])
    p = torch.softmax(logits.double(), 1).numpy()
    scores = []
    for k in range(4):
        part = p[k * 103 // 4:(k + 1) * 103 // 4]  # torch-fidelity's split boundaries
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    m, s = acc.compute()
    assert m == pytest.approx(np.mean(scores), rel=1e-10) and s == pytest.approx(np.std(scores), rel=1e-8)
    with pytest.raises(ValueError, match="expected 103"):
        InceptionScore(103, 4).compute()


def test_inception_score_shuffled_splits_see_every_class():
    """Samples arriving class by class (as generated): consecutive splits see one class each
    (IS ~ 1); the seeded shuffle gives each split a random subset, whose IS is the direct one."""
    y = torch.arange(5).repeat_interleave(40)
    logits = torch.nn.functional.one_hot(y, 5).double() * 20
    plain, shuffled = InceptionScore(200, 5), InceptionScore(200, 5, shuffle_seed=2020)
    for i in range(0, 200, 16):
        plain.update(logits[i:i + 16])
        shuffled.update(logits[i:i + 16])
    assert plain.compute()[0] == pytest.approx(1.0, abs=1e-6)
    perm = np.random.RandomState(2020).permutation(200)  # torch-fidelity's shuffle
    p = torch.softmax(logits, 1).numpy()[perm]
    scores = []
    for k in range(5):
        part = p[k * 200 // 5:(k + 1) * 200 // 5]
        py = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(np.clip(part, 1e-30, None)) - np.log(py))).sum(1).mean()))
    m, s = shuffled.compute()
    assert m == pytest.approx(np.mean(scores), rel=1e-8) and s == pytest.approx(np.std(scores), rel=1e-6)
    assert m > 4


def test_inception_architecture_and_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    m = FIDInceptionV3(pretrained=False)
    sd = m.net.state_dict()
    assert sd["fc.weight"].shape == (1008, 2048) and "Mixed_7c.branch_pool.conv.weight" in sd
    assert not any(k.startswith("AuxLogits") for k in sd)  # pytorch-fid's file has no aux head
    assert sum(p.numel() for p in m.parameters()) == 23_850_960  # 95 MB of float32, the size of the file
    x = torch.rand(2, 3, 37, 41) * 2 - 1
    out = m(x)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert torch.allclose(m(x[:, :1].expand(-1, 3, -1, -1))["pool"], m(x[:, :1])["pool"])  # grayscale
    # missing file: the error names the file, its hash and the folder; nothing is downloaded
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="pt_inception-2015-12-05-6726825d.pth.*6726825d.*" + str(tmp_path)):
        FIDInceptionV3(pretrained=True)
    # a wrong file: hash mismatch
    (tmp_path / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"not weights")
    with pytest.raises(WeightsError, match="sha256"):
        FIDInceptionV3(pretrained=True)
    # a file whose hash matches the registry loads into the architecture
    f = tmp_path / "fake_inception.pth"
    torch.save(sd, f)
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    monkeypatch.setitem(W.REGISTRY, "inception-fid", W.WeightSpec(f.name, digest, ""))
    m2 = FIDInceptionV3(pretrained=True)
    assert torch.equal(m2(x)["pool"], out["pool"]) and m2.ident.startswith("inception-fid:")
    monkeypatch.setitem(W.REGISTRY, "inception-fid", W.WeightSpec(f.name, digest[:8], ""))  # prefix form
    FIDInceptionV3(pretrained=True)
    with pytest.raises(ValueError, match="hex"):
        W.register_weights("x", "x.pt", "not-a-hash")


def test_evaluate_cli(tmp_path, monkeypatch, capsys):
    from ssgan_fast.data import load_arrays
    from ssgan_fast.evaluate import main
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("SSGAN_FAST_CACHE", str(tmp_path / "cache"))
    d = load_arrays("digits", "test", size=8)
    np.savez(tmp_path / "s.npz", images=d.images[:200], labels=d.labels[:200])
    args = ["--samples", str(tmp_path / "s.npz"), "--data", "digits", "--size", "8", "--extractor", "classifier",
            "--train-classifier", "--classifier-epochs", "2",
            "--metrics", "fid,intra_fid,cfid,is,ra,gan_test,gan_train,avg_conf",
            "--splits", "2", "--out", str(tmp_path / "m.json")]
    assert main(args) == 0
    out = json.loads((tmp_path / "m.json").read_text())
    # the classifier's feature space: named _clf, never fid
    assert set(out["metrics"]) == {"fid_clf", "intra_fid_clf", "cfid_clf", "is_clf_mean", "is_clf_std", "ra",
                                   "gan_test", "gan_train", "avg_conf"}
    assert out["extractor_kind"] == "classifier" and out["num_samples"] == 200 and out["test_split"]
    assert out["warnings"] == [] and "_clf" in out["feature_space"]  # 200 samples > 32 features; IS: 2 x 100
    assert all(np.isfinite(v) for v in out["metrics"].values())
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1 and len(list((tmp_path / "w").glob("*.pt"))) == 1
    assert main(args) == 2  # the result exists: never overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0  # second run: cached classifier and reference statistics, same numbers
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == out["metrics"]
    # inception weights missing: exit 2, one line naming the file
    assert main(["--samples", str(tmp_path / "s.npz"), "--metrics", "fid", "--size", "8", "--extractor",
                 "inception"]) == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err
    # auto: no Inception weights -> the classifier space, and the result says why
    assert main(["--samples", str(tmp_path / "s.npz"), "--metrics", "fid", "--size", "8", "--classifier-epochs", "2",
                 "--out", str(tmp_path / "a.json")]) == 0
    auto = json.loads((tmp_path / "a.json").read_text())
    assert "fid_clf" in auto["metrics"] and "Inception weights unavailable" in auto["extractor_note"]
    for bad in (["--samples", str(tmp_path / "s.npz"), "--metrics", "fid,nope"],
                ["--samples", str(tmp_path / "missing.npz")]):
        assert main(bad) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_classifier_and_bad_stats():
    c = SmallClassifier(10, in_channels=1, width=8)
    out = c(torch.zeros(2, 1, 8, 8))
    assert out["pool"].shape == (2, 32) and out["logits"].shape == (2, 10)
    with pytest.raises(ValueError, match="feature dims differ"):
        fid(FeatureStats(3).update(torch.randn(5, 3)), FeatureStats(4).update(torch.randn(5, 4)))
    a = FeatureStats(3, 4).update(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="no class"):
        intra_fid(a, a)


def test_collect_accuracy_and_average_confidence():
    """RA and avg_conf (aam-discriminator Sec. 4.4) against a direct float64 computation."""
    g = torch.Generator().manual_seed(3)
    W_ = torch.randn(5, 12, generator=g, dtype=torch.float64)

    def net(x):  # extractor and classifier at once: logits linear in the pixels
        flat = x.reshape(x.shape[0], -1).double()
        return {"pool": flat, "logits": flat @ W_.T}

    net.dim = 12
    xs = [torch.randn(b, 1, 3, 4, generator=g) for b in (7, 1, 9)]
    ys = [torch.randint(0, 5, (x.shape[0],), generator=g) for x in xs]
    got = collect(list(zip(xs, ys, strict=False)), net, classifier=net)
    x, y = torch.cat(xs).reshape(17, -1).double(), torch.cat(ys)
    p = torch.softmax(x @ W_.T, 1)
    assert got.count == 17
    assert got.accuracy == pytest.approx(float((p.argmax(1) == y).double().mean()))
    assert got.confidence == pytest.approx(float(p[torch.arange(17), y].mean()), rel=1e-5)


def test_small_sample_warnings():
    """FID below the feature dimension and IS splits under 100 samples are named (they were printed bare)."""
    from ssgan_fast.evaluation import small_sample_warnings
    w = small_sample_warnings(("fid", "intra_fid", "is"), 3, 2048, 3)
    assert len(w) == 2 and "fid, intra_fid on 3 samples, fewer than the 2048" in w[0] and "1 a split" in w[1]
    assert small_sample_warnings(("fid", "is"), 2048, 2048, 10) == []
    assert small_sample_warnings(("ra", "kid"), 3, 2048, 0) == []


def test_float_image_range_rule(caplog):
    """Float images must be in [-1, 1]: |x| > 2 is an error; all-in-[0, 1] and clamped values warn once."""
    import torch

    from ssgan_fast.evaluation.sides import EvalError, check_float_range
    g = torch.Generator().manual_seed(0)
    with pytest.raises(EvalError, match=r"\[0, 255\]"):
        check_float_range(torch.rand(4, 1, 8, 8, generator=g) * 255, "x")
    warned = set()
    with caplog.at_level("WARNING", logger="ssgan_fast"):
        check_float_range(torch.rand(4, 1, 8, 8, generator=g), "x", warned)
        check_float_range(torch.rand(4, 1, 8, 8, generator=g), "x", warned)
        check_float_range(torch.rand(4, 1, 8, 8, generator=g) * 2.4 - 1.2, "x", warned)
        check_float_range(torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, "proper-batch")  # silent
    assert caplog.text.count("every value is in [0, 1]") == 1 and caplog.text.count("clamped") == 1
    assert "proper-batch" not in caplog.text


def test_metrics_key_error_names_the_feature_space_and_rgb_samples_are_converted(caplog):
    import torch

    from ssgan_fast.evaluation import Metrics, _match_channels
    m = Metrics(fid_clf=1.0, is_clf_mean=7.0)
    with pytest.raises(KeyError, match="under 'fid_clf'"):
        m["fid"]
    with pytest.raises(KeyError, match="not among the computed metrics"):
        m["kid"]
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    with caplog.at_level("WARNING", logger="ssgan_fast"):
        out = list(_match_channels(iter([(rgb, None), (rgb, None)]), 1, "digits"))
    assert out[0][0].shape == (2, 1, 4, 4) and caplog.text.count("converted to gray") == 1
    torch.testing.assert_close(out[0][0][:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    with pytest.raises(Exception, match="2 channel"):
        list(_match_channels(iter([(rgb[:, :2], None)]), 1, "digits"))

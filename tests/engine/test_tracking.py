"""Tracking (issue 36): every evaluation's metrics and the sample grids in TensorBoard beside the losses;
ckpt/best.pt kept by --best-metric (direction known per metric), read back as RUN:best."""
import json

import numpy as np
import pytest

from ssgan_fast.evaluation import higher_is_better, metric_of
from ssgan_fast.generate import main as generate_main
from ssgan_fast.train import main as train_main

TINY = ["--model", "sphericgan", "--size", "8", "--batch", "4", "--no-progress",
        "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set", "model.latent_dim=8",
        "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200", "--set", "train.log_every=1",
        "--set", "train.eval_samples_per_class=6", "--set", "train.eval_classifier_epochs=1",
        "--set", "train.eval_metrics=fid,ra"]


def test_metric_directions():
    for k in ("fid", "fid_clf", "intra_fid_clf", "cfid", "kid_clf_mean", "intra_kid", "fd_pixels"):
        assert not higher_is_better(k), k
    for k in ("is_clf_mean", "ra", "gan_train", "c_acc", "precision_vgg16", "coverage", "avg_conf"):
        assert higher_is_better(k), k
    assert metric_of("fid_clf") == "fid" and metric_of("precision") == "pr" and metric_of("nope") is None


def test_eval_metrics_in_tensorboard_and_best_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    monkeypatch.setenv("SSGAN_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path / "w"))
    run = tmp_path / "r"
    assert train_main(TINY + ["--out", str(tmp_path), "--name", "r", "--steps", "6", "--eval-every", "2",
                              "--sample-every", "3", "--best-metric", "fid"]) == 0
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4, 6, 6]  # every --eval-every, then the final evaluation
    best = min(evals, key=lambda e: e["fid_clf"])
    import torch
    s = torch.load(run / "ckpt" / "best.pt", map_location="cpu", weights_only=False)
    assert s["best"] == {"key": "fid_clf", "value": best["fid_clf"], "step": best["step"]} and s["step"] == best["step"]
    scalars, images = {}, set()
    for f in (run / "tb").glob("events.*"):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0, "images": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
        images |= {(tag, e.step) for tag in acc.Tags()["images"] for e in acc.Images(tag)}
    assert sorted(scalars["metrics/fid_clf"]) == [2, 4, 6, 6] and "metrics/ra" in scalars
    assert any(t.startswith(("loss", "d/", "g/")) or "/" in t for t in scalars if not t.startswith("metrics/"))
    assert ("samples", 3) in images and ("samples", 6) in images
    out = tmp_path / "best.npz"
    assert generate_main(["--ckpt", f"{run}:best", "--n", "2", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape == (20, 8, 8, 1)


def test_best_metric_must_be_evaluated(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(TINY + ["--out", str(tmp_path), "--steps", "1", "--best-metric", "kid"])
    assert e.value.code == 2 and "not a result of train.eval_metrics" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        generate_main(["--ckpt", f"{tmp_path}/nope:best", "--out", str(tmp_path / "x.npz")])
    assert e.value.code == 2

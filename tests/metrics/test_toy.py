"""2-D ring mode metrics and the ring2d experiment command."""
import json

import numpy as np
import pytest

from ssgan_fast.experiments import main as exp_main
from ssgan_fast.metrics.toy import mode_metrics, ring_centres, ring_metrics


def test_mode_metrics_protocol():
    c = ring_centres()
    rng = np.random.default_rng(0)
    good = np.concatenate([rng.normal(c[k], 0.01, (50, 2)) for k in range(8)])
    m = mode_metrics(good, c, sigma=0.01)
    assert m["modes"] == 8 and m["hq_percent"] > 98 and m["reverse_kl"] < 0.01
    collapsed = np.concatenate([rng.normal(c[k], 0.01, (100, 2)) for k in range(3)])
    m = mode_metrics(collapsed, c, sigma=0.01)
    assert m["modes"] == 3 and m["reverse_kl"] == pytest.approx(np.log(8 / 3), rel=0.02)
    far = rng.normal(0, 0.01, (100, 2))  # the centre of the ring: no HQ point at all
    m = mode_metrics(far, c, sigma=0.01)
    assert m["modes"] == 0 and m["hq_percent"] == 0 and m["reverse_kl"] == pytest.approx(np.log(8))
    # HQ radius is k_sigma standard deviations
    pts = c[:1] + np.array([[0.029, 0], [0.031, 0]])
    assert mode_metrics(pts, c, sigma=0.01)["hq_percent"] == 50
    m = mode_metrics(c[:1] + np.array([[0.009, 0], [0, 0.011], [0.02, 0], [0, -0.005]]), c, sigma=0.01)
    assert m["hq_percent"] == 100 and m["hq_1sigma_percent"] == 50  # the tighter radius: one sigma
    with pytest.raises(ValueError):
        mode_metrics(np.zeros((0, 2)), c, 0.01)


def test_mode_metrics_spread():
    c = ring_centres()
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(8), 500)
    assert mode_metrics(c[y] + rng.normal(0, 0.01, (len(y), 2)), c, 0.01)["spread"] == pytest.approx(1, abs=0.05)
    tight = mode_metrics(c[y] + rng.normal(0, 0.001, (len(y), 2)), c, 0.01)
    assert tight["hq_percent"] == 100 and tight["spread"] == pytest.approx(0.1, abs=0.01)  # collapsed, yet all HQ


def test_mode_metrics_class_accuracy():
    c = ring_centres()
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(8), 20)
    pts = c[y] + rng.normal(0, 0.01, (len(y), 2))
    assert mode_metrics(pts, c, 0.01, labels=y)["class_acc_percent"] == 100
    shifted = (y + 1) % 8  # every class generated at its neighbour's mode: all modes covered, none right
    m = mode_metrics(pts, c, 0.01, labels=shifted)
    assert m["modes"] == 8 and m["class_acc_percent"] == 0
    half = y.copy()
    half[::2] = (half[::2] + 3) % 8
    assert mode_metrics(pts, c, 0.01, labels=half)["class_acc_percent"] == 50
    assert "class_acc_percent" not in mode_metrics(pts, c, 0.01)
    for bad in (y[:-1], y + 8, y.astype(float)):
        with pytest.raises(ValueError, match="labels"):
            mode_metrics(pts, c, 0.01, labels=bad)


def test_ring2d_experiment_command(tmp_path):
    assert exp_main(["ring2d", "--seeds", "1", "--steps", "3", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert set(r["rows"]) == {"baseline", "+recg", "+recg+ctrs"}
    for row in r["rows"].values():
        assert 0 <= row["mean_std"]["modes"][0] <= 8 and np.isfinite(row["mean_std"]["reverse_kl"][0])
    assert (tmp_path / "figure3.png").is_file()
    for row in r["rows"].values():
        assert 0 <= row["mean_std"]["class_acc_percent"][0] <= 100
        assert 0 <= row["mean_std"]["hq_1sigma_percent"][0] <= row["mean_std"]["hq_percent"][0]
    d = r["data"]  # the training points under the same protocol: every mode, HQ, overlapping at variance 0.1
    assert d["modes"] == 8 and d["hq_percent"] > 99 and d["reverse_kl"] < 0.01 and 65 < d["class_acc_percent"] < 90


def test_ring2d_rows_subset(tmp_path):
    assert exp_main(["ring2d", "--seeds", "1", "--steps", "2", "--rows", "+recg", "--out", str(tmp_path),
                     "--set", "model.triple=false"]) == 0
    assert set(json.loads((tmp_path / "results.json").read_text())["rows"]) == {"+recg"}
    cfg = json.loads((tmp_path / "precg-s0" / "config.json").read_text())["train"]["model_cfg"]
    assert cfg["triple"] is False and cfg["recg"] is True  # --set for every row, then the row's switches
    with pytest.raises(SystemExit):
        exp_main(["ring2d", "--rows", "baseline,nosuchrow"])


def test_ring_metrics():
    rng = np.random.default_rng(0)
    th = rng.uniform(0, 2 * np.pi, 5000)
    r = 2 + rng.normal(0, 0.1, 5000)
    ring = np.stack([100 + r * np.cos(th), 100 + r * np.sin(th)], 1)
    m = ring_metrics(ring)
    assert m["on_ring_percent"] > 99 and m["coverage_percent"] == 100 and 0.7 < m["distance"] < 0.9  # E|N(0,1)| = 0.80
    arc = ring[(th > 0) & (th < np.pi / 3)]  # a collapsed generator: one sixth of the ring
    m = ring_metrics(arc)
    assert m["on_ring_percent"] > 99 and abs(m["coverage_percent"] - 100 / 6) < 3
    m = ring_metrics(np.zeros((10, 2)))  # the generator's starting point, 141 away
    assert m["on_ring_percent"] == 0 and m["coverage_percent"] == 0
    assert m["distance"] == pytest.approx((100 * np.sqrt(2) - 2) / 0.1)
    assert ring_metrics(np.full((3, 2), np.nan))["distance"] == float("inf")
    with pytest.raises(ValueError):
        ring_metrics(np.zeros((0, 2)))


def test_cvae_ring_experiment_command(tmp_path, capsys):
    assert exp_main(["cvae-ring", "--steps", "20", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["snapshots"] == [2, 4, 10, 20] and set(res["rows"]) == {"gan", "wgan", "fm"}
    for row in res["rows"].values():
        assert set(row["20"]) == {"on_ring_percent", "coverage_percent", "distance"}
    assert (tmp_path / "figure4.png").stat().st_size > 0
    assert "mean feature matching GAN" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        exp_main(["cvae-ring", "--lr", "0"])

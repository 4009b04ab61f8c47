"""2-D ring mode metrics and the ring2d experiment command."""
import json

import numpy as np
import pytest

from ssgan_fast.experiments import main as exp_main
from ssgan_fast.metrics.toy import mode_metrics, ring_centres


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
    with pytest.raises(ValueError):
        mode_metrics(np.zeros((0, 2)), c, 0.01)


def test_ring2d_experiment_command(tmp_path):
    assert exp_main(["ring2d", "--seeds", "1", "--steps", "3", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert set(r["rows"]) == {"baseline", "+recg", "+recg+ctrs"}
    for row in r["rows"].values():
        assert 0 <= row["mean_std"]["modes"][0] <= 8 and np.isfinite(row["mean_std"]["reverse_kl"][0])
    assert (tmp_path / "figure3.png").is_file()

"""Sampling as users do it (issue 36): classes, per-image seeds, truncation, PNG files, the Python API."""
import numpy as np
import pytest
import torch
from PIL import Image

from ssgan_fast.engine.sampler import Sampler, parse_classes, parse_seeds
from ssgan_fast.generate import main as generate_main
from ssgan_fast.train import main as train_main

SMALL = ["--size", "8", "--batch", "4", "--no-progress", "--no-final-eval", "--sample-every", "0", "--steps", "2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("sampling")
    assert train_main(["--model", "medgan", *SMALL, "--out", str(d), "--name", "medgan"]) == 0
    assert train_main(["--model", "sphericgan", *SMALL, "--out", str(d), "--name", "sphericgan",
                       "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8",
                       "--set", "model.latent_dim=8", "--set", "model.num_prototypes=4",
                       "--set", "model.prior_samples=200"]) == 0
    return d


def test_sampler_classes_seeds_and_truncation(runs):
    s = Sampler(runs / "medgan")
    x, y = s.sample(classes=[3, 7], seeds=[5, 9])
    assert x.shape == (4, 1, 8, 8) and y.tolist() == [3, 3, 7, 7] and x.abs().max() <= 1
    one, _ = s.sample(classes="7", seeds="9")  # image (class 7, seed 9) does not depend on the others asked for
    torch.testing.assert_close(one[0], x[3], rtol=0, atol=1e-6)
    assert not torch.equal(x[2], x[3])  # seeds differ
    x1, _ = s.sample(classes=[3], seeds=[5, 9], truncation=1.0)
    torch.testing.assert_close(x1, x[:2], rtol=0, atol=1e-6)  # psi = 1 changes nothing
    x0, _ = s.sample(classes=[3], seeds=[5, 9, 11], truncation=0.0)
    assert torch.allclose(x0[0], x0[1]) and torch.allclose(x0[0], x0[2])  # psi = 0: the mean latent, one image
    xh, _ = s.sample(classes=[3], seeds=[5, 9], truncation=0.5)
    assert not torch.allclose(xh, x1)
    assert s.sample(n=3)[0].shape[0] == 30
    for bad in ({"classes": [10]}, {"classes": "x"}, {"seeds": "-1"}, {"n": 2, "seeds": [1]}, {"truncation": 2.0}):
        with pytest.raises(ValueError):
            s.sample(**bad)
    sph = Sampler(runs / "sphericgan")
    with pytest.raises(NotImplementedError, match="truncation does not apply to sphericgan"):
        sph.sample(classes=[1], n=2, truncation=0.5)


def test_parsers():
    assert parse_classes("all", 3) == [0, 1, 2] and parse_classes("1,3-4", 5) == [1, 3, 4]
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7] and parse_seeds(range(2)) == [0, 1]


def test_generate_sample_cli_formats(runs, tmp_path, capsys):
    out = tmp_path / "png"
    argv = ["--ckpt", str(runs / "medgan"), "--classes", "3,7", "--seeds", "5,9", "--format", "both", "--out", str(out)]
    assert generate_main(argv) == 0
    z = np.load(out / "samples.npz")
    assert z["images"].shape == (4, 8, 8, 1) and z["labels"].tolist() == [3, 3, 7, 7] and z["seeds"].tolist() == [
        5, 9, 5, 9]
    for c, s, img in zip(z["labels"], z["seeds"], z["images"], strict=True):  # <class>/<seed>.png = the npz's image
        assert np.array_equal(np.asarray(Image.open(out / str(c) / f"{s}.png")), img[..., 0])
    with pytest.raises(SystemExit) as e:  # never overwritten without --overwrite
        generate_main(argv)
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    f = tmp_path / "s.npz"
    assert generate_main(["--ckpt", str(runs / "medgan"), "--n", "2", "--seed", "5", "--truncation", "0.7",
                          "--out", str(f)]) == 0
    z2 = np.load(f)
    assert z2["images"].shape == (20, 8, 8, 1) and z2["seeds"][:2].tolist() == [5, 6]
    with pytest.raises(SystemExit) as e:
        generate_main(["--ckpt", str(runs / "sphericgan"), "--truncation", "0.5", "--out", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "truncation does not apply to sphericgan" in err[0]

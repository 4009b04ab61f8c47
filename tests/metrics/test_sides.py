"""Either side of an evaluation in every form a user holds it (ssgan_fast.evaluation.sides): a folder
of class sub-folders or of flat files, an .npz of images with or without labels, an .npz of FID
statistics, tensors, a DataLoader, a generator callable, a run folder (CLI), and the same images in each
form give the same numbers. The Inception's resize modes equal clean-fid's resizers. Unlabeled sides
give the class-free metrics and clear errors for the others. A random-weight Inception throughout
(the code path of the real weights) on 12 images a side, to keep it quick."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssgan_fast.data import DataError, images_to_tensor, open_dataset
from ssgan_fast.evaluate import main as evaluate_main
from ssgan_fast.evaluation import EvalError, Samples, evaluate
from ssgan_fast.metrics.inception import FIDInceptionV3, clean_resize

C, PER, SIZE = 3, 4, 16
KW = {"extractor": "inception-random", "batch": 8}
# the forms below hold the images in the same order (files sorted by name), so KID's seeded subsets agree
# too; FID (a 2048-dim eigendecomposition, ~2 s here) is compared on fewer forms
SAME = ("kid_mean", "kid_std", "precision", "recall", "density", "coverage")
CHEAP = ["kid", "pr", "dc"]


def _pictures(seed: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """C classes x PER images, uint8 [N, SIZE, SIZE, 3]: a class colour, a gradient and noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), PER)
    g = np.linspace(0, 1, SIZE)[None, :, None, None] * np.linspace(0, 1, SIZE)[None, None, :, None]
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=float)[y][:, None, None, :]
    x = base * (0.5 + g) + shift + rng.normal(0, 25, (len(y), SIZE, SIZE, 3))
    return x.clip(0, 255).astype(np.uint8), y


pytestmark = pytest.mark.usefixtures("private_caches", "small_inception")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The fake and real images, written in each on-disk form."""
    d = tmp_path_factory.mktemp("sides")
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    for name, x, y in (("fake", fx, fy), ("real", rx, ry)):
        np.savez(d / f"{name}.npz", images=x, labels=y)
        np.savez(d / f"{name}-unlabeled.npz", images=x)
        for i, (im, c) in enumerate(zip(x, y, strict=True)):
            (d / f"{name}-classes" / f"c{c}").mkdir(parents=True, exist_ok=True)
            (d / f"{name}-flat").mkdir(exist_ok=True)
            Image.fromarray(im).save(d / f"{name}-classes" / f"c{c}" / f"{i:03d}.png")
            Image.fromarray(im).save(d / f"{name}-flat" / f"{i:03d}.png")
    return {"dir": d, "fake": (fx, fy), "real": (rx, ry)}


def _close(a: dict, b: dict, keys=SAME):
    shared = [k for k in keys if k in a]
    assert shared and all(k in b for k in shared), (a, b)
    for k in shared:
        assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-12), (k, a, b)


def test_the_generated_side_in_every_form_gives_the_same_numbers(sets):
    d, (fx, fy) = sets["dir"], sets["fake"]
    real = str(d / "real.npz")
    base = evaluate(str(d / "fake.npz"), real, None, ["fid", "intra_fid", *CHEAP], **KW)
    M = base["metrics"]
    assert base["size"] == SIZE and base["num_samples"] == C * PER and base["extractor_resize"] == "legacy_pytorch"
    assert base["fake"] == str((d / "fake.npz").resolve()) and base["real"] == str((d / "real.npz").resolve())
    assert M["fid"] > 0 and M["kid_mean"] != 0 and 0 < M["density"] and set(base["intra_fid_per_class"]) == {"0", "1",
                                                                                                          "2"}
    folder = evaluate(str(d / "fake-classes"), real, None, ["fid", "intra_fid", *CHEAP], **KW)
    _close(M, folder["metrics"], SAME + ("fid", "intra_fid"))
    labeled = {
        "uint8 NHWC + labels": (fx, fy),
        "float NCHW tensor + labels": (images_to_tensor(fx), torch.from_numpy(fy)),
        "DataLoader": torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(images_to_tensor(fx), torch.from_numpy(fy)), batch_size=5),
        "Samples": Samples.from_arrays(fx, fy, batch=5),
    }
    for what, fake in labeled.items():
        got = evaluate(fake, real, None, ["intra_kid", *CHEAP], **KW)
        assert got["num_samples"] == C * PER and set(got["intra_kid_per_class"]) == {"0", "1", "2"}, what
        _close(M, got["metrics"])
    unlabeled = {"flat folder": str(d / "fake-flat"), "unlabeled npz": str(d / "fake-unlabeled.npz"),
                 "uint8 tensor": torch.from_numpy(fx), "loader of image batches": [images_to_tensor(fx)[i:i + 5]
                                                                                  for i in range(0, C * PER, 5)]}
    for what, fake in unlabeled.items():
        got = evaluate(fake, real, None, CHEAP, **KW)
        assert got["num_samples"] == C * PER, what
        _close(M, got["metrics"])
        with pytest.raises(EvalError, match="intra_kid need classes on both sides.*unlabeled"):
            evaluate(fake, real, None, ["kid", "intra_kid"], **KW)


def test_the_real_side_in_every_form_gives_the_same_numbers(sets, tmp_path):
    d, (rx, ry) = sets["dir"], sets["real"]
    fake = str(d / "fake.npz")
    base = evaluate(fake, str(d / "real.npz"), None, ["fid", *CHEAP], save_real_stats=tmp_path / "r.npz", **KW)
    M = base["metrics"]
    for what, real in {"class folder": str(d / "real-classes"), "folder: spec": f"folder:{d / 'real-classes'}",
                       "arrays + labels": (rx, ry), "DataLoader": torch.utils.data.DataLoader(
                           torch.utils.data.TensorDataset(images_to_tensor(rx), torch.from_numpy(ry)), batch_size=7),
                       "npz: spec": f"npz:{d / 'real.npz'}"}.items():
        got = evaluate(fake, real, None, ["intra_kid", *CHEAP], **KW)
        assert got["num_real"] == C * PER, what
        _close(M, got["metrics"])
    for real in (str(d / "real-flat"), f"images:{d / 'real-flat'}", str(d / "real-unlabeled.npz"),
                 torch.from_numpy(rx)):
        _close(M, evaluate(fake, real, None, CHEAP, **KW)["metrics"])
        with pytest.raises(EvalError, match="intra_kid need classes on both sides: the real side .* has 0 classes"):
            evaluate(fake, real, None, ["intra_kid"], **KW)
    # the statistics file written by save_real_stats as the real side
    st = evaluate(fake, str(tmp_path / "r.npz"), None, ["fid"], **KW)
    assert st["metrics"]["fid"] == pytest.approx(M["fid"], rel=1e-6)
    assert st["real"] == str((tmp_path / "r.npz").resolve())
    with pytest.raises(EvalError, match=r"gives only fid; \['pr'\] need images on both sides"):
        evaluate(fake, str(tmp_path / "r.npz"), None, ["fid", "pr"], **KW)
    with pytest.raises(EvalError, match="cannot be a generator callable"):
        evaluate(fake, lambda y: y, None, ["fid"], **KW)


def test_statistics_files_on_either_side(sets, tmp_path):
    """Fake statistics against a real data set; two statistics files compared without any extractor; a
    file of another extractor or dimension is an error."""
    from ssgan_fast.metrics.stats_io import load_fid_stats
    from ssgan_fast.ops import frechet_distance
    d = sets["dir"]
    a = evaluate(str(d / "real.npz"), str(d / "fake.npz"), None, ["fid"], save_real_stats=tmp_path / "f.npz", **KW)
    b = evaluate(str(d / "fake.npz"), str(d / "real.npz"), None, ["fid"], save_real_stats=tmp_path / "r.npz", **KW)
    assert a["metrics"]["fid"] == pytest.approx(b["metrics"]["fid"], rel=1e-5)  # symmetric
    one = evaluate(str(tmp_path / "f.npz"), str(d / "real.npz"), None, ["fid"], **KW)
    assert one["metrics"]["fid"] == pytest.approx(b["metrics"]["fid"], rel=1e-6)
    two = evaluate(str(tmp_path / "f.npz"), str(tmp_path / "r.npz"), None, ["fid"], **KW)
    f, r = load_fid_stats(tmp_path / "f.npz"), load_fid_stats(tmp_path / "r.npz")
    assert two["metrics"]["fid"] == pytest.approx(float(frechet_distance(r["mu"], r["sigma"], f["mu"], f["sigma"])),
                                                  rel=1e-9)
    assert two["metrics"]["fid"] == pytest.approx(b["metrics"]["fid"], rel=1e-6)
    np.savez(tmp_path / "narrow.npz", mu=np.zeros(7), sigma=np.eye(7))
    with pytest.raises(EvalError, match="7-dimensional"):
        evaluate(str(tmp_path / "narrow.npz"), str(d / "real.npz"), None, ["fid"], **KW)
    with pytest.raises(EvalError, match="dimension|7"):
        evaluate(str(tmp_path / "narrow.npz"), str(tmp_path / "r.npz"), None, ["fid"], **KW)
    with np.load(tmp_path / "r.npz") as z:
        np.savez(tmp_path / "other.npz", mu=z["mu"], sigma=z["sigma"], extractor=np.array("inception-fid:0123"))
    with pytest.raises(EvalError, match="inception-fid:0123"):
        evaluate(str(tmp_path / "other.npz"), str(d / "real.npz"), None, ["fid"], **KW)


def test_a_generator_callable(sets):
    """fn(labels) -> images, class by class (per_class each), seeded: the same numbers twice; its
    resolution is probed; a wrong return or NaN images are clear errors."""
    d = sets["dir"]
    calls = []

    def G(y):
        calls.append(y.clone())
        base = torch.tensor([[0.6, -0.6, -0.6], [-0.6, 0.6, -0.6], [-0.6, -0.6, 0.6]])[y]
        return (base[:, :, None, None] + 0.3 * torch.randn(y.shape[0], 3, SIZE, SIZE)).clamp(-1, 1)

    a = evaluate(G, str(d / "real.npz"), None, ["kid", "intra_kid", "pr"], per_class=5, **KW)
    ys = torch.cat(calls[1:])  # the first call probes the resolution
    assert torch.equal(ys, torch.arange(C).repeat_interleave(5)) and a["num_samples"] == 15 and a["size"] == SIZE
    assert a["fake"] == "G" and a["metrics"]["kid_mean"] != 0
    b = evaluate(G, str(d / "real.npz"), None, ["kid", "intra_kid", "pr"], per_class=5, **KW)
    assert a["metrics"] == b["metrics"]
    # an unlabeled real side: the callable gets labels 0 and the class-free metrics
    u = evaluate(G, str(d / "real-flat"), None, ["kid"], per_class=6, **KW)
    assert u["num_samples"] == 6
    with pytest.raises(EvalError, match="must return float images"):
        evaluate(lambda y: torch.zeros(y.shape[0], 3, SIZE, SIZE, dtype=torch.uint8), str(d / "real.npz"), None,
                 ["fid"], **KW)
    with pytest.raises(EvalError, match="NaN"):
        evaluate(lambda y: torch.full((y.shape[0], 3, SIZE, SIZE), float("nan")), str(d / "real.npz"), None,
                 ["fid"], **KW)
    with pytest.raises(EvalError, match="per_class must be >= 1"):
        evaluate(G, str(d / "real.npz"), None, ["fid"], per_class=0, **KW)


def test_bad_sides_are_clear_errors(sets, tmp_path):
    d = sets["dir"]
    real = str(d / "real.npz")
    np.savez(tmp_path / "nothing.npz", mean=np.zeros(3))
    np.savez(tmp_path / "floats.npz", images=np.zeros((2, 8, 8, 3), np.float32))
    np.savez(tmp_path / "short.npz", images=np.zeros((3, 8, 8, 3), np.uint8), labels=np.zeros(2, np.int64))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    cases = [(tmp_path / "missing.npz", "does not exist"), (str(tmp_path / "no" / "such"), "does not exist"),
             (tmp_path / "nothing.npz", "must hold 'images'"), (tmp_path / "floats.npz", "uint8"),
             (tmp_path / "short.npz", "labels must have shape"), (tmp_path / "empty", "no image files"),
             (tmp_path / "notes.txt", "neither a folder nor an .npz"), (np.zeros((2, 8, 8)), "uint8"),
             (torch.zeros(2, 5, 8, 8), r"\[N, 1 or 3, H, W\]"), (12, "cannot evaluate a int"),
             ([], "yielded no images"), ([(torch.zeros(2, 3, 8, 8), torch.zeros(2)), torch.zeros(2, 3, 8, 8)],
                                         "some batches have labels and some not")]
    for fake, msg in cases:
        with pytest.raises(EvalError, match=msg):
            evaluate(fake, real, None, ["fid"], **KW)
    with pytest.raises(EvalError, match="unknown resize mode"):
        evaluate(str(d / "fake.npz"), real, None, ["fid"], resize="lanczos", **KW)
    with pytest.raises(EvalError, match="Inception's input resize"):
        evaluate(str(d / "fake.npz"), real, None, ["fid"], extractor="classifier", resize="clean")
    with pytest.raises(EvalError, match="needs the FID Inception"):
        evaluate(str(d / "fake.npz"), real, None, ["fid"], extractor="auto", resize="clean")


def test_images_spec():
    """images:/path reads every image file under a folder (recursively, sorted), unlabeled; no test split."""
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        root = Path(t)
        (root / "a" / "b").mkdir(parents=True)
        for i, p in enumerate((root / "x.png", root / "a" / "y.jpg", root / "a" / "b" / "z.png")):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(p)
        (root / "readme.txt").write_text("not an image")
        ds = open_dataset(f"images:{root}", "train", 8)
        assert len(ds) == 3 and ds.num_classes == 0 and (np.asarray(ds.labels) == -1).all()
        assert [Path(f).name for f in ds.files] == ["z.png", "y.jpg", "x.png"]  # a/b/z < a/y < x
        assert ds.load(0).shape == (8, 8, 3)
        with pytest.raises(DataError, match="test"):
            open_dataset(f"images:{root}", "test", 8)


def test_resize_modes_equal_clean_fid(sets):
    """``clean`` is clean-fid's make_resizer("PIL", False, "bicubic") and ``legacy_pytorch`` its
    make_resizer("PyTorch", False, "bilinear") on the same images; the mode is in the identity, the
    cache key and the result, and changes the numbers."""
    from cleanfid.resize import make_resizer
    fx, _ = sets["fake"]
    x = images_to_tensor(fx[:3])
    ours = ((clean_resize(x) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
    clean = make_resizer("PIL", False, "bicubic", (299, 299))
    legacy = make_resizer("PyTorch", False, "bilinear", (299, 299))
    for i in range(3):
        v = fx[i].astype(np.float32)
        np.testing.assert_allclose(ours[i], clean(v), atol=2e-3)
        lg = torch.nn.functional.interpolate(x[i:i + 1], size=(299, 299), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(((lg[0] + 1) * 127.5).permute(1, 2, 0).numpy(), legacy(v), atol=2e-3)
    assert np.abs(ours[0] - legacy(fx[0].astype(np.float32))).max() > 1.0  # the two modes differ
    torch.manual_seed(0)
    a = FIDInceptionV3(pretrained=False)
    torch.manual_seed(0)
    b = FIDInceptionV3(pretrained=False, resize="clean")
    assert b.ident == a.ident.split("+")[0] + "+resize-clean" != a.ident
    d = sets["dir"]
    lg = evaluate(str(d / "fake.npz"), str(d / "real.npz"), None, ["kid"], **KW)
    cl = evaluate(str(d / "fake.npz"), str(d / "real.npz"), None, ["kid"], resize="clean", **KW)
    assert cl["extractor_resize"] == "clean" and cl["extractor"].endswith("+resize-clean")
    assert cl["metrics"]["kid_mean"] != pytest.approx(lg["metrics"]["kid_mean"], rel=1e-3)
    with pytest.raises(ValueError, match="resize must be one of"):
        FIDInceptionV3(pretrained=False, resize="nearest")
    # the small_inception fixture's 75 px network is what ran, and its input size is in the ident
    assert "+input-75" in lg["extractor"] and cl["extractor"].endswith("+input-75+resize-clean")
    with pytest.raises(ValueError, match="input_size must be >= 75"):
        FIDInceptionV3(pretrained=False, input_size=74)


def test_cli_sides(sets, tmp_path, capsys):
    """--fake / --real in each form from the command line, a run folder on either side; bad sides exit 2
    with one line."""
    from ssgan_fast.train import main as train_main
    d = sets["dir"]
    base = ["--metrics", "fid,pr", "--extractor", "inception-random", "--batch", "8"]
    outs = {}
    for name, fake, real in (("npz", d / "fake.npz", d / "real.npz"), ("folders", d / "fake-flat", d / "real-classes"),
                             ("spec", d / "fake-unlabeled.npz", f"npz:{d / 'real.npz'}")):
        out = tmp_path / f"{name}.json"
        assert evaluate_main(["--fake", str(fake), "--real", str(real), *base, "--out", str(out)]) == 0
        outs[name] = json.loads((tmp_path / f"{name}.json").read_text())
        assert outs[name]["extractor_resize"] == "legacy_pytorch" and outs[name]["num_samples"] == C * PER
    _close(outs["npz"]["metrics"], outs["folders"]["metrics"])
    _close(outs["npz"]["metrics"], outs["spec"]["metrics"])
    # a run folder (one training step on the digits at 8 px) as the generated and as the real side
    assert train_main(["--model", "sphericgan", "--steps", "1", "--size", "8", "--batch", "4", "--out",
                       str(tmp_path / "runs"), "--no-progress", "--device", "cpu", "--no-final-eval",
                       *[a for kv in ("model.ch=8", "model.c_ch=4", "model.z_dim=8", "model.latent_dim=8",
                                      "model.num_prototypes=3", "model.prior_samples=200", "train.sample_every=0")
                         for a in ("--set", kv)]]) == 0
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert evaluate_main(["--fake", str(run), "--real", str(d / "real-flat"), "--per-class", "2", *base,
                          "--out", str(tmp_path / "run.json")]) == 0
    r = json.loads((tmp_path / "run.json").read_text())
    assert r["num_samples"] == 20 and r["size"] == 8 and r["fake"] == str(run.resolve())
    assert evaluate_main(["--fake", str(d / "fake-flat"), "--real", str(run), "--per-class", "2", "--size", "8",
                          *base, "--out", str(tmp_path / "run-real.json")]) == 0
    assert json.loads((tmp_path / "run-real.json").read_text())["num_real"] == 20
    capsys.readouterr()
    for argv, msg in ((["--fake", str(tmp_path / "nope.npz")], "does not exist"),
                      (["--fake", str(d / "fake-flat"), "--metrics", "intra_fid"], "need classes on both sides"),
                      (["--ckpt", str(d / "fake-flat")], "not a run folder")):
        assert evaluate_main([*argv, "--real", str(d / "real.npz"), "--extractor", "inception-random"]
                             if "--metrics" in argv else [*argv, "--real", str(d / "real.npz"), *base]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err

"""The users' path, end to end, on the real on-disk layouts (made by tests/layouts.py): train a few
steps at 64 / 128 px from files, the preparation on file-backed data, the final evaluation with a
random-weight Inception (the code path of the real weights), resume, generate and evaluate; and
the bad inputs (second runs, damaged checkpoints, corrupt files, missing splits / weights).

CI runs each layout once, each model at 64 and 128 px on one loader (tensor and torch at both sizes)
and the DALI CPU loader at both sizes; the evaluations (the trainer's final one and evaluate --ckpt) run
at 64 px for every model and at 128 px for SphericGAN (past the Inception's resize to 299 they are the
same code at either size); ``-m slow`` runs every model on every loader at both sizes, all evaluated."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssgan_fast.data import PrepData, images_to_tensor, make_split, open_dataset, split_from_file
from ssgan_fast.evaluate import main as evaluate_main
from ssgan_fast.generate import main as generate_main
from ssgan_fast.models import get_model
from ssgan_fast.train import main as train_main
from tests import layouts

SMALL = {
    "sphericgan": ["model.ch=8", "model.c_ch=4", "model.z_dim=8", "model.latent_dim=8", "model.num_prototypes=3",
                   "model.prior_samples=200"],
    "cvaegan": ["model.ch=4", "model.c_ch=4", "model.z_dim=8"],
    "lcpgan": ["model.ch=4", "model.c_ch=4", "model.z_dim=8", "model.head_dim=16", "model.clip_arch=tiny",
               "model.clip_weights=", "model.feat_net=thumbnail", "model.feat_weights=", "model.c_net=small",
               "model.c_warmup=3"],
    "medgan": ["model.ch=4", "model.c_ch=4"],
    "triplegan": ["model.ch=4", "model.c_ch=4"],
    "aam-acgan": ["model.ch=4", "model.z_dim=8"],
    "aam-stargan": ["model.ch=4", "model.g_repeat=1", "model.n_critic=1"],
}
EVAL = ["train.eval_samples_per_class=4", "train.eval_extractor=inception-random", "train.eval_classifier_epochs=1",
        "train.eval_batch=16"]
# CI: each model at 64 and 128 px on one layout / loader; the layouts rotate so each is used
CI_RUNS = [("sphericgan", "cub", "torch"), ("lcpgan", "folder", "tensor"), ("cvaegan", "npz", "tensor"),
           ("medgan", "cifar10", "tensor"), ("triplegan", "cub", "tensor"), ("aam-acgan", "folder", "torch"),
           ("aam-stargan", "folder", "tensor")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {"cub": f"cub200:{layouts.make_cub(root / 'cub', classes=3, per_class=10).parent}",
            "folder": f"folder:{layouts.make_folder(root / 'folder', classes=3, per_class=8)}",
            "cifar10": f"cifar10:{layouts.make_cifar(root / 'cifar', 10, per_batch=8)}",
            "cifar100": f"cifar100:{layouts.make_cifar(root / 'cifar100', 100, per_batch=8)}",
            "npz": f"npz:{layouts.make_npz(root / 'set.npz', n=30, size=40)}",
            "dogs": f"dogs120:{layouts.make_dogs(root / 'dogs', classes=3, train=6, test=2)}",
            "celeba": f"celeba500:{layouts.make_celeba(root / 'celeba', sizes=(9, 9, 6, 3))}?classes=3"}


pytestmark = pytest.mark.usefixtures("private_caches", "small_inception")


def _rc(main, argv) -> int:
    """A CLI's exit status (argparse's parser.exit raises SystemExit)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _sets(items):
    return [a for kv in items for a in ("--set", kv)]


def _train(model, spec, size, loader, out, *extra, steps=2, final_eval=True):
    argv = ["--model", model, "--data", spec, "--size", str(size), "--loader", loader, "--steps", str(steps),
            "--batch", "2", "--label-fraction", "0.5", "--out", str(out), "--no-progress", "--device", "cpu",
            *_sets(SMALL[model] + EVAL + ["train.sample_every=0", "train.ckpt_every=1"]), *extra]
    if not final_eval:
        argv.append("--no-final-eval")
    return train_main(argv)


def _only_run(out: Path) -> Path:
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return runs[0]


def _end_to_end(model, spec, size, loader, tmp_path, evaluated=True):
    out = tmp_path / "runs"
    assert _train(model, spec, size, loader, out, final_eval=evaluated) == 0
    run = _only_run(out)
    assert run.name == f"00001-{model}-{spec.split(':')[0]}"
    if evaluated:
        _check_final_eval(run, model, size)
    else:
        assert not (run / "metrics.json").exists()
    # resume: one more step from the checkpoint (no refit: the fitted state comes from it)
    assert train_main(["--resume", str(run), "--steps", "3", "--no-progress", "--no-final-eval"]) == 0
    assert torch.load(run / "ckpt" / "last.pt", weights_only=False)["step"] == 3
    # sample without the data set, loader or graphs
    assert generate_main(["--ckpt", str(run), "--per-class", "2", "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as z:
        assert z["images"].shape[1:] == (size, size, 3) and z["images"].dtype == np.uint8
    if evaluated:  # evaluate from the run folder, without its data set's loader
        assert evaluate_main(["--ckpt", str(run), "--per-class", "4", "--metrics", "fid,is,ra", "--extractor",
                              "inception-random", "--classifier-epochs", "1", "--batch", "16", "--out",
                              str(tmp_path / "e.json")]) == 0
        e = json.loads((tmp_path / "e.json").read_text())
        assert {"fid", "is_mean", "ra"} <= set(e["metrics"]) and e["size"] == size
    return run


def _check_final_eval(run: Path, model: str, size: int):
    m = json.loads((run / "metrics.json").read_text())
    want = json.loads((run / "config.json").read_text())["train"]["eval_metrics"].split(",")
    got = set(m["metrics"]) | set(m["skipped"])
    for k in want:  # every paper metric of the preset, or the reason it could not be computed
        assert {"fid": "fid", "cfid": "cfid", "intra_fid": "intra_fid", "is": "is_mean"}.get(k, k) in got, (k, got)
    assert all(np.isfinite(v) for v in m["metrics"].values())
    nc = json.loads((run / "config.json").read_text())["data_info"]["num_classes"]
    assert m["extractor"].startswith("inception-fid-random:") and m["num_samples"] == 4 * nc
    assert m["size"] == size and m["resize"] and m["data_hash"] and m["protocol"]["samples_per_class"] == 4
    if model == "sphericgan":  # which features the prior clusters came from (no weights here: thumbnails)
        assert m["preparation"]["prior_clusters"]["features"] == "thumbnail"


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("model,layout,loader", CI_RUNS)
def test_every_model_end_to_end_on_files(model, layout, loader, size, data_root, tmp_path):
    _end_to_end(model, data_root[layout], size, loader, tmp_path, evaluated=size == 64 or model == "sphericgan")


@pytest.mark.parametrize("model,layout,preset,want", [
    ("lcpgan", "dogs", [], {"preset": "dogs120", "labels_per_class": 50}),
    ("lcpgan", "celeba", [], {"preset": "celeba500", "labels_per_class": 10}),
    ("medgan", "folder", ["--preset", "fs100"], {"preset": "fs100", "labels_per_class": 20, "size": 64}),
    ("aam-stargan", "cifar100", [], {"preset": "cifar100", "eval_classifier": "resnet18", "batch_labeled": 16})])
def test_paper_presets_on_their_layouts(model, layout, preset, want, data_root, tmp_path):
    """The papers' data sets in their own layouts pick their presets (by family, or --preset): the
    preset's label budget and settings reach config.json, and the run trains and evaluates (the label
    budget, batch and steps cut down here for the tiny layouts)."""
    from ssgan_fast.train import _preset
    p = _preset(model, data_root[layout], preset[1] if preset else None)["train"]
    assert all(p.get(k) == v for k, v in want.items() if k != "preset"), p
    out = tmp_path / "runs"
    # 100 classes: one evaluation sample per class (the ResNet-18 classifiers and Inception dominate the time)
    extra = ["--set", "train.eval_samples_per_class=1"] if layout == "cifar100" else []
    assert _train(model, data_root[layout], 64, "tensor", out, *preset, *extra) == 0
    run = _only_run(out)
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert cfg["preset"] == want["preset"] and cfg["label_fraction"] == 0.5  # the flag beats the preset
    m = json.loads((run / "metrics.json").read_text())
    if model == "aam-stargan":
        assert m["classifier_arch"] == "resnet18" and m["gan_train_classifier_arch"] == "resnet18"
        assert "gan_train" in m["metrics"] and "gan_test" in m["metrics"]
    if model == "lcpgan":
        c = m["preparation"]["clusters"]
        assert c["images"] == "all" and c["unlabeled"] > 0


def test_preset_flag_errors(capsys):
    assert _rc(train_main, ["--model", "medgan", "--preset", "nope"]) == 2
    assert "no such preset; known: " in capsys.readouterr().err
    assert _rc(train_main, ["--model", "medgan", "--preset", "list"]) == 0
    assert "fs100: size=64, labels_per_class=20" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("loader", ["tensor", "torch"])
@pytest.mark.parametrize("model", sorted(SMALL))
def test_full_matrix(model, loader, size, data_root, tmp_path):
    _end_to_end(model, data_root["cub"], size, loader, tmp_path)


@pytest.mark.parametrize("size", [64, 128])
def test_dali_cpu_operators_feed_a_model(size, data_root):
    pytest.importorskip("nvidia.dali")
    from ssgan_fast.data import DaliLoader
    ds = open_dataset(data_root["folder"], "train", size)
    split = make_split(ds.labels, ds.num_classes, label_fraction=0.5)
    loader = DaliLoader(ds, split, 2, 2, device="cpu", _dali_device="cpu")
    M = get_model("sphericgan")
    m = M(M.Config(ch=4, c_ch=4, z_dim=8, latent_dim=8, num_prototypes=3), {"kind": "image", "size": size,
                                                                          "channels": 3, "num_classes": 3})
    m.prepare(PrepData(ds, split), seed=0)
    for s in range(2):
        b = next(loader)
        assert b["x_l"].shape == (2, 3, size, size) and -1 <= float(b["x_l"].min()) and float(b["x_l"].max()) <= 1
        assert all(torch.isfinite(v) for v in m.train_step(b, s).values())


# ------------------------------------------------------------------ layouts and preparation

def test_cub_layout_modes_bbox_and_subset(data_root, tmp_path):
    spec = data_root["cub"]
    tr, te = open_dataset(spec, "train", 64), open_dataset(spec, "test", 64)
    assert tr.num_classes == te.num_classes == 3 and len(tr) + len(te) == 30  # classes.txt lists 3, not 200
    assert tr.class_names[0] == "001.Bird_1" and set(tr.labels) == {0, 1, 2}
    imgs = np.stack([tr.load(i) for i in range(len(tr))])  # RGB, grayscale, CMYK JPEGs and an RGBA PNG
    assert imgs.shape == (len(tr), 64, 64, 3)
    box = open_dataset(spec + "?bbox=1", "train", 64)
    assert box.boxes is not None and not np.array_equal(box.load(0), tr.load(0))
    # a CUB cut to a class subset with CUB's own ids (here 2 and 3): two classes, labels 0..1
    root = Path(spec.split(":", 1)[1]) / "CUB_200_2011"
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "images").symlink_to(root / "images")
    keep = {ln.split()[0] for ln in (root / "image_class_labels.txt").read_text().splitlines() if ln.split()[1] != "1"}
    for f in ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt"):
        (cut / f).write_text("".join(ln + "\n" for ln in (root / f).read_text().splitlines() if ln.split()[0] in keep))
    (cut / "classes.txt").write_text("2 002.Bird_2\n3 003.Bird_3\n")
    sub = open_dataset(f"cub200:{cut}", "train", 32)
    assert sub.num_classes == 2 and set(sub.labels) == {0, 1}
    make_split(sub.labels, sub.num_classes, labels_per_class=2)  # no "198 classes have fewer labels"


@pytest.mark.parametrize("layout", ["folder", "cifar10", "cifar100", "npz"])
def test_other_layouts_open_and_stream(layout, data_root):
    from ssgan_fast.data import stream
    ds = open_dataset(data_root[layout], "train", 64)
    seen = sum(x.shape[0] for x, _ in stream(ds, batch=7))
    assert seen == len(ds) and ds.num_classes >= 3
    x, y = next(iter(stream(ds, batch=5)))
    assert x.shape == (5, 3, 64, 64) and x.dtype == torch.float32 and -1 <= float(x.min()) <= float(x.max()) <= 1


def test_sphericgan_prior_is_fitted_on_files_and_varies(data_root):
    ds = open_dataset(data_root["cub"], "train", 64)
    split = make_split(ds.labels, ds.num_classes, label_fraction=0.5)
    M = get_model("sphericgan")
    m = M(M.Config(ch=4, c_ch=4, z_dim=8, latent_dim=8, num_prototypes=3), {"kind": "image", "size": 64,
                                                                          "channels": 3, "num_classes": 3})
    assert "not fitted" in m.preparation_missing()
    with pytest.raises(RuntimeError, match="prior clusters"):
        m.train_step({"x_l": torch.zeros(1, 3, 64, 64), "y_l": torch.zeros(1, dtype=torch.long),
                      "x_u": torch.zeros(1, 3, 64, 64)}, 0)
    m.prepare(PrepData(ds, split), seed=0)
    assert m.preparation_missing() is None and bool(m.prior_fitted)
    assert torch.unique(m.centroids, dim=0).shape[0] >= 2
    from ssgan_fast.data import stream
    rho = torch.cat([m.prior_of(x) for x, _ in stream(ds, batch=8)])
    assert torch.unique(rho).numel() >= 2  # the assignment varies across images: no constant prior


def test_lcpgan_clusters_are_fitted_from_streamed_labeled_images(data_root):
    ds = open_dataset(data_root["folder"], "train", 32)
    split = make_split(ds.labels, ds.num_classes, labels_per_class=4)
    M = get_model("lcpgan")
    cfg = M.Config(ch=4, c_ch=4, z_dim=8, head_dim=16, clip_arch="tiny", clip_weights="", feat_net="thumbnail",
                   feat_weights="", w_dim=16, map_layers=2)
    m = M(cfg, {"kind": "image", "size": 32, "channels": 3, "num_classes": 3, "class_names": ["a", "b", "c"]})
    assert m.preparation_missing()
    m.prepare(PrepData(ds, split), seed=0)
    assert m.preparation_missing() is None and int(m.counts.sum()) >= 3


def test_resume_does_not_refit(data_root, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    assert _train("sphericgan", data_root["cub"], 32, "tensor", out, final_eval=False) == 0
    run = _only_run(out)
    calls = []
    M = get_model("sphericgan")
    monkeypatch.setattr(M, "prepare", lambda self, *a, **k: calls.append(1))
    assert train_main(["--resume", str(run), "--steps", "3", "--no-progress", "--no-final-eval"]) == 0
    assert calls == []


# ------------------------------------------------------------------ bad inputs lose nothing

def test_second_run_gets_its_own_numbered_folder(data_root, tmp_path, capsys):
    out = tmp_path / "runs"
    for _ in range(2):
        assert _train("sphericgan", data_root["npz"], 32, "tensor", out, final_eval=False) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00001-sphericgan-npz", "00002-sphericgan-npz"]
    first = out / names[0] / "ckpt" / "last.pt"
    assert torch.load(first, weights_only=False)["step"] == 2
    # an explicit --name that exists: exit 2, one line, nothing touched
    stamp = first.stat().st_mtime_ns
    assert _rc(lambda a: _train("sphericgan", data_root["npz"], 32, "tensor", out, "--name", names[0],
                                final_eval=False), None) == 2
    assert "already exists" in capsys.readouterr().err and first.stat().st_mtime_ns == stamp


def test_damaged_checkpoints(data_root, tmp_path, capsys, caplog):
    out = tmp_path / "runs"
    assert _train("cvaegan", data_root["npz"], 32, "tensor", out, steps=3, final_eval=False) == 0
    run = _only_run(out)
    ck = run / "ckpt"
    assert (ck / "prev.pt").is_file() and torch.load(ck / "prev.pt", weights_only=False)["step"] == 2
    data = (ck / "last.pt").read_bytes()
    (ck / "last.pt").write_bytes(data[: len(data) // 2])  # truncated: falls back to prev.pt and says so
    assert generate_main(["--ckpt", str(run), "--per-class", "1", "--out", str(tmp_path / "s.npz")]) == 0
    assert "using the previous checkpoint" in caplog.text
    (ck / "prev.pt").write_bytes(b"not a checkpoint at all")  # both damaged: exit 2, one line naming the files
    for main, argv in ((train_main, ["--resume", str(run), "--steps", "4", "--no-progress"]),
                       (generate_main, ["--ckpt", str(run), "--out", str(tmp_path / "t.npz")])):
        assert _rc(main, argv) == 2
        err = capsys.readouterr().err.strip()
        assert "last.pt" in err and "prev.pt" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_corrupt_files_threshold_names_them(tmp_path, capsys):
    root = layouts.make_cub(tmp_path / "bad", classes=2, per_class=10, corrupt=2)
    spec = f"cub200:{root}"
    argv = ["--model", "sphericgan", "--data", spec, "--size", "32", "--loader", "tensor", "--steps", "1",
            "--batch", "2", "--label-fraction", "0.5", "--out", str(tmp_path / "runs"), "--no-progress",
            "--no-final-eval", *_sets(SMALL["sphericgan"])]
    assert _rc(train_main, argv) == 2
    err = capsys.readouterr().err
    assert "max_bad_fraction" in err and "first bad file(s): " + str(root / "images") in err
    assert train_main(argv + ["--max-bad-fraction", "0.3"]) == 0


def test_labeled_file(data_root, tmp_path, capsys):
    spec = data_root["cub"]
    ds = open_dataset(spec, "train", 32)
    f = tmp_path / "labeled.txt"
    f.write_text("# my benchmark's labeled images\n" + "\n".join(ds.ids[:2]) + "\n" +
                 str(Path(ds.files[5]).relative_to(Path(ds.root) / "images")) + "\n")
    s = split_from_file(f, ds)
    assert list(s.labeled) == [0, 1, 5] and "labeled_file=" in s.rule
    out = tmp_path / "runs"
    argv = ["--model", "sphericgan", "--data", spec, "--size", "32", "--steps", "1", "--batch", "2", "--labeled",
            str(f), "--out", str(out), "--no-progress", "--no-final-eval", *_sets(SMALL["sphericgan"])]
    assert train_main(argv) == 0
    saved = json.loads((_only_run(out) / "split.json").read_text())
    assert saved["labeled"] == [0, 1, 5] and "sha256=" in saved["rule"]
    f.write_text("no-such-image.jpg\n")
    assert _rc(train_main, argv) == 2
    assert "not images of" in capsys.readouterr().err


def test_missing_test_split_and_missing_weights(data_root, tmp_path, capsys):
    from ssgan_fast.evaluation import EvalError, Samples, evaluate
    ds = open_dataset(data_root["folder"], "train", 32)
    x = np.stack([ds.load(i) for i in range(9)])
    s = Samples.from_arrays(x, np.arange(9) % 3)
    with pytest.raises(EvalError, match="test split"):  # folder: has no test split
        evaluate(s, data_root["folder"], 32, ["gan_train"], extractor="classifier", classifier_epochs=1)
    out = evaluate(s, data_root["folder"], 32, ["gan_train", "fid"], extractor="classifier", classifier_epochs=1,
                   strict=False)
    assert "gan_train" in out["skipped"] and "fid_clf" in out["metrics"] and "fid" not in out["metrics"]
    np.savez(tmp_path / "s.npz", images=x, labels=np.arange(9) % 3)
    assert evaluate_main(["--samples", str(tmp_path / "s.npz"), "--data", data_root["folder"], "--metrics", "fid",
                          "--extractor", "inception"]) == 2
    err = capsys.readouterr().err
    assert "pt_inception-2015-12-05-6726825d.pth" in err and "SSGAN_FAST_WEIGHTS" in err


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fp16_cpu_scaler_updates_once_per_step(name, data_root, monkeypatch):
    """Each model's step under the real GradScaler on CPU; the engine's update runs exactly once per step."""
    from ssgan_fast.data import TensorLoader
    from ssgan_fast.engine.trainer import Trainer
    from ssgan_fast.train import build_parser, resolve
    argv = ["--model", name, "--data", data_root["npz"], "--size", "16", "--steps", "3", "--batch", "2",
            "--label-fraction", "0.5", "--amp", "fp16", "--device", "cpu", "--no-progress", "--no-final-eval",
            "--out", str(Path(data_root["npz"].split(":", 1)[1]).parent / f"fp16-{name}"),
            *_sets(SMALL[name] + ["train.sample_every=0", "train.ckpt_every=0"])]
    tr = Trainer(resolve(build_parser().parse_args(argv)))
    assert tr.amp.scaler is not None
    calls = []
    real = tr.amp.scaler.update
    monkeypatch.setattr(tr.amp.scaler, "update", lambda *a: (calls.append(tr.step), real(*a))[1])
    tr.fit()
    assert calls == [0, 1, 2] and tr.amp.updates == 3
    assert isinstance(tr.loader, TensorLoader)


def test_kept_feature_metrics_on_files(data_root):
    """KID, Intra-KID, P/R, per-class P/R and D/C from the one pass over a file-backed set (reference from
    the cache the second time), equal to the metric functions on the same extractor's features; with the
    real images as the samples, P/R/coverage are 1 and FID ~ 0."""
    from ssgan_fast.evaluation import Samples, evaluate, get_classifier
    from ssgan_fast.metrics.kid import intra_kid, kid
    from ssgan_fast.metrics.manifold import manifold_metrics
    spec = data_root["cub"]
    ds = open_dataset(spec, "train", 32)
    x = np.stack([ds.load(i) for i in range(len(ds))])
    y = np.asarray(ds.labels)
    order = np.random.default_rng(0).permutation(len(ds))
    s = Samples.from_arrays(x[order], y[order], batch=7)
    ms = ["fid", "kid", "intra_kid", "pr", "intra_pr", "dc"]
    out = evaluate(s, spec, 32, ms, extractor="classifier", classifier_epochs=1)
    M = out["metrics"]
    assert M["precision_clf"] == M["recall_clf"] == M["coverage_clf"] == 1.0
    assert M["fid_clf"] < 1e-6 and M["density_clf"] > 0.5
    assert out["kid"]["subset_size"] == len(ds) and out["kept_features"]["n_real"] == len(ds)
    assert set(out["intra_kid_per_class"]) == set(out["intra_pr_per_class"]) == {"0", "1", "2"}
    # the same numbers from the features themselves
    clf, _, _ = get_classifier(spec, 32, ds, "cpu", path=out["classifier"], train=False)
    with torch.no_grad():
        t = images_to_tensor(x)
        real = clf(t)["pool"].float()
        fake = clf(t[torch.from_numpy(order)])["pool"].float()
    k = kid(real, fake)
    assert M["kid_clf_mean"] == pytest.approx(k["mean"], rel=1e-6, abs=1e-9)
    assert M["kid_clf_std"] == pytest.approx(k["std"], rel=1e-6, abs=1e-9)
    ik, _ = intra_kid(real, torch.from_numpy(y), fake, torch.from_numpy(y[order]), 3)
    assert M["intra_kid_clf"] == pytest.approx(ik, rel=1e-6, abs=1e-9)
    mm = manifold_metrics(real, fake)
    assert M["density_clf"] == pytest.approx(mm["density"], abs=1e-9)
    again = evaluate(s, spec, 32, ms, extractor="classifier", classifier_epochs=1)  # reference from the cache
    assert again["metrics"] == M


def test_trainer_offers_the_kept_feature_metrics(data_root, tmp_path):
    """train.eval_metrics takes KID, Intra-KID, P/R, per-class P/R and D/C: the trainer's final evaluation
    of a file-backed run writes them into metrics.json, with the kept features' size and KID's subsets."""
    out = tmp_path / "runs"
    ms = "fid,kid,intra_kid,pr,intra_pr,dc"
    assert _train("sphericgan", data_root["folder"], 32, "tensor", out, "--set", f"train.eval_metrics={ms}",
                  "--set", "train.eval_samples_per_class=5") == 0
    m = json.loads((_only_run(out) / "metrics.json").read_text())
    want = {"fid", "kid_mean", "kid_std", "intra_kid", "precision", "recall", "intra_precision", "intra_recall",
            "density", "coverage"}
    assert want <= set(m["metrics"]), set(m["metrics"])
    assert all(np.isfinite(m["metrics"][k]) for k in want)
    assert m["kid"]["subset_size"] == 15 and m["kept_features"]["n_fake"] == 15
    assert m["kept_features"]["n_real"] == 24 and m["kept_features"]["dim"] == 2048


def test_fid_statistics_files_in_pytorch_fid_format(data_root, tmp_path, capsys):
    """--save-real-stats writes pytorch-fid's .npz (mu, sigma); FID against it (--real-stats) equals the
    data set's FID and pytorch-fid's formula on the same file; files of another extractor or dimension,
    or without mu / sigma, are clear errors (exit 2 from the CLI)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    from ssgan_fast.evaluation import EvalError, Samples, evaluate
    spec = data_root["cub"]
    ds = open_dataset(spec, "train", 32)
    x = np.stack([ds.load(i) for i in range(len(ds))])
    fake = (x * 0.6).astype(np.uint8)  # darker: a FID well away from 0
    s = Samples.from_arrays(fake, np.asarray(ds.labels))
    f = tmp_path / "real.npz"
    a = evaluate(s, spec, 32, ["fid"], extractor="classifier", classifier_epochs=1, save_real_stats=f)
    with np.load(f) as z:
        assert z["mu"].shape == (z["sigma"].shape[0],) and str(z["extractor"]) == a["extractor"]
        mu, sigma = z["mu"], z["sigma"]
    b = evaluate(s, spec, 32, ["fid"], extractor="classifier", classifier_epochs=1, real_stats=f)
    assert b["metrics"]["fid_clf"] == pytest.approx(a["metrics"]["fid_clf"], rel=1e-9)
    assert b["real_stats"]["extractor"] == a["extractor"] and b["real_stats"]["n"] == len(ds)
    # pytorch-fid on the same statistics file and the samples' statistics
    from ssgan_fast.evaluation import get_classifier
    clf, _, _ = get_classifier(spec, 32, ds, "cpu", path=a["classifier"], train=False)
    with torch.no_grad():
        feats = clf(images_to_tensor(fake))["pool"].double().numpy()
        real_feats = clf(images_to_tensor(x))["pool"].double().numpy()
    theirs = calculate_frechet_distance(mu, sigma, feats.mean(0), np.cov(feats, rowvar=False))
    np.testing.assert_allclose(mu, real_feats.mean(0), rtol=1e-5, atol=1e-9)  # the file holds the real set's
    assert b["metrics"]["fid_clf"] > 1e-6
    assert b["metrics"]["fid_clf"] == pytest.approx(theirs, rel=1e-5)  # sqrtm vs eigen form, rank-deficient
    # a pytorch-fid file (no extractor recorded) of the right dimension is accepted, with a note
    np.savez(tmp_path / "plain.npz", mu=mu, sigma=sigma)
    c = evaluate(s, spec, 32, ["fid"], extractor="classifier", classifier_epochs=1, real_stats=tmp_path / "plain.npz")
    assert c["metrics"]["fid_clf"] == pytest.approx(a["metrics"]["fid_clf"], rel=1e-9) and "note" in c["real_stats"]
    np.savez(tmp_path / "other.npz", mu=mu, sigma=sigma, extractor=np.array("inception-fid:0123"))
    with pytest.raises(EvalError, match="statistics of the extractor inception-fid:0123"):
        evaluate(s, spec, 32, ["fid"], extractor="classifier", classifier_epochs=1, real_stats=tmp_path / "other.npz")
    np.savez(tmp_path / "wide.npz", mu=np.zeros(7), sigma=np.eye(7))
    with pytest.raises(EvalError, match="7-dimensional statistics"):
        evaluate(s, spec, 32, ["fid"], extractor="classifier", classifier_epochs=1, real_stats=tmp_path / "wide.npz")
    np.savez(tmp_path / "s.npz", images=fake, labels=np.asarray(ds.labels))
    np.savez(tmp_path / "bad.npz", mean=mu)
    assert evaluate_main(["--samples", str(tmp_path / "s.npz"), "--data", spec, "--metrics", "fid", "--extractor",
                          "classifier", "--classifier-epochs", "1", "--real-stats", str(tmp_path / "bad.npz")]) == 2
    assert "pytorch-fid's format holds 'mu' and 'sigma'" in capsys.readouterr().err

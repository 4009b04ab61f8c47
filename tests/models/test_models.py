"""CVAE-GAN, LCP-GAN, AAM-ACGAN and AAM-StarGAN: every loss term present and switchable, fp32 / bf16 steps,
fused vs reference ops, CLI training + exact resume, and the generate applications."""
import numpy as np
import pytest
import torch

from ssgan_fast.data import TensorLoader, images_to_tensor, make_split, open_dataset
from ssgan_fast.engine.amp import Amp
from ssgan_fast.generate import main as generate_main
from ssgan_fast.models import get_model
from ssgan_fast.train import main as train_main

SMALL = {"cvaegan": dict(ch=4, c_ch=4, z_dim=8), "aam-acgan": dict(ch=4, z_dim=8),
         "aam-stargan": dict(ch=4, g_repeat=1, num_sources=6),
         "lcpgan": dict(ch=4, c_ch=4, z_dim=8, clip_arch="tiny", feat_net="thumbnail", feat_center=True, head_dim=16,
                        w_dim=16, map_layers=2, c_warmup=3)}
CLI_SMALL = {"cvaegan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8"],
             "aam-acgan": ["--set", "model.ch=4", "--set", "model.z_dim=8"],
             "aam-stargan": ["--set", "model.ch=4", "--set", "model.g_repeat=1", "--set", "model.n_critic=2"],
             "lcpgan": ["--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set",
                        "model.head_dim=16", "--set", "model.c_warmup=3"]}
ALL = {
    "cvaegan": {"C/ce", "D/real", "D/fake_p", "D/fake_f", "G/fm_d", "G/fm_c", "E/kl", "G/pair_img", "G/pair_d",
                "G/pair_c"},
    "aam-acgan": {"D/adv", "D/cls_real", "D/cls_fake", "G/adv", "G/cls"},
    "aam-stargan": {"D/adv", "D/cls_real", "D/gp", "G/adv", "G/cls", "G/rec"},
    "lcpgan": {"D/class_real", "D/class_fake", "D/prompt_real", "D/prompt_fake", "C/labeled", "C/fake", "C/entropy",
               "G/class", "G/label", "G/prompt", "G/clip"},
}
FULL = {"cvaegan": {}, "aam-acgan": {"d_cls_fake": True}, "aam-stargan": {"n_critic": 1}, "lcpgan": {"clip_loss": True}}


def _model(name, **kw):
    ds = open_dataset("digits", size=8)
    M = get_model(name)
    torch.manual_seed(0)
    m = M(M.Config(**{**SMALL[name], **kw}), {"kind": "image", "size": 8, "channels": 1, "num_classes": 10})
    split = make_split(ds.labels, 10, label_fraction=0.1)
    if hasattr(m, "fit_clusters"):
        m.fit_clusters(images_to_tensor(ds.images[split.labeled]), torch.as_tensor(ds.labels[split.labeled]))
    return m, TensorLoader(ds, split, 4, 4, seed=0)


@pytest.mark.parametrize("amp", [None, "bf16"])
@pytest.mark.parametrize("name", sorted(ALL))
def test_step_all_terms_update_every_network(name, amp):
    m, loader = _model(name, **FULL[name])
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    losses = m.train_step(next(loader), 0, Amp(amp, "cpu"))
    assert set(losses) == ALL[name]
    assert all(torch.isfinite(v) for v in losses.values())
    names = {id(v): k for k, v in m.named_parameters()}
    for net, opt in m.optimizers().items():  # one step per network: each optimizer moved its parameters
        mine = [names[id(p)] for g in opt.param_groups for p in g["params"]]
        moved = [k for k in mine if not torch.equal(before[k], dict(m.named_parameters())[k])]
        assert moved, f"{name}: {net} did not change"


@pytest.mark.parametrize("name,switch,gone", [
    ("cvaegan", {"pair_img": False}, {"G/pair_img"}),
    ("cvaegan", {"pair_d": False}, {"G/pair_d"}),
    ("cvaegan", {"pair_c": False}, {"G/pair_c"}),
    ("cvaegan", {"mean_fm_d": False}, {"G/fm_d"}),
    ("cvaegan", {"mean_fm_c": False}, {"G/fm_c"}),
    ("cvaegan", {"encoder": False}, {"E/kl", "G/pair_img", "G/pair_d", "G/pair_c", "D/fake_f"}),
    ("aam-acgan", {"d_cls_fake": False}, {"D/cls_fake"}),
    ("aam-stargan", {"adv": "bce"}, {"D/gp"}),
    ("lcpgan", {"prompt_d": False}, {"D/prompt_real", "D/prompt_fake", "G/prompt"}),
    ("lcpgan", {"clip_loss": False}, {"G/clip"}),
    ("lcpgan", {"prompt_d": False, "clip_loss": False, "clusters": False},
     {"D/prompt_real", "D/prompt_fake", "G/prompt", "G/clip"}),
])
def test_switches_remove_terms(name, switch, gone):
    m, loader = _model(name, **{**FULL[name], **switch})
    assert set(m.train_step(next(loader), 0)) == ALL[name] - gone


def test_cvaegan_encoder_off_has_no_E():
    m, _ = _model("cvaegan", encoder=False)
    assert not hasattr(m, "E") and "E" not in m.optimizers() and m.generator_modules() == ["G"]


@pytest.mark.parametrize("name", ["aam-acgan", "aam-stargan"])
def test_softmax_baseline_switch(name):
    aam, loader = _model(name, **FULL[name])
    soft, loader2 = _model(name, **FULL[name], cls="softmax")
    assert hasattr(aam.cls, "head") and isinstance(soft.cls.fc, torch.nn.Linear)
    la, ls = aam.train_step(next(loader), 0), soft.train_step(next(loader2), 0)
    assert set(la) == set(ls)
    # AAM with s = 30 and margin 0.5 starts far above log(10); the softmax CE starts near it
    assert float(la["D/cls_real"]) > 5 and float(ls["D/cls_real"]) < 4


def test_stargan_n_critic_and_sources():
    m, loader = _model("aam-stargan", n_critic=3)
    keys = [set(m.train_step(next(loader), s)) for s in range(3)]
    assert "G/adv" not in keys[0] and "G/adv" not in keys[1] and "G/rec" in keys[2]
    assert int(m.num_filled) == 6  # the bank of source images filled from the first batch
    y = torch.tensor([0, 3, 9])
    out = m.sample(y, m.noise(3))
    assert out.shape == (3, 1, 8, 8) and out.abs().max() <= 1
    assert m.translate(m.sources[:2], 4).shape == (2, 1, 8, 8)


def test_stargan_gradient_penalty_value():
    """WGAN-GP term: for a D that is linear in x, ||grad|| is the same everywhere: (||w|| - 1)^2."""
    m, _ = _model("aam-stargan")
    w = torch.randn(1, 8, 8)

    class Lin(torch.nn.Module):
        def forward(self, x):
            return (x * w).flatten(1).sum(1, keepdim=True), x.flatten(1)
    m.D = Lin()
    x, xf = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    gp = m._gp(x, xf, Amp(None, "cpu"))
    assert float(gp) == pytest.approx(float((w.norm() - 1) ** 2), rel=1e-5)


@pytest.mark.parametrize("name", ["aam-acgan", "aam-stargan", "lcpgan"])
def test_fused_ops_match_reference_over_steps(name, monkeypatch):
    runs = []
    for backend in ("cpp", "ref"):
        monkeypatch.setenv("SSGAN_FAST_BACKEND", backend)
        m, loader = _model(name, **FULL[name])
        runs.append([m.train_step(next(loader), i) for i in range(4)])
    for a, b in zip(*runs, strict=False):
        for k in a:
            assert float(a[k]) == pytest.approx(float(b[k]), rel=2e-3, abs=2e-4), k


def test_cvaegan_moving_average_centres():
    """The feature-centre histories follow momentum * history + (1 - momentum) * batch mean."""
    m, loader = _model("cvaegan", fm_momentum=0.5)
    assert not m.fd_seen.any() and not m.fc_seen.any()
    b = next(loader)
    m.train_step(b, 0)
    assert m.fd_seen.all() and m.fc_seen[0, b["y_l"]].all()
    h = m.fd_real.clone()
    b2 = next(loader)
    m.train_step(b2, 1)
    # history moved toward the new batch, not replaced by it
    assert not torch.equal(m.fd_real, h)
    # classes absent from both batches keep a zero, unseen history
    absent = torch.ones(10, dtype=torch.bool)
    absent[b["y_l"]] = False
    absent[b2["y_l"]] = False
    assert not m.fc_seen[0, absent].any() and (m.fc_real[absent] == 0).all()


def test_cvaegan_centre_formula():
    m, _ = _model("cvaegan", fm_momentum=0.75)
    hist, batch = torch.randn(5), torch.randn(5)
    assert torch.allclose(m._centre(batch, hist, torch.tensor(True)), 0.75 * hist + 0.25 * batch)
    assert torch.equal(m._centre(batch, hist, torch.tensor(False)), batch)


@pytest.mark.parametrize("name", sorted(ALL))
def test_cli_train_resume_exact_and_generate(name, tmp_path):
    common = ["--model", name, "--size", "8", "--batch", "4", "--out", str(tmp_path), "--no-progress",
              "--no-final-eval", "--set", "train.log_every=1", "--ckpt-every", "2", "--sample-every", "0"]
    common += CLI_SMALL[name]
    assert train_main(common + ["--name", "full", "--steps", "4"]) == 0
    assert train_main(common + ["--name", "part", "--steps", "2"]) == 0
    assert train_main(["--resume", str(tmp_path / "part"), "--steps", "4", "--no-progress", "--no-final-eval"]) == 0
    full = (tmp_path / "full" / "losses.jsonl").read_text().splitlines()
    assert full == (tmp_path / "part" / "losses.jsonl").read_text().splitlines() and len(full) == 4
    out = tmp_path / "s.npz"
    assert generate_main(["--ckpt", str(tmp_path / "full"), "--per-class", "2", "--out", str(out)]) == 0
    z = np.load(out)
    assert z["images"].shape == (20, 8, 8, 1) and sorted(set(z["labels"])) == list(range(10))


def _write_pngs(folder, n=3):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    ds = open_dataset("digits", size=8)
    for i in range(n):
        Image.fromarray(np.repeat(ds.images[i], 3, axis=2)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    for name in ("cvaegan", "aam-stargan"):
        assert train_main(["--model", name, "--size", "8", "--batch", "4", "--out", str(d), "--name", name,
                           "--steps", "2", "--no-progress", "--no-final-eval", "--sample-every", "0"]
                          + CLI_SMALL[name]) == 0
    return d


def test_generate_inpaint_and_morph(runs, tmp_path):
    imgs = _write_pngs(tmp_path / "in")
    out = tmp_path / "inp"
    assert generate_main(["inpaint", "--ckpt", str(runs / "cvaegan"), "--images", str(imgs), "--out", str(out),
                          "--box", "2,2,6,6", "--iters", "2", "--optimize-steps", "2"]) == 0
    z = np.load(out / "images.npz")["images"]
    assert z.shape == (9, 8, 8, 1)
    orig, filled = z[:3].astype(int), z[6:].astype(int)
    keep = np.ones((8, 8), bool)
    keep[2:6, 2:6] = False
    assert np.abs(orig[:, keep] - filled[:, keep]).max() <= 1  # known pixels kept (Eq. 8)
    assert (out / "grid.png").is_file() and (out / "img0_inpaint.png").is_file()
    assert generate_main(["inpaint", "--ckpt", str(runs / "cvaegan"), "--images", str(imgs), "--out", str(out),
                          "--label", "3", "--iters", "1", "--overwrite"]) == 0  # random 50/128 box, given class
    m = tmp_path / "m.png"
    assert generate_main(["morph", "--ckpt", str(runs / "cvaegan"), "--images", str(imgs / "img0.png"),
                          str(imgs / "img1.png"), "--steps", "4", "--out", str(m)]) == 0
    assert m.is_file()
    assert generate_main(["morph", "--ckpt", str(runs / "cvaegan"), "--classes", "1", "7", "--out", str(m),
                          "--overwrite"]) == 0


def test_generate_translate(runs, tmp_path):
    imgs = _write_pngs(tmp_path / "in", 2)
    out = tmp_path / "tr"
    assert generate_main(["translate", "--ckpt", str(runs / "aam-stargan"), "--images", str(imgs), "--domain", "4",
                          "--out", str(out)]) == 0
    assert np.load(out / "images.npz")["images"].shape == (4, 8, 8, 1) and (out / "img1_to4.png").is_file()


@pytest.mark.parametrize("argv,msg", [
    (["translate", "--ckpt", "{cvaegan}", "--images", "{imgs}", "--domain", "1"], "needs a model with translate"),
    (["inpaint", "--ckpt", "{stargan}", "--images", "{imgs}"], "needs a model with inpaint"),
    (["translate", "--ckpt", "{stargan}", "--images", "{imgs}", "--domain", "10"], "domains 0..9"),
    (["inpaint", "--ckpt", "{cvaegan}", "--images", "/no/such/dir"], "does not exist"),
    (["inpaint", "--ckpt", "{cvaegan}", "--images", "{bad}"], "cannot read image"),
    (["inpaint", "--ckpt", "{cvaegan}", "--images", "{imgs}", "--box", "0,0,9,9"], "must lie inside"),
    (["morph", "--ckpt", "{cvaegan}", "--classes", "1", "12"], "classes 0..9"),
])
def test_generate_errors(argv, msg, runs, tmp_path, capsys):
    imgs = _write_pngs(tmp_path / "in", 1)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    sub = {"{cvaegan}": str(runs / "cvaegan"), "{stargan}": str(runs / "aam-stargan"), "{imgs}": str(imgs),
           "{bad}": str(bad)}
    argv = [sub.get(a, a) for a in argv] + ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        generate_main(argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err


@pytest.mark.parametrize("argv,msg", [
    (["--model", "aam-acgan", "--set", "model.cls=arc"], "cls must be"),
    (["--model", "aam-stargan", "--set", "model.adv=hinge"], "adv must be one of"),
    (["--model", "cvaegan", "--data", "ring2d"], "trains on images"),
    (["--model", "cvaegan", "--set", "model.fm_momentum=1.5"], "fm_momentum"),
])
def test_model_settings_rejected(argv, msg, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        train_main(argv + ["--out", str(tmp_path), "--steps", "1", "--no-progress", "--no-final-eval"])
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_lr_decay_is_a_function_of_the_step():
    m, loader = _model("aam-acgan", lr_decay_every=2, lr_decay=0.5)
    for s in range(5):
        m.train_step(next(loader), s)
    assert m.optimizers()["G"].param_groups[0]["lr"] == pytest.approx(1e-4 * 0.25)
    m.train_step(next(loader), 0)  # back at step 0 (e.g. a restarted schedule): the base rate again
    assert m.optimizers()["D"].param_groups[0]["lr"] == pytest.approx(1e-4)


def _resume(run):
    """The full trainer of a finished run (data set, loader and all), for tests that need its loader."""
    from ssgan_fast.engine.trainer import TrainConfig, Trainer
    return Trainer(TrainConfig.from_run(run, progress=False, device="cpu"), resume=str(run))


def test_classifier_accuracy_on_the_test_split(runs):
    test = open_dataset("digits", "test", size=8)
    for name in ("cvaegan", "aam-stargan"):  # C, and D's auxiliary AAM classifier
        tr = _resume(runs / name)
        acc, why = tr.classifier_accuracy()
        assert why is None
        assert tr.model.training  # restored after the eval-mode pass
        tr.model.eval()
        pred = tr.model.classify(images_to_tensor(test.images))
        assert acc == pytest.approx(100.0 * float((pred == torch.as_tensor(test.labels)).double().mean()))


def _attr_domains(root, n=12):
    """domains:/root with 2 domain folders; image i is uniformly 20 * i, its attributes the 3 low bits of i."""
    from PIL import Image
    rows = ["file,a0,a1,a2"]
    for i in range(n):
        d = root / f"d{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 20 * i, dtype=np.uint8)).save(d / f"img{i}.png")
        rows.append(f"d{i % 2}/img{i}.png," + ",".join(str((i >> b) & 1) for b in range(3)))
    (root / "attrs.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("kind", ["tensor", "torch"])
def test_loaders_carry_attributes(kind, tmp_path):
    from ssgan_fast.data import make_loader
    ds = open_dataset(f"domains:{_attr_domains(tmp_path / 'd')}", size=8)
    loader = make_loader(kind, ds, make_split(ds.labels, 2, labels_per_class=2), 3, 5, seed=0,
                         **({"num_workers": 0} if kind == "torch" else {}))
    for _ in range(3):
        b = next(loader)
        for x, a in ((b["x_l"], b["a_l"]), (b["x_u"], b["a_u"])):
            idx = ((x[:, 0, 0, 0] + 1) * 127.5 / 20).round().long()  # the image's index from its intensity
            want = torch.stack([(idx >> k) & 1 for k in range(3)], 1).float()
            assert a.shape == (x.shape[0], 3) and torch.equal(a, want)


def test_stargan_multi_attribute_train_and_translate(tmp_path):
    data = _attr_domains(tmp_path / "d")
    argv = ["--model", "aam-stargan", "--data", f"domains:{data}", "--size", "8", "--batch", "4", "--out",
            str(tmp_path), "--name", "attr", "--steps", "2", "--no-progress", "--no-final-eval", "--sample-every", "0",
            "--set", "model.n_critic=1", "--set", "train.batch_unlabeled=0"] + CLI_SMALL["aam-stargan"][:4]
    assert train_main(argv) == 0
    tr = _resume(tmp_path / "attr")
    m = tr.model
    assert m.na == 3 and m.G.code_dim == 3 and len(m.cls.heads) == 3
    b = next(tr.loader)
    losses = m.train_step(b, 0)
    assert {"D/cls_real", "G/cls", "G/rec"} <= set(losses)
    h = m.D(torch.cat([b["x_l"], b["x_u"]]))[1]
    a = torch.cat([b["a_l"], b["a_u"]])
    want = sum(hd.loss(h, a[:, i].long()) for i, hd in enumerate(m.cls.heads)) / 3  # per-attribute AAM, averaged
    assert torch.allclose(m.cls.loss(h, a), want)
    assert m.predict(b["x_l"]).shape == (b["x_l"].shape[0], 3)
    imgs = tmp_path / "in"
    imgs.mkdir()
    (imgs / "img2.png").write_bytes((data / "d0" / "img2.png").read_bytes())
    out = tmp_path / "tr"
    assert generate_main(["translate", "--ckpt", str(tmp_path / "attr"), "--images", str(imgs), "--attrs", "1,0,1",
                          "--out", str(out)]) == 0
    assert (out / "img2_to101.png").is_file()
    for bad in (["--domain", "1"], ["--attrs", "1,0"], ["--attrs", "1,2,0"]):
        with pytest.raises(SystemExit) as e:
            generate_main(["translate", "--ckpt", str(tmp_path / "attr"), "--images", str(imgs), "--out", str(out)]
                          + bad)
        assert e.value.code == 2

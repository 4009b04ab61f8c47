"""MED-GAN and Triple-GAN: every loss term present and switchable on images and 2-D data, the
Triple-GAN classifier term, the 2-D D's spectral-norm switch, the mask embedding and the CLI."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssgan_fast.data import TensorLoader, make_split, open_dataset
from ssgan_fast.engine.amp import Amp
from ssgan_fast.generate import main as generate_main
from ssgan_fast.models import get_model
from ssgan_fast.train import main as train_main


def _med(name, spec, **kw):
    ds = open_dataset(spec, size=8)
    sp = make_split(ds.labels, ds.num_classes, label_fraction=0.1 if spec == "digits" else None)
    M = get_model(name)
    torch.manual_seed(0)
    m = M(M.Config(ch=4, c_ch=4, z_dim=8, hidden=16, **kw), {"kind": ds.kind, "size": getattr(ds, "size", 0),
                                                              "channels": ds.channels, "num_classes": ds.num_classes})
    return m, TensorLoader(ds, sp, 4, 4, seed=0)


# the paper's C (Eq. 10) has no plain labeled term: c_labeled=true adds C/labeled
MED_IMAGE = {"D/real", "D/fake", "D/unlabeled", "D/idnt", "D/cons", "D/ctrs", "C/mixed_z", "C/mixed_u",
             "G/advs", "G/recg"}


@pytest.mark.parametrize("amp", [None, "bf16"])
@pytest.mark.parametrize("spec", ["digits", "ring2d"])
def test_medgan_step_all_terms(spec, amp):
    m, loader = _med("medgan", spec)
    losses = m.train_step(next(loader), 0, Amp(amp, "cpu"))
    want = MED_IMAGE if spec == "digits" else {"D/real", "D/fake", "D/unlabeled", "D/ctrs", "C/labeled", "C/fake",
                                               "G/advs", "G/recg"}
    assert set(losses) == want and all(torch.isfinite(v) for v in losses.values())
    base, loader = _med("triplegan", spec)
    assert set(base.train_step(next(loader), 0, Amp(amp, "cpu"))) == {"D/real", "D/fake", "D/pseudo_fake", "C/labeled",
                                                                      "C/fake", "C/adv", "G/advs"}
    simple, loader = _med("triplegan", spec, triple=False)
    assert set(simple.train_step(next(loader), 0, Amp(amp, "cpu"))) == {"D/real", "D/fake", "D/unlabeled",
                                                                        "C/labeled", "C/fake", "G/advs"}


@pytest.mark.parametrize("spec", ["digits", "ring2d"])
def test_triple_gan_classifier_term(spec):
    """Triple-GAN's C term = alpha * sum_y p_c(y | x) (-log D(x, y)) (exact sum for <= 16 classes), and it
    sends gradient into C only through p_c."""
    m, loader = _med("triplegan", spec)
    m.eval()  # no dropout in C, no power iteration in D: two passes give the same networks
    b = next(loader)
    torch.manual_seed(5)
    got = m._triple_c(b["x_u"], m.points, "cpu")
    torch.manual_seed(5)  # the same region masks for the direct computation
    n = b["x_u"].shape[0]
    masks = None if m.points else m._region(n, "cpu")
    p = torch.softmax(m.C(b["x_u"]).float(), 1)
    want = sum(p[:, y] * F.softplus(-m.D(b["x_u"], masks, torch.full((n,), y)).float()) for y in range(m.nc)).mean()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("switch,gone", [("idnt", {"D/idnt"}), ("region_reg", {"D/cons", "D/ctrs"}),
                                         ("recg", {"G/recg"})])
def test_medgan_switches(switch, gone):
    m, loader = _med("medgan", "digits", **{switch: False})
    assert set(m.train_step(next(loader), 0)) == MED_IMAGE - gone


@pytest.mark.parametrize("model", ["medgan", "triplegan"])
def test_point_d_spectral_norm_switch(model):
    """The 2-D D is a plain MLP (the paper's Sec. 5.2) unless point_sn=true; every linear layer either way."""
    from torch.nn.utils import parametrize
    for sn in (False, True):
        m, loader = _med(model, "ring2d", point_sn=sn)
        lins = [mod for mod in m.D.modules() if isinstance(mod, torch.nn.Linear)]
        assert len(lins) == 3 and all(parametrize.is_parametrized(mod, "weight") == sn for mod in lins)
        assert all(torch.isfinite(v) for v in m.train_step(next(loader), 0).values())


def test_medgan_mask_embedding_changes_d():
    """mask_embedding=False removes A_mask: same seed, different D outputs once A_mask has learnt."""
    on, _ = _med("medgan", "digits")
    off, _ = _med("medgan", "digits", mask_embedding=False)
    assert on.D.mask is not None and off.D.mask is None
    torch.nn.init.normal_(on.D.mask.net[2].weight)
    x = torch.randn(2, 1, 8, 8)
    m = torch.zeros(2, 1, 8, 8)
    m[:, :, 2:6, 2:6] = 1
    y = torch.tensor([1, 2])
    assert not torch.allclose(on.D(x, m, y), on.D(x, torch.ones_like(m), y))


@pytest.mark.parametrize("model", ["medgan", "triplegan"])
def test_medgan_cli_ring2d_and_digits(model, tmp_path):
    for data in ("ring2d", "digits"):
        args = ["--model", model, "--data", data, "--out", str(tmp_path), "--name", f"{model}-{data}", "--steps", "3",
                "--batch", "8", "--set", "model.ch=4", "--set", "model.c_ch=4", "--no-progress", "--no-final-eval"]
        if data == "digits":
            args += ["--size", "8"]
        assert train_main(args) == 0
    z = tmp_path / "pts.npz"
    assert generate_main(["--ckpt", str(tmp_path / f"{model}-ring2d"), "--per-class", "5", "--out", str(z)]) == 0
    assert np.load(z)["points"].shape == (40, 2)

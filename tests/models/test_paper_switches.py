"""The switches of docs/deviations.md: each changes the loss or the schedule
as documented, and the paper's behaviour is the default (the digits presets keep the project's choices)."""
import pytest
import torch

from ssgan_fast.data import TensorLoader, images_to_tensor, make_split, open_dataset
from ssgan_fast.models import get_model
from ssgan_fast.models.base import config_from_dict
from ssgan_fast.models.medgan import _sqdist
from ssgan_fast.train import _preset
from ssgan_fast.train import presets_of as _presets


def _data(spec="digits"):
    ds = open_dataset(spec, size=8)
    sp = make_split(ds.labels, ds.num_classes, label_fraction=0.1 if spec == "digits" else None)
    info = {"kind": ds.kind, "size": getattr(ds, "size", 0), "channels": ds.channels, "num_classes": ds.num_classes}
    return ds, sp, info


def _sphericgan(**kw):
    ds, sp, info = _data()
    M = get_model("sphericgan")
    torch.manual_seed(0)
    m = M(M.Config(ch=4, c_ch=4, z_dim=8, latent_dim=8, num_prototypes=4, prior_samples=200, **kw), info)
    m.fit_prior(images_to_tensor(ds.images))
    return m, TensorLoader(ds, sp, 4, 4, seed=0)


def test_sphericgan_algorithm1_steps_f_before_d_and_g_without_f(monkeypatch):
    """Algorithm 1: P, F, D, G, C - F takes its own step before the discriminators and G's step moves
    no F weight; joint: F steps together with G, after D."""
    for order, want in (("algorithm1", ["P", "F", "D", "G", "C"]), ("joint", ["P", "D", "F", "G", "C"])):
        m, loader = _sphericgan(update_order=order)
        seen = []
        for name, o in m._opts.items():
            def step(*a, _real=o.step, _name=name, _seen=seen, **k):
                _seen.append(_name)
                return _real(*a, **k)
            monkeypatch.setattr(o, "step", step)
        f0 = [p.detach().clone() for p in m.F.parameters()]
        losses = m.train_step(next(loader), 0)
        assert seen == want, (order, seen)
        assert {"F/lat_adv", "F/align", "F/cons", "G/lat_adv", "G/align"} <= set(losses)
        assert not all(torch.equal(a, p) for a, p in zip(f0, m.F.parameters(), strict=True))


def test_sphericgan_g_sn_switch():
    from torch.nn.utils import parametrize
    for sn in (False, True):
        m, _ = _sphericgan(g_sn=sn)
        lins = [mod for mod in m.G2.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d))]
        assert lins and any(parametrize.is_parametrized(mod, "weight") for mod in lins) == sn


def test_sphericgan_c_fake_weight_scales_or_drops_cs_term_on_gs_pairs():
    """c_fake_weight: None = mu x CE(C(x_z), y_z) (Eq. 8, the paper); w scales that CE instead; 0 drops it."""
    vals = {}
    for w in (None, 2.0, 0.0):
        m, loader = _sphericgan(c_fake_weight=w)
        losses = m.train_step(next(loader), 0)
        vals[w] = losses.get("C/fake")
    assert vals[0.0] is None
    # same seed, same first step up to C: the CE is the same, only its weight differs
    assert torch.allclose(vals[2.0] / 2.0, vals[None] / get_model("sphericgan").Config().mu, rtol=1e-5)
    for bad in (-1.0, "x", True):
        with pytest.raises(ValueError, match="c_fake_weight"):
            _sphericgan(c_fake_weight=bad)
    # from a preset / --set: the `float | None` annotation is what config_from_dict checks
    cls = get_model("sphericgan").Config
    assert config_from_dict(cls, {"c_fake_weight": None}, "t").c_fake_weight is None
    assert config_from_dict(cls, {"c_fake_weight": 2}, "t").c_fake_weight == 2.0
    for bad in ("x", True):
        with pytest.raises(ValueError, match="c_fake_weight must be a number or null"):
            config_from_dict(cls, {"c_fake_weight": bad}, "t")


def test_sphericgan_mu_weights_gs_verification_term():
    """mu (Eq. 8): G/verify = mu x CE(C(x_z), y_z); with c_fake_weight 0 it does not reach C's loss (the
    digits preset's mu 6.5 changes only G's term)."""
    got = {}
    for mu in (5.0, 6.5):
        m, loader = _sphericgan(mu=mu, c_fake_weight=0.0)
        losses = m.train_step(next(loader), 0)
        got[mu] = (losses["G/verify"], {k: v for k, v in losses.items() if k.startswith("C/")})
        assert "C/fake" not in got[mu][1] and got[mu][1]
    (g5, c5), (g65, c65) = got[5.0], got[6.5]
    assert torch.allclose(g65 / 6.5, g5 / 5.0, rtol=1e-5) and not torch.allclose(g65, g5)
    assert c5.keys() == c65.keys() and all(torch.equal(c5[k], c65[k]) for k in c5)  # C's terms: real data only


def test_sphericgan_mode_seeking_pairs_share_a_class_and_the_term_is_msgan_eq3(monkeypatch):
    """ms_weight > 0: y_z[i + B//2] = y_z[i], and G/mode_seek = w / (mean|x_z1 - x_z2| / mean|z1 - z2|);
    0 (the paper) adds no term and leaves y_z as drawn."""
    m, loader = _sphericgan()
    assert "G/mode_seek" not in m.train_step(next(loader), 0)
    m, loader = _sphericgan(ms_weight=0.5)
    seen = {}
    real_g = m._g_phase

    def g_phase(s, amp, _real=real_g):
        out = _real(s, amp)
        seen["s"], seen["xz"] = s, out[1]  # (losses, G's images)
        return out
    monkeypatch.setattr(m, "_g_phase", g_phase)
    losses = m.train_step(next(loader), 0)
    s, xz = seen["s"], seen["xz"]
    h = s.y_z.shape[0] // 2
    assert torch.equal(s.y_z[:h], s.y_z[h:2 * h])
    want = 0.5 / ((xz[:h] - xz[h:2 * h]).abs().mean() / (s.z[:h] - s.z[h:2 * h]).abs().mean() + 1e-5)
    assert torch.allclose(losses["G/mode_seek"], want.detach(), rtol=1e-5)
    with pytest.raises(ValueError, match="ms_weight"):
        _sphericgan(ms_weight=-0.1)


def test_medgan_region_dist_is_the_squared_norm_or_its_mean():
    a, b = torch.randn(3, 4, 5, 5), torch.randn(3, 4, 5, 5)
    want = ((a - b) ** 2).flatten(1).sum(1)
    assert torch.allclose(_sqdist(a, b), want) and torch.allclose(_sqdist(a, b, "mean"), want / 100)


def _medgan(**kw):
    ds, sp, info = _data()
    M = get_model("medgan")
    torch.manual_seed(0)
    return M(M.Config(ch=4, c_ch=4, z_dim=8, hidden=16, **kw), info), TensorLoader(ds, sp, 4, 4, seed=0)


def test_medgan_switches_change_the_losses():
    base, loader = _medgan()
    b = next(loader)
    torch.manual_seed(1)
    l0 = base.train_step(b, 0)
    assert "C/labeled" not in l0  # Eq. 10: the constructed instances only
    m, _ = _medgan(c_labeled=True)
    torch.manual_seed(1)
    l1 = m.train_step(b, 0)
    assert "C/labeled" in l1 and torch.equal(l1["D/ctrs"], l0["D/ctrs"])
    m, _ = _medgan(region_dist="mean")
    torch.manual_seed(1)
    l2 = m.train_step(b, 0)
    assert torch.equal(l2["D/real"], l0["D/real"]) and not torch.equal(l2["D/cons"], l0["D/cons"])


def test_cvaegan_d_sn_switch():
    from torch.nn.utils import parametrize
    _, _, info = _data()
    M = get_model("cvaegan")
    for sn in (False, True):
        m = M(M.Config(ch=4, c_ch=4, z_dim=8, d_sn=sn), info)
        convs = [mod for mod in m.D.modules() if isinstance(mod, torch.nn.Conv2d)]
        assert convs and all(parametrize.is_parametrized(mod, "weight") == sn for mod in convs)


def test_presets_paper_defaults_and_digits_choices():
    dm = _preset("sphericgan", "digits")["model"]
    assert dm["update_order"] == "joint" and dm["c_fake_weight"] == 0 and dm["ms_weight"] > 0
    for fam in ("cub200", "folder"):
        p = _preset("sphericgan", fam)
        assert "update_order" not in p["model"] and p["train"]["ema"] is False and "attn_res" not in p["model"]
        assert not {"c_fake_weight", "ms_weight"} & set(p["model"]) and p["model"]["c_lr"] == 1e-3  # Sec. 4.1
        assert p["model"]["mu"] == 5.0 and dm["mu"] != 5.0  # Eq. 8's mu: the paper's; digits: a choice
    assert get_model("sphericgan").Config().update_order == "algorithm1" and not get_model("sphericgan").Config().g_sn
    assert get_model("sphericgan").Config().c_fake_weight is None and get_model("sphericgan").Config().ms_weight == 0
    assert _preset("medgan", "digits")["model"]["region_dist"] == "mean"
    assert "region_dist" not in _preset("medgan", "cifar10")["model"]
    assert get_model("medgan").Config().region_dist == "sum" and not get_model("medgan").Config().c_labeled
    assert get_model("triplegan").Config().c_labeled
    assert not get_model("cvaegan").Config().d_sn and _preset("cvaegan", "digits")["model"]["d_sn"] is True
    # this round's choices live in the digits presets only; the models' defaults stay the papers'
    choices = {"ms_weight", "ms_pool", "calibrate", "semi_supervised", "label_init_std"}
    for model in ("aam-acgan", "aam-stargan", "medgan", "triplegan", "cvaegan", "lcpgan"):
        M = get_model(model)
        assert M.Config().ms_weight == 0, model
        for fam, sec in ((f, s) for f, s in _presets(model).items() if f not in ("digits", "ring2d")):
            assert not choices & set((sec or {}).get("model") or {}), (model, fam)
    assert _preset("aam-acgan", "digits")["model"]["ms_weight"] > 0
    assert _preset("aam-stargan", "digits")["model"]["calibrate"] is True
    assert get_model("aam-acgan").Config().adv == "bce" and not get_model("aam-stargan").Config().calibrate


def _lcpgan(**kw):
    from ssgan_fast.data import PrepData
    ds, sp, info = _data()
    info["class_names"] = [str(i) for i in range(10)]
    M = get_model("lcpgan")
    torch.manual_seed(0)
    m = M(M.Config(ch=4, c_ch=4, z_dim=8, clip_arch="tiny", feat_net="thumbnail", feat_center=True, head_dim=16,
                   c_warmup=5, **kw), info)
    m.prepare(PrepData(ds, sp, batch=64))
    return m, TensorLoader(ds, sp, 4, 4, seed=0)


def test_lcpgan_table2_schemes():
    """scheme lcp: D_class's real side is every image with its Eq. 1 label; triple (Semi-BigGAN): the
    labeled pairs only, C's pairs are fakes and C gets Triple-GAN's adversarial term; d_clusters
    ("+Clusters"): D_class conditioned on the Eq. 3 memberships. Each loss is recomputed from the
    networks before the step (in eval mode: no dropout in C, no power iteration in D's spectral norm
    between the two computations)."""
    from ssgan_fast.models.base import real_loss
    for kw in ({}, {"scheme": "triple", "prompt_d": False, "clusters": False},
               {"scheme": "triple", "prompt_d": False, "d_clusters": True}, {"d_clusters": True}):
        m, loader = _lcpgan(**kw)
        m.eval()
        b = next(loader)
        x = torch.cat([b["x_l"], b["x_u"]])
        with torch.no_grad():
            y = torch.cat([b["y_l"], m.C(b["x_u"]).argmax(1)])
            u = m.memberships(m.features(x), y)
            if kw.get("d_clusters"):
                slots = m.protos.shape[0]
                assert m.Dclass.embed.weight.shape[1] == slots  # one projection row per cluster slot
                u_pad = torch.nn.functional.pad(u, (0, slots - u.shape[1]))
                out = m.Dclass(x, u=u_pad)[0]
            else:
                assert m.Dclass.embed.weight.shape[1] == 10
                out = m.Dclass(x, y)[0]
        losses = m.train_step(b, 0)
        n = b["x_l"].shape[0]
        want = real_loss(out[:n]) if kw.get("scheme") == "triple" else real_loss(out)
        assert torch.allclose(losses["D/class_real"], want, atol=1e-5), kw
        assert ({"D/pseudo_fake", "C/adv"} <= set(losses)) == (kw.get("scheme") == "triple")
    with pytest.raises(ValueError, match="d_clusters"):
        _lcpgan(d_clusters=True, clusters=False)


def test_triple_c_adversarial_sampled_gradient_is_unbiased():
    """The score-function estimate of d/dlogits E_{p_c}[-log D(x, y)] averages to the exact sum's."""
    from ssgan_fast.models.base import triple_c_adversarial
    torch.manual_seed(0)
    d = torch.randn(3, 20)  # D's logits of 3 images x 20 classes

    def d_logits(ys, r):
        rows = torch.arange(3).repeat_interleave(r)
        return d[rows, ys]
    logits = torch.randn(3, 20, requires_grad=True)
    exact, = torch.autograd.grad(triple_c_adversarial(torch.log_softmax(logits, 1), d_logits, True), logits)
    want = torch.softmax(logits, 1) * torch.nn.functional.softplus(-d)
    assert torch.allclose(triple_c_adversarial(torch.log_softmax(logits, 1), d_logits, True), want.sum(1).mean())
    est = torch.zeros_like(logits)
    for _ in range(4000):
        g, = torch.autograd.grad(triple_c_adversarial(torch.log_softmax(logits, 1), d_logits, False), logits)
        est += g / 4000
    assert torch.allclose(est, exact, atol=0.01), (est - exact).abs().max()


def _aam_acgan(**kw):
    ds, sp, info = _data()
    M = get_model("aam-acgan")
    torch.manual_seed(0)
    return M(M.Config(ch=4, z_dim=8, **kw), info), TensorLoader(ds, sp, 4, 4, seed=0)


def _capture_g(monkeypatch, m):
    """Record the (z, y_z) of m's G phase."""
    seen = {}
    real = m._g_phase

    def g_phase(z, y_z, amp, _real=real):
        seen.update(z=z, y_z=y_z.clone())
        return _real(z, y_z, amp)
    monkeypatch.setattr(m, "_g_phase", g_phase)
    return seen


def test_aam_acgan_mode_seeking_pairs_one_class_and_adds_msgan_eq3(monkeypatch):
    """ms_weight > 0 (a remedy for ACGAN's within-class collapse, off in the paper): the pairs (i, i + B//2)
    of G's batch share their class and G's loss gains models.base.mode_seeking; 0 adds nothing."""
    from ssgan_fast.models.base import mode_seeking
    m, loader = _aam_acgan()
    assert "G/mode_seek" not in m.train_step(next(loader), 0)
    m, loader = _aam_acgan(ms_weight=0.3)
    seen = _capture_g(monkeypatch, m)
    b = next(loader)
    torch.manual_seed(5)
    losses = m.train_step(b, 0)
    z, y = seen["z"], seen["y_z"]
    h = y.shape[0] // 2
    assert torch.equal(y[:h], y[h:2 * h]) and "G/mode_seek" in losses
    with torch.no_grad():
        x = m.G(z, y)  # G has taken its step since: recompute with the new weights only for the formula's shape
    want = 0.3 / ((x[:h] - x[h:2 * h]).abs().mean() / (z[:h] - z[h:2 * h]).abs().mean() + 1e-5)
    assert torch.allclose(mode_seeking(x, z, 0.3), want)
    xp = torch.nn.functional.avg_pool2d(x, 2)  # ms_pool 2: the distance on 2 x 2 averages
    want2 = 0.3 / ((xp[:h] - xp[h:2 * h]).abs().mean() / (z[:h] - z[h:2 * h]).abs().mean() + 1e-5)
    assert torch.allclose(mode_seeking(x, z, 0.3, pool=2), want2) and not torch.allclose(want2, want)
    for bad in ({"ms_weight": -1.0}, {"ms_pool": 0}):
        with pytest.raises(ValueError, match="ms_weight"):
            _aam_acgan(**bad)


def test_aam_calibrate_scales_the_class_terms_by_log_c_over_the_chance_loss():
    """model.calibrate (off in the paper: Eq. 8 raw) multiplies D's and G's class terms by
    log C / aam_chance_loss(C, s, m) and leaves the adversarial terms as they are."""
    import math

    from ssgan_fast.ops import aam_chance_loss
    raw, loader = _aam_acgan()
    cal, _ = _aam_acgan(calibrate=True)
    b = next(loader)
    torch.manual_seed(2)
    l0 = raw.train_step(b, 0)
    torch.manual_seed(2)
    l1 = cal.train_step(b, 0)
    k = math.log(10) / aam_chance_loss(10, 30.0, 0.5)
    assert torch.allclose(l1["D/cls_real"], k * l0["D/cls_real"], rtol=1e-5)
    assert torch.equal(l1["D/adv"], l0["D/adv"])
    M = get_model("aam-stargan")
    assert M.Config().calibrate is False and get_model("aam-acgan").Config().calibrate is False


def test_medgan_label_init_makes_d_label_aware_from_the_start():
    """label_init_std > 0: A_label starts at N(0, std^2), so D's logit depends on the class from step 0;
    0 (zeros) is label-blind until A_label has learned (why Triple-GAN's G ignored the class on digits)."""
    for model in ("medgan", "triplegan"):
        ds, sp, info = _data()
        M = get_model(model)
        x = torch.from_numpy(ds.images[:6]).permute(0, 3, 1, 2).float() / 127.5 - 1
        for std in (0.0, 1.0):
            torch.manual_seed(0)
            m = M(M.Config(ch=4, c_ch=4, z_dim=8, label_init_std=std), info).eval()  # eval: SN stops iterating
            msk = m._region(6, "cpu")
            with torch.no_grad():
                a, b = m.D(x, msk, torch.zeros(6, dtype=torch.int64)), m.D(x, msk, torch.full((6,), 3))
            assert torch.equal(a, b) == (std == 0.0), (model, std)
    with pytest.raises(ValueError, match="label_init_std"):
        M(M.Config(ch=4, c_ch=4, z_dim=8, label_init_std=-1.0), info)


def test_medgan_mode_seeking_term():
    m, loader = _medgan(ms_weight=0.2)
    losses = m.train_step(next(loader), 0)
    assert "G/mode_seek" in losses and float(losses["G/mode_seek"]) > 0
    assert "G/mode_seek" not in _medgan()[0].train_step(next(loader), 0)


def test_cvaegan_and_lcpgan_mode_seeking_terms():
    """ms_weight > 0 adds G/mode_seek (pairs of one class among G's prior samples); 0, the paper, adds nothing.
    CVAE-GAN: the prior samples' classes c_p pair up, the encoder's classes c stay the data's."""
    ds, sp, info = _data()
    M = get_model("cvaegan")
    for w in (0.0, 0.2):
        torch.manual_seed(0)
        m = M(M.Config(ch=4, c_ch=4, z_dim=8, ms_weight=w), info)
        loader = TensorLoader(ds, sp, 4, 4, seed=0)
        b = next(loader)
        s = m._draw(b, None)
        h = s.c_p.shape[0] // 2
        assert torch.equal(s.c, b["y_l"]) and (torch.equal(s.c_p[:h], s.c_p[h:2 * h]) if w else s.c_p is s.c)
        assert ("G/mode_seek" in m.train_step(b, 0)) == (w > 0)
    for w in (0.0, 0.2):
        m, loader = _lcpgan(ms_weight=w)
        assert ("G/mode_seek" in m.train_step(next(loader), 0)) == (w > 0)


def test_triplegan_g_is_conditioned_on_the_class():
    """Triple-GAN's G takes the class (conditional BN on its embedding, as the paper's G(z, y); the BN gains start
    at zero, BigGAN's init, so the class acts from the first step on): after two steps one noise and ten
    classes give ten different images; its D, through A_label, scores one image differently per class."""
    ds, sp, info = _data()
    M = get_model("triplegan")
    torch.manual_seed(0)
    m = M(M.Config(ch=4, c_ch=4, z_dim=8), info)
    loader = TensorLoader(ds, sp, 4, 4, seed=0)
    for step in range(2):
        m.train_step(next(loader), step)
    m.eval()
    z = torch.randn(1, 8).expand(10, -1)
    with torch.no_grad():
        x = m.G(z, torch.arange(10))
        d = m.D(x[:1].expand(10, -1, -1, -1), m._region(10, "cpu"), torch.arange(10))
    assert all(not torch.allclose(x[0], x[c]) for c in range(1, 10))
    assert d.unique().numel() == 10

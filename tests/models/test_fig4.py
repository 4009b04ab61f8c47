"""CVAE-GAN Figure 4's baselines as registered models: the traditional GAN, WGAN with clipping and the
mean feature matching GAN, against their formulas; and trained through the CLI on ring2d-cvae."""
import pytest
import torch
import torch.nn.functional as F

from ssgan_fast.models import get_model


def _model(kind, **kw):
    M = get_model(f"cvaegan-fig4-{kind}")
    torch.manual_seed(0)
    return M(M.Config(**kw), {"kind": "points", "num_classes": 1, "channels": 0})


def _batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = 100 + 2 * F.normalize(torch.randn(n, 2, generator=g), dim=1)
    return {"x_l": x[: n // 2], "y_l": torch.zeros(n // 2, dtype=torch.long), "x_u": x[n // 2:]}


def test_gan_losses_are_eq1_and_non_saturating_g():
    m = _model("gan")
    b = _batch()
    x = torch.cat([b["x_l"], b["x_u"]])
    torch.manual_seed(3)
    with torch.no_grad():
        xf = m.G(m.noise(16))
        want_d = F.softplus(-m._d(x)).mean() + F.softplus(m._d(xf)).mean()
    torch.manual_seed(3)
    losses = m.train_step(b, 0)
    assert torch.allclose(losses["D/loss"], want_d) and set(losses) == {"D/loss", "G/loss"}


def test_wgan_clips_the_critic_and_steps_g_every_fifth():
    m = _model("wgan")
    assert m.cfg.n_critic == 5 and m.cfg.clip == 0.01
    g0 = [p.detach().clone() for p in m.G.parameters()]
    for step in range(4):
        assert set(m.train_step(_batch(seed=step), step)) == {"D/loss"}
    assert all(torch.equal(a, p) for a, p in zip(g0, m.G.parameters(), strict=True))
    assert all(p.abs().max() <= 0.01 for p in m._opts["D"].param_groups[0]["params"])
    assert set(m.train_step(_batch(seed=4), 4)) == {"D/loss", "G/loss"}
    assert not all(torch.equal(a, p) for a, p in zip(g0, m.G.parameters(), strict=True))


def test_fm_matches_moving_average_centres():
    m = _model("fm")
    m.train_step(_batch(), 0)  # first G step: the centres are the batch means
    c0 = m.centres.clone()
    assert bool(m.seen) and c0.abs().sum() > 0
    # the second step by hand on a copy: c = 0.9 c_prev + 0.1 batch mean, D stepped first
    import copy
    m2 = copy.deepcopy(m)
    b2 = _batch(seed=2)
    x2 = torch.cat([b2["x_l"], b2["x_u"]])
    torch.manual_seed(7)
    losses = m.train_step(b2, 1)
    torch.manual_seed(7)
    from ssgan_fast.models.base import FP32
    m2._d_phase(x2, FP32)
    with torch.no_grad():
        xf = m2.G(m2.noise(16))
        cr = 0.9 * c0[0] + 0.1 * m2.D_body(x2).mean(0)
        cf = 0.9 * c0[1] + 0.1 * m2.D_body(xf).mean(0)
    assert torch.allclose(losses["G/loss"], 0.5 * (cr - cf).pow(2).sum(), rtol=1e-5, atol=1e-7)
    assert torch.allclose(m.centres[0], cr, rtol=1e-5, atol=1e-6)


def test_images_are_rejected():
    M = get_model("cvaegan-fig4-gan")
    with pytest.raises(ValueError, match="2-D points"):
        M(M.Config(), {"kind": "image", "num_classes": 10, "channels": 1, "size": 8})

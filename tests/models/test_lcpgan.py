"""LCP-GAN specifics: intra-class clustering (k-means + merge), Eq. 2-4 and 6-7 against direct formulas,
the CoOp prompt path through CLIP, the ablation switches and the checkpoint contents."""
import pytest
import torch
import torch.nn.functional as F

from ssgan_fast.data import TensorLoader, images_to_tensor, make_split, open_dataset
from ssgan_fast.models import get_model
from ssgan_fast.nn.clip import FrozenCLIP
from ssgan_fast.ops import reference
from ssgan_fast.weights import WeightsError

SMALL = dict(ch=4, c_ch=4, z_dim=8, clip_arch="tiny", feat_net="thumbnail", feat_center=True, head_dim=16, w_dim=16,
             map_layers=2)


def _model(fit=True, nc=10, **kw):
    M = get_model("lcpgan")
    torch.manual_seed(0)
    m = M(M.Config(**{**SMALL, **kw}), {"kind": "image", "size": 8, "channels": 1, "num_classes": nc,
                                         "class_names": [f"c{i}" for i in range(nc)]})
    ds = open_dataset("digits", size=8)
    split = make_split(ds.labels, 10, label_fraction=0.1)
    if fit:
        m.fit_clusters(images_to_tensor(ds.images[split.labeled]), torch.as_tensor(ds.labels[split.labeled]))
    return m, ds, split


def _patterns(n, which, noise, g):
    """[n, 1, 8, 8] images: +1 on the pixels of `which` (a bool mask), -1 elsewhere, plus noise."""
    x = torch.where(which, 1.0, -1.0).expand(n, 1, 8, 8).clone()
    return x + noise * torch.randn(x.shape, generator=g)


def test_fit_clusters_splits_and_merges():
    m, _, _ = _model(fit=False, nc=2, feat_center=False)
    g = torch.Generator().manual_seed(0)
    col = torch.arange(8)[None, :].expand(8, 8)
    left, right, top = col < 4, col >= 4, torch.arange(8)[:, None].expand(8, 8) < 4
    # class 0: two well separated appearances -> 2 clusters; class 1: one appearance -> the 3 k-means
    # clusters are near-duplicates (cosine > 0.8) and merge into 1
    x0 = torch.cat([_patterns(12, left, 0.05, g), _patterns(12, right, 0.05, g)])
    x1 = _patterns(24, top, 0.05, g)
    m.fit_clusters(torch.cat([x0, x1]), torch.tensor([0] * 24 + [1] * 24))
    assert m.counts.tolist() == [2, 1]
    off, K = m.layout()
    assert off.tolist() == [0, 2, 3] and K == 3 and m.cluster_class().tolist() == [0, 0, 1]
    want = F.normalize(torch.stack([torch.where(left, 1.0, -1.0).flatten(), torch.where(right, 1.0, -1.0).flatten()]),
                       dim=1)
    P = m.protos[:2]
    cos = P @ want.T
    assert float(cos.max(1).values.min()) > 0.99  # each prototype sits on one appearance
    with pytest.raises(ValueError, match="without labeled images"):
        m.fit_clusters(x0, torch.zeros(24, dtype=torch.int64))


def test_merge_respects_threshold():
    from ssgan_fast.models.lcpgan import _merge
    P = F.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    Q, mass = _merge(P, torch.tensor([1.0, 3.0, 1.0]), 0.8)
    assert Q.shape == (2, 2) and float(mass.sum()) == 5.0
    assert torch.allclose(Q[0], F.normalize(P[0] + 3 * P[1], dim=0))
    assert _merge(P, torch.ones(3), 0.999)[0].shape == (3, 2)


def test_unfitted_model_says_so():
    m, ds, split = _model(fit=False)
    with pytest.raises(RuntimeError, match="clusters .* are not fitted"):
        m.train_step(next(TensorLoader(ds, split, 4, 4, seed=0)), 0)


def test_memberships_blend_and_generator_condition():
    m, ds, _ = _model()
    off, K = m.layout()
    x = images_to_tensor(ds.images[:16])
    y = torch.as_tensor(ds.labels[:16])
    f = m.features(x).double()
    u = m.memberships(f.float(), y)
    want = reference.cosine_softmax(f, m.protos[:K].double(), m.cfg.delta, (y, off))  # Eq. 3
    assert torch.allclose(u.double(), want, atol=1e-5)
    e = m.noise(2000)[:, m.cfg.z_dim:]
    yb = torch.randint(0, 10, (2000,))
    ub = m.blend(e, yb)
    k = torch.arange(K)
    own = (k[None] >= off[yb][:, None]) & (k[None] < off[yb + 1][:, None])
    assert torch.allclose(ub.sum(1), torch.ones(2000)) and bool((ub[~own] == 0).all()) and bool((ub >= 0).all())
    c = int(torch.argmax(m.counts))  # a class with the most clusters: flat Dirichlet -> mean 1 / k
    rows = ub[yb == c][:, off[c]:off[c + 1]]
    assert torch.allclose(rows.mean(0), torch.full((rows.shape[1],), 1 / rows.shape[1]), atol=0.06)
    # Eq. 4: G gets sum_i u_i E(c_{y,i}); a one-hot u is that cluster's embedding row
    m.eval()
    z = torch.randn(1, m.cfg.z_dim)
    i = int(off[c])
    uh = torch.zeros(1, K)
    uh[0, i] = 1
    noise = torch.cat([z, torch.ones(1, m.protos.shape[0])], 1)
    a = m._g(noise, torch.tensor([c]), u=uh)[0]
    b = m.G(z, emb=m.G.embed.weight[i:i + 1])
    assert torch.allclose(a, b, atol=1e-6)
    path = m.interpolate(z[0], c, 0, int(m.counts[c]) - 1, steps=3)
    assert path.shape == (3, 1, 8, 8) and torch.allclose(path[0:1], a, atol=1e-5)


def test_dprompt_formula_and_prototype_update():
    m, ds, split = _model()
    off, K = m.layout()
    txt = m._text_feats(False)
    img = m.clip.encode_image(images_to_tensor(ds.images[:5]))
    u = torch.softmax(torch.randn(5, K), 1)
    D = m.Dprompt
    w = (u[:, :, None] * D.h_txt(txt)[None]).sum(1)  # Eq. 6
    want = ((w + D.w_unc) * D.h_img(img)).sum(1)  # Eq. 7
    assert torch.allclose(D(img, txt, u), want, atol=1e-5)
    # Eq. 2 after a step on labeled data only (no pseudo labels): the prototypes moved to
    # (1 - mu) P + mu * sum_n u_n f_n / sum_n u_n with the step's memberships
    loader = TensorLoader(ds, split, 8, 0, seed=0)
    batch = next(loader)
    P0 = m.protos[:K].clone().double()
    f = m.features(batch["x_l"]).double()
    uu = reference.cosine_softmax(f, P0, m.cfg.delta, (batch["y_l"], off))
    m.train_step(batch, 0)
    mu = m.cfg.proto_momentum
    mass = uu.sum(0)
    want = torch.where(mass[:, None] > 0, (1 - mu) * P0 + mu * (uu.T @ f) / mass.clamp_min(1e-30)[:, None], P0)
    assert torch.allclose(m.protos[:K].double(), want, atol=1e-5)


def test_prompts_learn_unless_frozen():
    for learn in (True, False):
        m, ds, split = _model(learn_prompts=learn)
        ctx0, h0 = m.Dprompt.ctx.detach().clone(), m.Dprompt.h_txt.net[0].weight.detach().clone()
        m.train_step(next(TensorLoader(ds, split, 4, 4, seed=0)), 0)
        assert torch.equal(ctx0, m.Dprompt.ctx) != learn  # "w/o LP": context vectors stay at their init
        assert not torch.equal(h0, m.Dprompt.h_txt.net[0].weight)
    assert abs(float(ctx0.std()) - 0.02) < 0.005  # N(0, 0.02) init


def test_clusters_off_is_one_per_class_and_no_clip_without_prompts():
    m, _, _ = _model(clusters=False, prompt_d=False)
    assert m.counts.tolist() == [1] * 10 and m.protos.shape[0] == 10
    assert not hasattr(m, "clip") and not hasattr(m, "Dprompt")


def test_checkpoint_leaves_out_frozen_networks_and_reloads():
    m, ds, split = _model()
    sd = m.state_dict()
    assert not any(k.startswith(("fnet.", "clip.")) for k in sd) and "protos" in sd and "counts" in sd
    m2, _, _ = _model(fit=False)
    m2.load_state_dict(sd)
    assert m2.counts.tolist() == m.counts.tolist() and m2.layout()[1] == m.layout()[1]
    z = m.noise(3)
    torch.manual_seed(1)
    a = m.sample(torch.arange(3), z)
    torch.manual_seed(1)
    assert torch.equal(a, m2.sample(torch.arange(3), z))


def test_stylegan2_base_and_ada():
    m, ds, split = _model(base="stylegan2", ada=True)
    m.ada.p.fill_(1.0)
    x = images_to_tensor(ds.images[:4])
    xa = m.ada(x.requires_grad_())
    xa.sum().backward()  # differentiable
    assert xa.shape == x.shape and x.grad is not None
    m.ada.update(torch.full((16,), -1.0))  # D says "fake" to reals -> less augmentation
    assert float(m.ada.p) < 1.0
    losses = m.train_step(next(TensorLoader(ds, split, 4, 4, seed=0)), 0)
    assert all(torch.isfinite(v) for v in losses.values())


def test_style_discriminator_formulas():
    """StyleGAN2-ADA D: minibatch-std channel, cmap projection logit, unconditional head."""
    from ssgan_fast.models.stylegan2 import StyleDiscriminator, _pixel_norm, minibatch_std
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4, 4)
    got = minibatch_std(x, 4)  # 6 rows: groups of 3 (the largest size <= 4 dividing 6)
    y = x.reshape(3, 2, 3, 4, 4)
    want = y.var(0, unbiased=False).add(1e-8).sqrt().mean((1, 2, 3))  # rows i, i + 2, i + 4 form a group
    assert got.shape == (6, 4, 4, 4)
    torch.testing.assert_close(got[:, 3, 0, 0], want.repeat(3))
    D = StyleDiscriminator(5, 16, 4, 3, map_layers=2)
    imgs, lab = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 4, 3])
    out, h = D(imgs, lab)
    cmap = D.mapping(_pixel_norm(D.embed(F.one_hot(lab, 5).float())))
    torch.testing.assert_close(out, (D.out(h) * cmap).sum(1) / D.cmap_dim ** 0.5)
    assert out.shape == (4,) and h.shape == (4, D.feat_dim)
    with pytest.raises(ValueError, match="needs the labels"):
        D(imgs)
    assert StyleDiscriminator(0, 8, 4, 1)(torch.randn(2, 1, 8, 8))[0].shape == (2,)


def test_stylegan2_base_uses_style_d_and_lazy_r1():
    from ssgan_fast.engine.amp import Amp
    from ssgan_fast.models.stylegan2 import StyleDiscriminator
    m, ds, split = _model(base="stylegan2", r1_every=3, r1_gamma=0.5)
    assert isinstance(m.Dclass, StyleDiscriminator)
    loader = TensorLoader(ds, split, 4, 4, seed=0)
    has = [("D/r1" in m.train_step(next(loader), s)) for s in range(4)]
    assert has == [True, False, False, True]
    assert [m.graph_key(s) for s in range(4)] == [(True, False), (False, False), (False, False), (True, False)]
    x = images_to_tensor(ds.images[:4]).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3])
    out = m.Dclass(x, y)[0]
    g, = torch.autograd.grad(out.sum(), x)
    want = 0.5 / 2 * g.pow(2).sum((1, 2, 3)).mean() * 3
    torch.testing.assert_close(m._r1(x.detach(), y, None, Amp(None, "cpu")), want)
    assert not _model(base="stylegan2", r1_gamma=0.0)[0].r1 and not _model()[0].r1  # off; biggan: off by default
    with pytest.raises(ValueError, match="r1_every"):
        _model(base="stylegan2", r1_every=0)


def _upfirdn2d(x, f, up=1, down=1, pad=(0, 0)):
    """StyleGAN2's upfirdn2d by its definition, in loops: zero insertion, zero padding, 2-D convolution
    with f, every down-th pixel."""
    B, C, H, W = x.shape
    u = torch.zeros(B, C, H * up, W * up, dtype=x.dtype)
    u[:, :, ::up, ::up] = x
    u = F.pad(u, (pad[0], pad[1], pad[0], pad[1]))
    k = f.shape[0]
    out = torch.zeros(B, C, u.shape[2] - k + 1, u.shape[3] - k + 1, dtype=x.dtype)
    ff = f.flip(0, 1)  # convolution, not correlation
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = (u[:, :, i:i + k, j:j + k] * ff).sum((2, 3))
    return out[:, :, ::down, ::down]


def test_fir_resampling_is_upfirdn2d():
    from ssgan_fast.models.stylegan2 import downsample2d, fir_filter, upsample2d
    f = fir_filter().double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    up = upsample2d(x, f)
    assert up.shape == (2, 3, 10, 12)
    torch.testing.assert_close(up, _upfirdn2d(x, f[0, 0] * 4, up=2, pad=(2, 1)))
    x = torch.randn(2, 3, 8, 10, generator=g, dtype=torch.float64)
    down = downsample2d(x, f)
    assert down.shape == (2, 3, 4, 5)
    torch.testing.assert_close(down, _upfirdn2d(x, f[0, 0], down=2, pad=(1, 1)))
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)  # a low-pass filter keeps a constant (inside the border)
    torch.testing.assert_close(upsample2d(ones, f)[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12, dtype=torch.float64))
    torch.testing.assert_close(downsample2d(ones, f)[..., 1:-1, 1:-1], torch.ones(1, 1, 2, 2, dtype=torch.float64))


def test_style_mixing_switches_ws_once_per_row():
    from ssgan_fast.models.stylegan2 import StyleGenerator
    torch.manual_seed(0)
    G = StyleGenerator(8, 5, 16, 4, 3, emb_dim=8, w_dim=16, map_layers=2)
    assert G.num_ws == 2 * 2 + 2
    z, y = torch.randn(64, 8), torch.randint(0, 5, (64,))
    ws = G.mapping_ws(z, y)
    assert ws.shape == (64, G.num_ws, 16) and bool((ws == ws[:, :1]).all())
    torch.manual_seed(1)
    img = G(z, y)
    torch.manual_seed(1)
    torch.testing.assert_close(img, G.synthesis(ws))  # forward = synthesis o mapping
    mixed = G.mapping_ws(z, y, mix=1.0)
    cuts = []
    for r in range(64):
        same = (mixed[r] == ws[r]).all(1)  # layers that kept w(z, c)
        k = int(same.sum())
        assert 1 <= k < G.num_ws and bool(same[:k].all())  # a prefix, then the second latent's w
        assert bool((mixed[r, k:] == mixed[r, k]).all())
        cuts.append(k)
    assert len(set(cuts)) > 1  # the cut-off is drawn per row
    half = G.mapping_ws(z, y, mix=0.5)
    kept = (half == ws).all(2).all(1).float().mean()
    assert 0.3 < float(kept) < 0.7


def test_path_length_penalty_against_jacobian():
    from ssgan_fast.engine.amp import Amp
    from ssgan_fast.models.stylegan2 import path_lengths
    m, ds, split = _model(base="stylegan2", pl_weight=0.5, pl_every=2, style_mix=0.0)
    G = m.G.double()
    ws = G.mapping_ws(torch.randn(3, 8, dtype=torch.float64), torch.tensor([0, 4, 7])).detach().clone()
    ws += 0.1 * torch.randn_like(ws)  # different ws per layer
    n = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(G.synthesis, ws)  # [3, 1, 8, 8, 3, num_ws, w]
    want = torch.stack([torch.einsum("chw,chwlk->lk", n[b], J[b, :, :, :, b]).pow(2).sum(1).mean().sqrt()
                        for b in range(3)])
    torch.testing.assert_close(path_lengths(G, ws.requires_grad_(True), n).double(), want.float().double())
    m, ds, split = _model(base="stylegan2", pl_weight=0.5, pl_every=2)
    assert m.style_mix == 0.0  # 8 px: ADA's small-image default
    loader = TensorLoader(ds, split, 4, 4, seed=0)
    has = [("G/pl" in m.train_step(next(loader), s)) for s in range(4)]
    assert has == [True, False, True, False] and float(m.pl_mean) > 0
    assert [m.graph_key(s)[1] for s in range(4)] == [True, False, True, False]
    before = float(m.pl_mean)
    pen = m._pl(m.noise(8), torch.randint(0, 10, (8,)), Amp(None, "cpu"))
    assert pen.requires_grad and float(pen.detach()) >= 0
    assert float(m.pl_mean) != before  # the moving average moved
    d = _model(base="stylegan2")[0]
    assert d.pl_weight == 0 and d.style_mix == 0  # below 64 px both default to off
    assert not hasattr(_model()[0], "pl_mean")  # biggan: no path-length state
    with pytest.raises(ValueError, match="style_mix"):
        _model(base="stylegan2", style_mix=1.5)
    with pytest.raises(ValueError, match="pl_every"):
        _model(base="stylegan2", pl_every=0)


def test_clip_prompt_path_equals_text_encoder():
    open_clip = pytest.importorskip("open_clip")
    c = FrozenCLIP("tiny")
    ids = c.prompt_ids(["red bird", "gull"], 4)
    full = open_clip.get_tokenizer("ViT-B-32")(["X X X X red bird.", "X X X X gull."])
    ctx = c.model.token_embedding(ids)[:, 1:5]  # the placeholders' own embeddings
    assert torch.allclose(c.encode_prompts(ctx, ids), c.model.encode_text(full), atol=1e-5)
    assert not any(p.requires_grad for p in c.parameters())


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="ViT-B-32.pt"):
        FrozenCLIP("ViT-B-32", weights="clip-vit-b32-openai")
    with pytest.raises(WeightsError, match="resnet50-0676ba61.pth"):
        _model(fit=False, feat_net="resnet50", feat_weights="resnet50-imagenet")
    with pytest.raises(ValueError, match="unknown CLIP architecture"):
        FrozenCLIP("ViT-Q-99")


def test_resnet50_classifier_option(tmp_path, monkeypatch):
    m, ds, split = _model(c_net="resnet50", prompt_d=False)
    assert m.C.net.fc.out_features == 10
    before = m.C.net.fc.weight.detach().clone()
    losses = m.train_step(next(TensorLoader(ds, split, 4, 4, seed=0)), 0)
    assert all(torch.isfinite(v) for v in losses.values()) and not torch.equal(before, m.C.net.fc.weight)
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path))
    with pytest.raises(WeightsError, match="resnet50-0676ba61.pth"):
        _model(fit=False, c_net="resnet50", c_weights="resnet50-imagenet")
    with pytest.raises(ValueError, match="c_net"):
        _model(fit=False, c_net="vgg")


@pytest.mark.parametrize("images", ["all", "labeled"])
def test_prepare_clusters_the_images_of_eq1(images):
    """cluster_images all: C is warmed up on the labeled images, then every image is clustered in its
    Eq. 1 class - ground truth if labeled, one-hot(C(x)) otherwise; labeled: the labeled images only.
    Checked against fit_features on the features and labels built by hand."""
    from ssgan_fast.data import PrepData
    m, ds, split = _model(fit=False, cluster_images=images, c_warmup=100, c_ch=8, c_lr=2e-3)
    c0 = {k: v.clone() for k, v in m.C.state_dict().items()}
    data = PrepData(ds, split, batch=64)
    m.prepare(data, seed=0)
    info = m.preparation_info()["clusters"]
    assert info["labeled"] == len(split.labeled)
    lab = list(data.batches("labeled"))  # the same seeded order as prepare's (k-means depends on it)
    feats, labels = [m.fnet(x).float() for x, _ in lab], [y for _, y in lab]
    changed = any(not torch.equal(c0[k], v) for k, v in m.C.state_dict().items())
    if images == "all":
        assert info["unlabeled"] == len(split.unlabeled) and changed and info["c_warmup_accuracy"] > 50
        m.C.eval()
        with torch.no_grad():
            for x, y in data.batches("unlabeled"):
                assert bool((y == -1).all())
                feats.append(m.fnet(x).float())
                labels.append(m.C(x).argmax(1))  # Eq. 1
        m.C.train()
        assert len(set(torch.cat(labels[len(lab):]).tolist())) > 1  # C labels them into several classes
    else:
        assert info["unlabeled"] == 0 and not changed
    got = m.protos.clone(), m.counts.clone()
    m.fit_features(torch.cat(feats), torch.cat(labels), 0)
    assert torch.equal(got[1], m.counts) and torch.allclose(got[0], m.protos, atol=1e-5)

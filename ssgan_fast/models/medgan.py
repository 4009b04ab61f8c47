"""MED-GAN ("Mask-Embedded Discriminator with Region-based Semantic Regularization for Semi-Supervised
Class-Conditional Image Synthesis", Liu et al.) and its Triple-GAN-style baseline (`triplegan`).

Networks: G (BigGAN-style ResNet generator; an MLP for 2-D data), D with the mask embedding A_mask
after its first stage (Eq. 2, `MaskEmbedding` = small conv net + the fused `mask_embed` op) and the
label embedding A_label at its last layer (Eq. 3: D_g + A_label(y) * D_g, then a linear decision),
classifier C. Masks: `sample_region_boxes` (the prior q_m of Eq. 6: 75-100 % area, aspect 3/4-4/3)
for plain images, `sample_cutmix_boxes` (lambda ~ Beta(0.2, 0.2)) + the fused `cutmix` for the
constructed images x_hat = T(x, x_z, m) (Eq. 1).

More: docs/modules.md, section ssgan_fast.models.medgan.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import MLP, DBlock, ResNetClassifier, ResNetGenerator, SNLinear, blocks_for
from ..nn.mask import MaskEmbedding
from ..ops import box_mask, cutmix, sample_cutmix_boxes, sample_region_boxes
from .base import (
    FP32,
    GANModel,
    fake_loss,
    mode_seeking,
    rand_perm,
    real_loss,
    register,
    share_pair_classes,
    triple_c_adversarial,
)


@dataclass
class MEDGANConfig:
    z_dim: int = 64
    ch: int = 32
    c_ch: int = 32
    hidden: int = 128  # MLP width for 2-D data
    point_sn: bool = False  # spectral norm in the 2-D D (off: the paper's plain MLPs, Sec. 5.2)
    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    alpha: float = 0.2  # Beta(alpha, alpha) of the CutMix boxes (Sec. 5.1)
    gamma: float = 0.5  # Eq. 5 margin
    mu: float = 0.1  # Eq. 12 weight of L_idnt
    mu_c: float = 1.0  # weight of the synthesized pairs in C's loss (baseline C)
    eps: float = 0.1  # Eq. 4: the two masks' boxes differ by at most eps * side
    mask_embedding: bool = True
    region_reg: bool = True
    recg: bool = True
    idnt: bool = True
    mixed_c: bool = True
    # Eq. 4 / 5 distances between D_f features: sum = the squared L2 norm the paper writes; mean = the
    # per-element mean of the squares (the project's earlier choice: the margin gamma then is per element)
    region_dist: str = "sum"
    c_labeled: bool = False  # C also takes a plain cross-entropy on the labeled batch (not in Eq. 10)
    # A_label's initial weights ~ N(0, std^2), nn.Embedding's own init at 1 (the paper states none). 0: zeros,
    # the project's earlier choice - D then starts label-blind and, on digits, stayed so: Triple-GAN's G
    # ignored the class (9 % recognised) and MED-GAN's mixed classes
    label_init_std: float = 1.0
    # MSGAN mode seeking (models.base.mode_seeking) on pairs of G's batch with one class, against
    # within-class collapse; not in the paper (0 = off)
    ms_weight: float = 0.0


def _init_label(emb: nn.Embedding, std: float) -> None:
    if std < 0:
        raise ValueError(f"label_init_std must be >= 0, got {std}")
    nn.init.normal_(emb.weight, 0.0, std) if std > 0 else nn.init.zeros_(emb.weight)


class _ImageD(nn.Module):
    """D_f = first stage (+ A_mask), D_g = remaining stages -> sum pooling; A_label on D_g (Eq. 3)."""

    def __init__(self, cfg, nc, size, channels):
        super().__init__()
        n = blocks_for(size)
        w = [cfg.ch * m for m in (1, 2, 4, 8, 8, 16)[:n + 1]]
        self.first = DBlock(channels, w[0], down=True, preact=False)
        self.mask = MaskEmbedding(w[0]) if cfg.mask_embedding else None
        rest, cin = [], w[0]
        for i in range(1, n):
            rest.append(DBlock(cin, w[i], down=True))
            cin = w[i]
        rest.append(DBlock(cin, w[n], down=False))
        self.rest = nn.Sequential(*rest)
        self.label = nn.Embedding(nc, w[n])  # A_label
        _init_label(self.label, cfg.label_init_std)
        self.lin = SNLinear(w[n], 1)

    def f(self, x, m):
        """D^_f(x, m): the mask-embedded first-stage features (Eq. 2)."""
        h = self.first(x)
        return self.mask(h, m) if self.mask is not None else h

    def forward(self, x, m, y, feats=False):
        hf = self.f(x, m)
        g = F.relu(self.rest(hf)).sum((2, 3))
        out = self.lin(g * (1 + self.label(y))).squeeze(1)  # Eq. 3
        return (out, hf) if feats else out


class _PointD(nn.Module):
    def __init__(self, cfg, nc):
        super().__init__()
        self.body = MLP(2, cfg.hidden, hidden=(cfg.hidden,), sn=cfg.point_sn)
        self.label = nn.Embedding(nc, cfg.hidden)
        _init_label(self.label, cfg.label_init_std)
        self.lin = SNLinear(cfg.hidden, 1, sn=cfg.point_sn)

    def f(self, x, m=None):
        return F.leaky_relu(self.body(x), 0.2)

    def forward(self, x, m, y, feats=False):
        h = self.f(x)
        out = self.lin(h * (1 + self.label(y))).squeeze(1)
        return (out, h) if feats else out


class _PointG(nn.Module):
    def __init__(self, cfg, nc):
        super().__init__()
        self.embed = nn.Embedding(nc, 16)
        self.net = MLP(cfg.z_dim + 16, 2, hidden=(cfg.hidden, cfg.hidden))

    def forward(self, z, y):
        return self.net(torch.cat([z, self.embed(y)], 1))


def _sqdist(a, b, how="sum"):
    """||a - b||^2 per row (Eq. 4 / 5), or its mean over the elements (region_dist = mean)."""
    d = (a.float() - b.float()).pow(2).flatten(1)
    return d.sum(1) if how == "sum" else d.mean(1)


def _mixed_ce(logits, area, y_in, y_out):
    """Eq. 9: cross-entropy against the labels mixed by the box's area fraction."""
    lp = F.log_softmax(logits.float(), 1)
    return -(area * lp.gather(1, y_in[:, None])[:, 0] + (1 - area) * lp.gather(1, y_out[:, None])[:, 0]).mean()


class _Points:
    """2-D data (Sec. 5.2): MLP G / D / C, no masks; L_ctrs pairs points by (pseudo) label."""

    def networks(self, cfg, nc, info):
        return _PointG(cfg, nc), _PointD(cfg, nc), MLP(2, nc, hidden=(cfg.hidden, cfg.hidden))

    def region(self, n, dev):
        return None

    def d_regularisers(self, m, s):
        """L_ctrs (Eq. 5): anchor a real point, positive a real point of the same class, negative a
        synthesized one."""
        if not m.cfg.region_reg:
            return {}
        xr, yr = torch.cat([s.x_l, s.x_u]), torch.cat([s.y_l, s.y_u])
        perm = rand_perm(xr.shape[0], s.dev)
        same = (yr[perm][None, :] == yr[:, None]).float()
        pos = xr[perm][(same + 1e-3 * torch.rand_like(same)).argmax(1)]
        neg = s.x_z[torch.arange(xr.shape[0], device=s.dev) % s.x_z.shape[0]]
        fa, fp, fn = m.D.f(xr), m.D.f(pos), m.D.f(neg)
        how = m.cfg.region_dist
        return {"D/ctrs": F.relu(_sqdist(fa, fp, how) - _sqdist(fa, fn, how) + m.cfg.gamma).mean()}

    def mixed_c_losses(self, m, s):
        return None  # no constructed instances: C takes G's pairs (C/fake)


class _Images:
    """Images: region masks (the prior q_m of Eq. 6), CutMix boxes and the constructed x_hat (Eq. 1)."""

    def __init__(self, size, alpha, eps):
        self.size, self.alpha, self.eps = size, alpha, eps

    def networks(self, cfg, nc, info):
        return (ResNetGenerator(cfg.z_dim, nc, self.size, cfg.ch, info["channels"]),
                _ImageD(cfg, nc, self.size, info["channels"]),
                ResNetClassifier(nc, self.size, cfg.c_ch, info["channels"]))

    def region(self, n, dev):
        boxes, _ = sample_region_boxes(n, self.size, self.size, device=dev)
        return box_mask(boxes, self.size, self.size)

    def cut(self, n, dev):
        return sample_cutmix_boxes(n, self.size, self.size, self.alpha, device=dev)

    def jitter(self, boxes):
        """Boxes moved by at most eps * side (the m_lambda' of Eq. 4), kept inside the image."""
        e = max(1, int(round(self.eps * self.size)))
        b = boxes.long()
        shift = torch.randint(-e, e + 1, (b.shape[0], 2), device=b.device)
        h, w = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        y0 = torch.minimum((b[:, 0] + shift[:, 0]).clamp(min=0), self.size - h)
        x0 = torch.minimum((b[:, 1] + shift[:, 1]).clamp(min=0), self.size - w)
        return torch.stack([y0, x0, y0 + h, x0 + w], 1).to(torch.int32)

    def d_regularisers(self, m, s):
        """L_idnt (Eq. 11), L_cons (Eq. 4) and L_ctrs (Eq. 5) on the constructed x_hat = T(x, x_z, m)."""
        cfg, out = m.cfg, {}
        if not (cfg.idnt or cfg.region_reg):
            return out
        boxes, _ = self.cut(s.B, s.dev)
        xz = s.x_z[:s.B]
        xh, mh = cutmix(s.x_l, xz, boxes)  # Eq. 1: x inside the box, x_z outside
        out_h, fh = m.D(xh, mh, s.y_l, feats=True)
        if cfg.idnt:
            out["D/idnt"] = cfg.mu * real_loss(out_h)  # Eq. 11: the constructed image counts as real
        if cfg.region_reg:
            xh2, mh2 = cutmix(s.x_l, xz, self.jitter(boxes))
            how = cfg.region_dist
            out["D/cons"] = _sqdist(fh, m.D.f(xh2, mh2), how).mean()  # Eq. 4
            fa, fn = m.D.f(s.x_l, mh), m.D.f(xz, mh)
            out["D/ctrs"] = F.relu(_sqdist(fa, fh, how) - _sqdist(fa, fn, how) + cfg.gamma).mean()  # Eq. 5
        return out

    def mixed_c_losses(self, m, s):
        """Eq. 9-10: C on T(x, x_z, m) and T(x, x_u, m) with the labels mixed by the area fractions."""
        boxes, area = self.cut(s.B, s.dev)
        out = {"C/mixed_z": _mixed_ce(m.C(cutmix(s.x_l, s.x_z[:s.B], boxes)[0]), area, s.y_l, s.y_z[:s.B])}
        if s.x_u.shape[0] >= s.B:
            boxes, area = self.cut(s.B, s.dev)
            out["C/mixed_u"] = _mixed_ce(m.C(cutmix(s.x_l, s.x_u[:s.B], boxes)[0]), area, s.y_l, s.y_u[:s.B])
        return out


@register("medgan")
class MEDGAN(GANModel):
    """One iteration (Sec. 4): D (Eq. 12 + the region regularisers), C (Eq. 9-10), G (Eq. 6-8)."""
    Config = MEDGANConfig

    def __init__(self, cfg: MEDGANConfig, info: dict):
        super().__init__(cfg, info)
        nc = self.nc = info["num_classes"]
        self.points = info["kind"] == "points"
        if not cfg.ms_weight >= 0:
            raise ValueError(f"ms_weight must be >= 0, got {cfg.ms_weight}")
        if cfg.region_dist not in ("sum", "mean"):
            raise ValueError(f"region_dist must be 'sum' or 'mean', got {cfg.region_dist!r}")
        self.data = _Points() if self.points else _Images(info["size"], cfg.alpha, cfg.eps)
        self.G, self.D, self.C = self.data.networks(cfg, nc, info)
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self._opts = {k: torch.optim.Adam(getattr(self, k).parameters(), **adam) for k in ("D", "C", "G")}

    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G"]

    def noise(self, n, generator=None, device=None):
        dev = device or next(self.G.parameters()).device
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=dev)

    def truncate(self, noise, psi):
        """psi z: the noise towards the mean latent 0 of N(0, I) (the truncation trick on z)."""
        return noise * psi

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        return (modules or {"G": self.G})["G"](noise, labels)

    def _region(self, n, dev):
        return self.data.region(n, dev)

    # ------------------------------------------------------------------ training
    def train_step(self, batch, step, amp=None):
        amp = amp or FP32
        s = self._draw(batch, amp)
        losses = self._update(amp, "D", self._d_phase, s)
        losses.update(self._update(amp, "C", self._c_phase, s))
        losses.update(self._update(amp, "G", self._g_phase, s))
        return losses

    def _update(self, amp, name, phase, s):
        """One player's step: its losses under autocast, their sum back-propagated into its parameters."""
        with amp.ctx():
            terms = phase(s)
            loss = sum(terms.values())
        self._optimize(amp, loss, name)
        return {k: v.detach() for k, v in terms.items()}

    def _draw(self, batch, amp):
        """The iteration's noise and labels y_z, C's pseudo-labels of x_u and the synthesized x_z."""
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        if x_l.shape[0] == 0:
            raise ValueError("medgan needs labeled images in every batch (batch_labeled > 0)")
        dev = next(self.G.parameters()).device
        B = x_l.shape[0]
        bz = max(B, x_u.shape[0])
        z = self.noise(bz)
        y_z = torch.randint(0, self.nc, (bz,), device=dev)
        if self.cfg.ms_weight:
            share_pair_classes(y_z)
        with torch.no_grad(), amp.ctx():
            logit_u = self.C(x_u).float() if x_u.shape[0] else None
            y_u = logit_u.argmax(1) if x_u.shape[0] else y_l[:0]
            x_z = self.G(z, y_z).to(x_l.dtype)  # autocast may hand back bf16; cutmix mixes same-dtype images
        return SimpleNamespace(x_l=x_l, y_l=y_l, x_u=x_u, B=B, bz=bz, z=z, y_z=y_z, logit_u=logit_u, y_u=y_u,
                               x_z=x_z, dev=dev)

    def _d_phase(self, s):
        """Eq. 12: real labeled and pseudo-labeled pairs real, (x_z, y_z) fake; + the regularisers."""
        m_l, m_z = self._region(s.B, s.dev), self._region(s.bz, s.dev)
        ld = self._d_pairs(s, m_l, m_z)
        ld.update(self.data.d_regularisers(self, s))
        return ld

    def _d_pairs(self, s, m_l, m_z):
        ld = {"D/real": real_loss(self.D(s.x_l, m_l, s.y_l)), "D/fake": fake_loss(self.D(s.x_z, m_z, s.y_z))}
        if s.x_u.shape[0]:
            ld["D/unlabeled"] = real_loss(self.D(s.x_u, self._region(s.x_u.shape[0], s.dev), s.y_u))
        return ld

    def _c_phase(self, s):
        """Eq. 9-10 (mixed_c, images), else cross-entropy on G's pairs weighted mu_c and on the labeled
        batch; c_labeled adds the labeled batch's cross-entropy to Eq. 10 too."""
        mixed_on = self.cfg.mixed_c and not self.points
        lc = {}
        if self.cfg.c_labeled or not mixed_on:
            lc["C/labeled"] = F.cross_entropy(self.C(s.x_l).float(), s.y_l)
        mixed = self.data.mixed_c_losses(self, s) if self.cfg.mixed_c else None
        lc.update(mixed if mixed is not None else {"C/fake": self.cfg.mu_c * F.cross_entropy(self.C(s.x_z).float(),
                                                                                             s.y_z)})
        return lc

    def _g_phase(self, s):
        """Eq. 6 (L_advs under random region masks) + Eq. 7 (L_recg = CE(C(x_z), y_z))."""
        x_z = self.G(s.z, s.y_z)
        lg = {"G/advs": real_loss(self.D(x_z, self._region(s.bz, s.dev), s.y_z))}
        if self.cfg.recg:
            lg["G/recg"] = F.cross_entropy(self.C(x_z).float(), s.y_z)
        if self.cfg.ms_weight and s.bz >= 2:
            lg["G/mode_seek"] = mode_seeking(x_z, s.z, self.cfg.ms_weight)
        return lg


@dataclass
class TripleGANConfig(MEDGANConfig):
    mask_embedding: bool = False
    region_reg: bool = False
    recg: bool = False
    idnt: bool = False
    mixed_c: bool = False
    c_labeled: bool = True  # Triple-GAN's C learns from the labeled pairs
    triple: bool = True  # the three-player game for the unlabeled pairs (false: pseudo-labeled pairs are real)
    triple_alpha: float = 0.5  # alpha: weight of C's pairs vs G's pairs as D's fakes


@register("triplegan")
class TripleGAN(MEDGAN):
    """MED-GAN's baseline, Triple-GAN (Li et al. 2017) on the same networks: every MED-GAN component
    off and the three-player game - D takes labeled pairs as real and both C's pairs (x_u, y ~ p_c,
    weight alpha = 1/2) and G's pairs (weight 1 - alpha) as fake; C minimises cross-entropy on
    labeled data + alpha E_{p_c}[-log D(x, y)] + mu_c x cross-entropy on G's pairs (R_P); G fools D.
    MED-GAN's components stay switchable on it (the Table 1 rows: --set model.recg=true, ...);
    `--set model.triple=false` gives the simpler variant where pseudo-labeled pairs count as real."""
    Config = TripleGANConfig

    def _d_pairs(self, s, m_l, m_z):
        if not self.cfg.triple:
            return super()._d_pairs(s, m_l, m_z)
        a = self.cfg.triple_alpha if s.x_u.shape[0] else 0.0
        ld = {"D/real": real_loss(self.D(s.x_l, m_l, s.y_l)), "D/fake": (1 - a) * fake_loss(self.D(s.x_z, m_z, s.y_z))}
        if s.x_u.shape[0]:
            y_s = torch.multinomial(torch.softmax(s.logit_u, 1), 1)[:, 0]  # y ~ p_c(y | x)
            ld["D/pseudo_fake"] = a * fake_loss(self.D(s.x_u, self._region(s.x_u.shape[0], s.dev), y_s))
        return ld

    def _c_phase(self, s):
        lc = super()._c_phase(s)
        if self.cfg.triple and s.x_u.shape[0]:
            lc["C/adv"] = self.cfg.triple_alpha * self._triple_c(s.x_u, self.points, s.dev)
        return lc

    def _triple_c(self, x_u, pts, dev):
        """C's adversarial term (models.base.triple_c_adversarial): exact over the classes for 2-D data
        and up to 16 classes, else sampled."""
        logp = F.log_softmax(self.C(x_u).float(), 1)
        m = self._region(logp.shape[0], dev)

        def d_logits(ys, r):
            xs = x_u.repeat_interleave(r, 0) if r > 1 else x_u
            ms = None if m is None else (m.repeat_interleave(r, 0) if r > 1 else m)
            return self.D(xs, ms, ys)
        return triple_c_adversarial(logp, d_logits, bool(pts) or logp.shape[1] <= 16)

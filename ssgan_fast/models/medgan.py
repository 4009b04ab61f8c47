"""MED-GAN (med-gan.md) and its Triple-GAN-style baseline (`triplegan`).

Networks: G (BigGAN-style ResNet generator; an MLP for 2-D data), D with the mask embedding A_mask
after its first stage (Eq. 2, `MaskEmbedding` = small conv net + the fused `mask_embed` op) and the
label embedding A_label at its last layer (Eq. 3: D_g + A_label(y) * D_g, then a linear decision),
classifier C. Masks: `sample_region_boxes` (the prior q_m of Eq. 6: 75-100 % area, aspect 3/4-4/3)
for plain images, `sample_cutmix_boxes` (lambda ~ Beta(0.2, 0.2)) + the fused `cutmix` for the
constructed images x_hat = T(x, x_z, m) (Eq. 1).

D (Eq. 12, non-saturating BCE): real labeled (x, m, y) and pseudo-labeled unlabeled (x_u, m, y~_u)
are real, (x_z, m, y_z) fake; L_idnt (Eq. 11, weight mu = 0.1): the constructed x_hat with its mask
and the label of x counts as real; L_cons (Eq. 4): ||D^_f(x_hat_lambda, m) - D^_f(x_hat_lambda', m')||^2
for two masks whose boxes differ by at most `eps` of the side; L_ctrs (Eq. 5): triplet margin
gamma = 0.5 with anchor x, positive x_hat, negative x_z (features D^_f under the mask m_lambda).
G (Eq. 6-8): L_advs under random region masks + L_recg = CE(C(x_z), y_z).
C (Eq. 9-10): cross-entropy on constructed instances T(x, x_z, m) and T(x, x_u, m) with labels mixed by
the area fractions, plus the labeled batch itself.
Order per iteration: D, C, G; Adam 2e-4 (0, 0.999) for all (the paper's setting).

2-D data (ring2d): MLP G / D / C, no masks (so no A_mask, L_idnt, L_cons); L_ctrs pairs by (pseudo)
label: anchor a real point, positive a real point of the same class, negative a synthesized point.
The 2-D D is a plain MLP as the paper's (Sec. 5.2); `point_sn=true` spectrally normalises it, which
bounds D's gradient so that L_recg (unbounded) outweighs it: the L_recg rows of Table 1 then lose
modes at variance 0.1 and fall off the modes at 0.0025 (README, ring2d).
Switches: mask_embedding, region_reg (L_cons + L_ctrs), recg (L_recg), idnt (L_idnt), mixed_c (C on
constructed instances). `triplegan` = every switch off: D on real, pseudo-labeled and synthesized
pairs, C on labeled data + mu_c * synthesized pairs, G adversarial only - the paper's baseline
(Table 1 rows: +recg, +recg +ctrs are `--set model.recg=true` etc.).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import MLP, DBlock, ResNetClassifier, ResNetGenerator, SNLinear, blocks_for
from ..nn.mask import MaskEmbedding
from ..ops import cutmix, sample_cutmix_boxes, sample_region_boxes
from ..ops.reference import box_mask
from .base import FP32, GANModel, fake_loss, rand_perm, real_loss, register


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
    triple: bool = False  # Triple-GAN's three-player game for the pseudo-labeled pairs (see TripleGAN)
    triple_alpha: float = 0.5  # Triple-GAN's alpha: weight of C's pairs vs G's pairs as D's fakes


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
        nn.init.zeros_(self.label.weight)
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
        nn.init.zeros_(self.label.weight)
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


def _sqdist(a, b):
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


@register("medgan")
class MEDGAN(GANModel):
    Config = MEDGANConfig

    def __init__(self, cfg: MEDGANConfig, info: dict):
        super().__init__(cfg, info)
        nc = self.nc = info["num_classes"]
        self.points = info["kind"] == "points"
        if self.points:
            self.G, self.D = _PointG(cfg, nc), _PointD(cfg, nc)
            self.C = MLP(2, nc, hidden=(cfg.hidden, cfg.hidden))
        else:
            self.size = info["size"]
            self.G = ResNetGenerator(cfg.z_dim, nc, info["size"], cfg.ch, info["channels"])
            self.D = _ImageD(cfg, nc, info["size"], info["channels"])
            self.C = ResNetClassifier(nc, info["size"], cfg.c_ch, info["channels"])
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self._opts = {k: torch.optim.Adam(getattr(self, k).parameters(), **adam) for k in ("D", "C", "G")}

    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G"]

    def noise(self, n, generator=None, device=None):
        dev = device or next(self.G.parameters()).device
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=dev)

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        return (modules or {"G": self.G})["G"](noise, labels)

    # ------------------------------------------------------------------ masks
    def _region(self, B, dev):
        boxes, _ = sample_region_boxes(B, self.size, self.size, device=dev)
        return box_mask(boxes, self.size, self.size)

    def _cut(self, B, dev):
        return sample_cutmix_boxes(B, self.size, self.size, self.cfg.alpha, device=dev)

    def _jitter(self, boxes):
        """Boxes moved by at most eps * side (the m_lambda' of Eq. 4), kept inside the image."""
        e = max(1, int(round(self.cfg.eps * self.size)))
        b = boxes.long()
        shift = torch.randint(-e, e + 1, (b.shape[0], 2), device=b.device)
        h, w = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        y0 = (b[:, 0] + shift[:, 0]).clamp(min=0)
        x0 = (b[:, 1] + shift[:, 1]).clamp(min=0)
        y0 = torch.minimum(y0, self.size - h)
        x0 = torch.minimum(x0, self.size - w)
        return torch.stack([y0, x0, y0 + h, x0 + w], 1).to(torch.int32)

    def _triple_c(self, x_u, pts, dev):
        """C's adversarial term of Triple-GAN: C makes its pairs (x_u, y ~ p_c) look real to D,
        E_{p_c(y|x)}[-log D(x, y)] (non-saturating). Exact sum over classes for 2-D data and up to 16
        classes; else one sampled y per image with the score-function gradient (Triple-GAN's own
        estimator for large label sets)."""
        logp = F.log_softmax(self.C(x_u).float(), 1)
        n, K = logp.shape
        m = None if pts else self._region(n, dev)
        if pts or K <= 16:
            xs = x_u.repeat_interleave(K, 0)
            ys = torch.arange(K, device=dev).repeat(n)
            ms = None if m is None else m.repeat_interleave(K, 0)
            d = F.softplus(-self.D(xs, ms, ys).float()).view(n, K)  # -log D(x, y)
            return (logp.exp() * d).sum(1).mean()
        y = torch.multinomial(logp.exp().detach(), 1)[:, 0]
        with torch.no_grad():
            d = F.softplus(-self.D(x_u, m, y).float())
        return (logp.gather(1, y[:, None])[:, 0] * (d - d.mean())).mean()

    # ------------------------------------------------------------------ training
    def train_step(self, batch, step, amp=None):
        cfg = self.cfg
        dev = next(self.G.parameters()).device
        amp = amp or FP32
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        B = x_l.shape[0]
        if B == 0:
            raise ValueError("medgan needs labeled images in every batch (batch_labeled > 0)")
        bz = max(B, x_u.shape[0])
        z = self.noise(bz)
        y_z = torch.randint(0, self.nc, (bz,), device=dev)
        losses = {}
        with torch.no_grad(), amp.ctx():
            logit_u = self.C(x_u).float() if x_u.shape[0] else None
            y_u = logit_u.argmax(1) if x_u.shape[0] else y_l[:0]
            x_z = self.G(z, y_z).to(x_l.dtype)  # autocast may hand back bf16; cutmix mixes same-dtype images
        pts = self.points
        # ---------------- D (Eq. 12)
        with amp.ctx():
            m_l = None if pts else self._region(B, dev)
            m_z = None if pts else self._region(bz, dev)
            if cfg.triple:  # Triple-GAN: (x_l, y_l) real; C's pairs (alpha) and G's pairs (1 - alpha) fake
                a = cfg.triple_alpha if x_u.shape[0] else 0.0
                ld = {"D/real": real_loss(self.D(x_l, m_l, y_l)),
                      "D/fake": (1 - a) * fake_loss(self.D(x_z, m_z, y_z))}
                if x_u.shape[0]:
                    y_s = torch.multinomial(torch.softmax(logit_u, 1), 1)[:, 0]  # y ~ p_c(y | x)
                    m_u = None if pts else self._region(x_u.shape[0], dev)
                    ld["D/pseudo_fake"] = a * fake_loss(self.D(x_u, m_u, y_s))
            else:
                ld = {"D/real": real_loss(self.D(x_l, m_l, y_l)), "D/fake": fake_loss(self.D(x_z, m_z, y_z))}
                if x_u.shape[0]:
                    m_u = None if pts else self._region(x_u.shape[0], dev)
                    ld["D/unlabeled"] = real_loss(self.D(x_u, m_u, y_u))
            if not pts and (cfg.idnt or cfg.region_reg):
                boxes, _ = self._cut(B, dev)
                xh, mh = cutmix(x_l, x_z[:B], boxes)  # Eq. 1: x inside the box, x_z outside
                out_h, fh = self.D(xh, mh, y_l, feats=True)
                if cfg.idnt:
                    ld["D/idnt"] = cfg.mu * real_loss(out_h)  # Eq. 11: the constructed image counts as real
                if cfg.region_reg:
                    b2 = self._jitter(boxes)
                    xh2, mh2 = cutmix(x_l, x_z[:B], b2)
                    ld["D/cons"] = _sqdist(fh, self.D.f(xh2, mh2)).mean()  # Eq. 4
                    fa, fn = self.D.f(x_l, mh), self.D.f(x_z[:B], mh)
                    ld["D/ctrs"] = F.relu(_sqdist(fa, fh) - _sqdist(fa, fn) + cfg.gamma).mean()  # Eq. 5
            if pts and cfg.region_reg:  # 2-D: pairs by (pseudo) label
                xr = torch.cat([x_l, x_u])
                yr = torch.cat([y_l, y_u])
                perm = rand_perm(xr.shape[0], dev)
                same = (yr[perm][None, :] == yr[:, None]).float()
                pos = xr[perm][(same + 1e-3 * torch.rand_like(same)).argmax(1)]  # a real point of the same class
                neg = x_z[torch.arange(xr.shape[0], device=dev) % x_z.shape[0]]  # synthesized points
                fa, fp, fn = self.D.f(xr), self.D.f(pos), self.D.f(neg)
                ld["D/ctrs"] = F.relu(_sqdist(fa, fp) - _sqdist(fa, fn) + cfg.gamma).mean()  # Eq. 5
            loss_d = sum(ld.values())
        amp.step(loss_d, self._opts["D"], list(self.D.parameters()))
        losses.update({k: v.detach() for k, v in ld.items()})
        # ---------------- C (Eq. 9-10)
        with amp.ctx():
            lc = {"C/labeled": F.cross_entropy(self.C(x_l).float(), y_l)}
            if cfg.mixed_c and not pts:
                boxes, area = self._cut(B, dev)
                xz_mix, _ = cutmix(x_l, x_z[:B], boxes)
                lz = F.log_softmax(self.C(xz_mix).float(), 1)
                lc["C/mixed_z"] = -(area * lz.gather(1, y_l[:, None])[:, 0] +
                                    (1 - area) * lz.gather(1, y_z[:B, None])[:, 0]).mean()  # Eq. 9
                if x_u.shape[0] >= B:
                    boxes, area = self._cut(B, dev)
                    xu_mix, _ = cutmix(x_l, x_u[:B], boxes)
                    lu = F.log_softmax(self.C(xu_mix).float(), 1)
                    lc["C/mixed_u"] = -(area * lu.gather(1, y_l[:, None])[:, 0] +
                                        (1 - area) * lu.gather(1, y_u[:B, None])[:, 0]).mean()
            else:
                lc["C/fake"] = cfg.mu_c * F.cross_entropy(self.C(x_z).float(), y_z)
            if cfg.triple and x_u.shape[0]:
                lc["C/adv"] = cfg.triple_alpha * self._triple_c(x_u, pts, dev)
            loss_c = sum(lc.values())
        amp.step(loss_c, self._opts["C"], list(self.C.parameters()))
        losses.update({k: v.detach() for k, v in lc.items()})
        # ---------------- G (Eq. 6-8)
        with amp.ctx():
            x_z = self.G(z, y_z)
            lg = {"G/advs": real_loss(self.D(x_z, None if pts else self._region(bz, dev), y_z))}  # Eq. 6
            if cfg.recg:
                lg["G/recg"] = F.cross_entropy(self.C(x_z).float(), y_z)  # Eq. 7
            loss_g = sum(lg.values())
        amp.step(loss_g, self._opts["G"], list(self.G.parameters()))
        losses.update({k: v.detach() for k, v in lg.items()})
        return losses


@dataclass
class TripleGANConfig(MEDGANConfig):
    mask_embedding: bool = False
    region_reg: bool = False
    recg: bool = False
    idnt: bool = False
    mixed_c: bool = False
    triple: bool = True


@register("triplegan")
class TripleGAN(MEDGAN):
    """MED-GAN's baseline, Triple-GAN (Li et al. 2017) on the same networks: every MED-GAN component
    off and the three-player game - D takes labeled pairs as real and both C's pairs (x_u, y ~ p_c,
    weight alpha = 1/2) and G's pairs (weight 1 - alpha) as fake; C minimises cross-entropy on
    labeled data + alpha E_{p_c}[-log D(x, y)] + mu_c x cross-entropy on G's pairs (R_P); G fools D.
    `--set model.triple=false` gives the simpler variant where pseudo-labeled pairs count as real."""
    Config = TripleGANConfig

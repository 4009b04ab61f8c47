"""CVAE-GAN ("CVAE-GAN: Fine-Grained Image Generation through Asymmetric Training", Bao et al.): encoder E,
generator G, discriminator D, classifier C.

Networks (built from ssgan_fast.nn; the paper's GoogleNet E / DCGAN D / AlexNet C are replaced by
the engine's ResNet stages at the preset's width): E = ResNet backbone whose pooled features are
merged with the one-hot class at the last FC layer (Sec. 5) -> (mu, eps = log sigma^2);
G = ResNet generator conditioned on the class (conditional BN); D = ResNet discriminator,
f_D = the input of its last FC layer; C = ResNet classifier, f_C = the input of its last FC layer.

More: docs/modules.md, section ssgan_fast.models.cvaegan.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import ResNetClassifier, ResNetDiscriminator, ResNetGenerator
from .base import FP32, GANModel, fake_loss, mode_seeking, one_hot, real_loss, register, share_pair_classes


@dataclass
class CVAEGANConfig:
    z_dim: int = 256  # Sec. 5: latent dimension 256
    ch: int = 64
    c_ch: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    w_kl: float = 1.0  # Eq. 7: every term weighted 1
    w_g: float = 1.0
    w_gd: float = 1.0
    w_gc: float = 1.0
    fm_momentum: float = 0.9  # moving average of the feature centres (not given in the paper)
    encoder: bool = True
    d_sn: bool = False  # spectral norm in D (the paper's DCGAN D has none)
    pair_img: bool = True  # Eq. 10 parts of L_G
    pair_d: bool = True
    pair_c: bool = True
    mean_fm_d: bool = True
    mean_fm_c: bool = True
    semi_supervised: bool = False
    # MSGAN mode seeking (models.base.mode_seeking) on the prior samples G(z_p, c_p), pairs of one class;
    # not in the paper (0 = off)
    ms_weight: float = 0.0


class _Encoder(nn.Module):
    """E(x, c) -> (mu, eps): backbone features merged with the one-hot class at the last FC layer."""

    def __init__(self, cfg, nc, size, channels):
        super().__init__()
        self.body = ResNetDiscriminator(0, size, cfg.ch, channels, sn=False)
        self.nc = nc
        self.fc = nn.Linear(self.body.feat_dim + nc, 2 * cfg.z_dim)
        nn.init.zeros_(self.fc.bias)
        with torch.no_grad():
            self.fc.weight.mul_(0.1)

    def forward(self, x, y):
        h = torch.cat([self.body.features(x), one_hot(y, self.nc, x.dtype)], 1)
        mu, eps = self.fc(h).float().chunk(2, 1)
        return mu, eps.clamp(-10, 10)


def _class_means(f, y, k):
    sums = torch.zeros(k, f.shape[1], device=f.device, dtype=f.dtype).index_add(0, y, f)
    cnt = torch.zeros(k, device=f.device, dtype=torch.int64).index_add_(0, y, torch.ones_like(y))  # no host sync
    return sums / cnt.clamp_min(1)[:, None].to(f.dtype), cnt > 0


def _half_sq(a, b):
    """1/2 ||a - b||^2 per row (summed over the rest), mean over rows."""
    return 0.5 * (a.float() - b.float()).pow(2).flatten(1).sum(1).mean()


@register("cvaegan")
class CVAEGAN(GANModel):
    Config = CVAEGANConfig

    def __init__(self, cfg: CVAEGANConfig, info: dict):
        super().__init__(cfg, info)
        if info["kind"] != "image":
            raise ValueError("cvaegan trains on images")
        if not cfg.ms_weight >= 0:
            raise ValueError(f"ms_weight must be >= 0, got {cfg.ms_weight}")
        if not 0 <= cfg.fm_momentum < 1:
            raise ValueError(f"fm_momentum must be in [0, 1), got {cfg.fm_momentum}")
        size, ch, nc = info["size"], info["channels"], info["num_classes"]
        self.nc = nc
        self.G = ResNetGenerator(cfg.z_dim, nc, size, cfg.ch, ch, sn=False)
        self.D = ResNetDiscriminator(0, size, cfg.ch, ch, sn=cfg.d_sn)
        self.C = ResNetClassifier(nc, size, cfg.c_ch, ch)
        fd, fc = self.D.feat_dim, self.C.fc.in_features
        self.register_buffer("fd_real", torch.zeros(fd))
        self.register_buffer("fd_fake", torch.zeros(fd))
        self.register_buffer("fd_seen", torch.zeros(2, dtype=torch.bool))
        self.register_buffer("fc_real", torch.zeros(nc, fc))
        self.register_buffer("fc_fake", torch.zeros(nc, fc))
        self.register_buffer("fc_seen", torch.zeros(2, nc, dtype=torch.bool))
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self._opts = {k: torch.optim.Adam(getattr(self, k).parameters(), **adam) for k in ("C", "D", "G")}
        if cfg.encoder:
            self.E = _Encoder(cfg, nc, size, ch)
            self._opts["E"] = torch.optim.Adam(self.E.parameters(), **adam)

    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G", "E"] if self.cfg.encoder else ["G"]

    def noise(self, n, generator=None, device=None):
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=device or self.fd_real.device)

    def truncate(self, noise, psi):
        """psi z: the noise towards the mean latent 0 of N(0, I) (the truncation trick on z)."""
        return noise * psi

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        return (modules or {"G": self.G})["G"](noise, labels)

    # ------------------------------------------------------------------ moving-average centres
    def _centre(self, batch_mean, hist, seen):
        """momentum * history (detached) + (1 - momentum) * batch mean; the batch mean alone at first."""
        m = self.cfg.fm_momentum
        return torch.where(seen, m * hist + (1 - m) * batch_mean, batch_mean)

    @torch.no_grad()
    def _store(self, name, value, seen_buf, idx, mask=None):
        buf = getattr(self, name)
        if mask is None:
            buf.copy_(value.detach())
            seen_buf[idx].fill_(True)
        else:
            buf.copy_(torch.where(mask[:, None], value.detach(), buf))  # in place, no host sync
            seen_buf[idx] |= mask

    # ------------------------------------------------------------------ training
    def train_step(self, batch, step, amp=None):
        """Alg. 1: C (Eq. 3), D (Eq. 1), G and E (Eq. 2, 4-6 / 10), then the feature-centre histories."""
        amp = amp or FP32
        if batch["x_l"].shape[0] == 0:
            raise ValueError("cvaegan needs labeled images in every batch (batch_labeled > 0)")
        losses = self._c_phase(batch, amp)
        s = self._draw(batch, amp)
        losses.update(self._d_phase(s, amp))
        lg, centres = self._g_phase(s, amp)
        losses.update(lg)
        self._store_centres(*centres)
        return losses

    def _c_phase(self, batch, amp):
        """Eq. 3 (Alg. 1 line 3 / 15): cross-entropy on the labeled batch."""
        with amp.ctx():
            l_c = F.cross_entropy(self.C(batch["x_l"]).float(), batch["y_l"])
        self._optimize(amp, l_c, "C")
        return {"C/ce": l_c.detach()}

    def _draw(self, batch, amp):
        """The images x_r the encoder sees with their classes c (C's pseudo-labels for x_u when
        semi-supervised), the prior noise z_p and the reparameterisation noise r."""
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        x_all = torch.cat([x_l, x_u])
        if self.cfg.semi_supervised and x_u.shape[0]:
            with torch.no_grad(), amp.ctx():
                y_u = self.C(x_u).argmax(1)
            x_r, c = x_all, torch.cat([y_l, y_u])
        else:
            x_r, c = x_l, y_l
        B = x_r.shape[0]
        z_p = self.noise(B)
        r = torch.randn(B, self.cfg.z_dim, device=self.fd_real.device)
        c_p = share_pair_classes(c.clone()) if self.cfg.ms_weight else c  # the prior samples' classes
        return SimpleNamespace(x_l=x_l, y_l=y_l, x_all=x_all, x_r=x_r, c=c, c_p=c_p, B=B, z_p=z_p, r=r)

    def _encode_decode(self, s):
        mu, eps = self.E(s.x_r, s.c)
        z = mu + s.r * torch.exp(0.5 * eps)  # reparameterisation (see the module doc)
        return mu, eps, self.G(z, s.c)

    def _d_phase(self, s, amp):
        """Eq. 1 (Alg. 1 line 9 / 16): real images real, G(z_p, c) and G(E(x_r, c), c) fake."""
        with torch.no_grad(), amp.ctx():
            x_p = self.G(s.z_p, s.c_p)
            x_f = self._encode_decode(s)[2] if self.cfg.encoder else None
        with amp.ctx():
            ld = {"D/real": real_loss(self.D(s.x_all)[0]), "D/fake_p": fake_loss(self.D(x_p)[0])}
            if x_f is not None:
                ld["D/fake_f"] = fake_loss(self.D(x_f)[0])
        self._optimize(amp, sum(ld.values()), "D")
        return {k: v.detach() for k, v in ld.items()}

    def _g_phase(self, s, amp):
        """Alg. 1 lines 10-14, 17-18: G's mean feature matching (Eq. 2, 4) and, with the encoder, E's
        KL (Eq. 5) and the pairwise reconstruction terms (Eq. 6 / 10); one backward into G and E. Returns the
        losses and this batch's feature centres (D's, C's per class) for the histories."""
        cfg = self.cfg
        with amp.ctx():
            x_p = self.G(s.z_p, s.c_p)
            with torch.no_grad():
                fd_all = self.D.features(s.x_all).float()
                fc_real = self.C.features(s.x_l).float()
            fd_p = self.D.features(x_p).float() if cfg.mean_fm_d else None
            fc_p = self.C.features(x_p).float() if cfg.mean_fm_c else None
            lg, cd, cc = self._fm_terms(s, fd_all, fd_p, fc_real, fc_p)
            if cfg.ms_weight and x_p.shape[0] >= 2:
                lg["G/mode_seek"] = mode_seeking(x_p, s.z_p, cfg.ms_weight)
            if cfg.encoder:
                lg.update(self._encoder_terms(s, fd_all))
        self._optimize(amp, sum(lg.values()), *(("G", "E") if cfg.encoder else ("G",)))  # one backward, both step
        return {k: v.detach() for k, v in lg.items()}, (cd, cc)

    def _fm_terms(self, s, fd_all, fd_p, fc_real, fc_p):
        """Eq. 2 (D's features, all classes) and Eq. 4 (C's features, per class), against the centres'
        histories: (the terms, this batch's D centres (real, fake) or None, its C class means
        (mr, pr, mf, pf) or None) - the centres go to _store_centres."""
        cfg, lg, cd, cc = self.cfg, {}, None, None
        if cfg.mean_fm_d:  # Eq. 2
            cd = (self._centre(fd_all.mean(0), self.fd_real, self.fd_seen[0]),
                  self._centre(fd_p.mean(0), self.fd_fake, self.fd_seen[1]))
            lg["G/fm_d"] = cfg.w_gd * 0.5 * (cd[0] - cd[1]).pow(2).sum()
        if cfg.mean_fm_c:  # Eq. 4, per class
            mr, pr = _class_means(fc_real, s.y_l, self.nc)
            mf, pf = _class_means(fc_p, s.c_p, self.nc)
            cc = (mr, pr, mf, pf)
            cr = torch.where(pr[:, None], self._centre(mr, self.fc_real, self.fc_seen[0][:, None]), self.fc_real)
            cf = torch.where(pf[:, None], self._centre(mf, self.fc_fake, self.fc_seen[1][:, None]), self.fc_fake)
            both = (pr | self.fc_seen[0]) & (pf | self.fc_seen[1])
            lg["G/fm_c"] = cfg.w_gc * 0.5 * ((cr - cf).pow(2).sum(1) * both).sum()
        return lg, cd, cc

    def _encoder_terms(self, s, fd_all):
        """E's KL (Eq. 5) and L_G(img), L_G(D), L_G(C) between x_r and G(E(x_r, c), c) (Eq. 6 / 10)."""
        cfg = self.cfg
        mu, eps, x_f = self._encode_decode(s)
        lg = {"E/kl": cfg.w_kl * 0.5 * (mu.pow(2) + eps.exp() - eps - 1).sum(1).mean()}  # Eq. 5
        if cfg.pair_img:
            lg["G/pair_img"] = cfg.w_g * _half_sq(s.x_r, x_f)
        if cfg.pair_d:
            lg["G/pair_d"] = cfg.w_g * _half_sq(fd_all[:s.B], self.D.features(x_f))  # x_r = x_all[:B]
        if cfg.pair_c:
            with torch.no_grad():
                t = self.C.features(s.x_r).float()
            lg["G/pair_c"] = cfg.w_g * _half_sq(t, self.C.features(x_f))
        return lg

    @torch.no_grad()
    def _store_centres(self, cd, cc):
        """The histories take this batch's (detached) centres: D's (real, fake), C's class means."""
        if cd is not None:
            self._store("fd_real", cd[0], self.fd_seen, 0)
            self._store("fd_fake", cd[1], self.fd_seen, 1)
        if cc is not None:
            mr, pr, mf, pf = cc
            self._store("fc_real", self._centre(mr, self.fc_real, self.fc_seen[0][:, None]), self.fc_seen, 0, pr)
            self._store("fc_fake", self._centre(mf, self.fc_fake, self.fc_seen[1][:, None]), self.fc_seen, 1, pf)

    # ------------------------------------------------------------------ applications
    def _nets(self, modules):
        m = modules or {}
        if not self.cfg.encoder:
            raise ValueError("this cvaegan run has no encoder (encoder: false): inpaint / morph need E")
        return m.get("G", self.G), m.get("E", self.E)

    @torch.no_grad()
    def encode(self, x, y, modules=None):
        return self._nets(modules)[1](x, y)[0]

    def inpaint(self, x, mask, y=None, iters=10, optimize_steps=0, lr=0.05, modules=None):
        """Sec. 5.4: x' = G(E(x, c), c); x <- M * x' + (1 - M) * x (Eq. 8), `iters` times.
        mask [B, 1, H, W] is 1 on the corrupted pixels. ``optimize_steps`` > 0 then refines z by
        gradient descent on the squared error over the known pixels. Returns (x, c)."""
        G, E = self._nets(modules)
        if y is None:
            y = self.classify(x)
        with torch.no_grad():
            for _ in range(iters):
                x = mask * G(E(x, y)[0], y) + (1 - mask) * x
        if optimize_steps:
            z = E(x, y)[0].detach().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            known = x.detach()
            for _ in range(optimize_steps):
                opt.zero_grad()
                ((G(z, y) - known).pow(2) * (1 - mask)).sum().backward(inputs=[z])
                opt.step()
            with torch.no_grad():
                x = mask * G(z, y) + (1 - mask) * known
        return x.detach(), y

    @torch.no_grad()
    def morph(self, steps, x=None, y=None, classes=None, z=None, modules=None):
        """Sec. 5.3. Either two images x [2, C, H, W] (classes y [2]; their latent codes E(x, y)
        are interpolated, and the class embedding with them), or two classes with one latent z
        [1, z_dim] (the class embedding is interpolated). Returns [steps, C, H, W]."""
        G, E = (self._nets(modules) if x is not None else ((modules or {}).get("G", self.G), None))
        a = torch.linspace(0, 1, steps, device=self.fd_real.device)[:, None]
        if x is not None:
            if y is None:
                y = self.classify(x)
            zs = E(x, y)[0]
            zz = (1 - a) * zs[0] + a * zs[1]
            k = y
        else:
            zz = z.expand(steps, -1)
            k = torch.as_tensor(classes, device=a.device)
        emb = G.embed(k)
        return G(zz, emb=(1 - a) * emb[0] + a * emb[1])

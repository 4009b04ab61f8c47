"""The AAM discriminator ("Label Geometry Aware Discriminator for Conditional Generative Networks",
Sapkota et al.) in its two hosts: AAM-ACGAN and AAM-StarGAN.

Both replace the softmax auxiliary classifier D_cls of the discriminator (Eq. 7) by the additive
angular margin loss (Eq. 8: bias 0, unit weights and features, scale s, margin m on the target
angle), computed by the fused ``aam_cross_entropy`` op through ``AuxClassifier`` / ``AAMHead``;
``cls: softmax`` is the baseline. D minimises -L_adv + lambda_cls L_cls^r (Eq. 5, L_cls^r on real
labeled images, Eq. 3); G minimises the adversarial term + lambda_cls L_cls^f (Eq. 4, its samples
must be classified as the class / domain asked for) + lambda_rec L_rec (Eq. 2, StarGAN only)
(Eq. 6). The learning rate is 1e-4 for G and D and decays every 10K iterations (Sec. 4.2; the
factor is not given in the paper: ``lr_decay``, 0.9 by default, is this implementation's choice).

More: docs/modules.md, section ssgan_fast.models.aam.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import ResNetDiscriminator, ResNetGenerator
from ..nn.heads import AuxClassifier
from .base import (
    FP32,
    GANModel,
    fake_loss,
    lr_epoch,
    mode_seeking,
    one_hot,
    rand_perm,
    real_loss,
    register,
    share_pair_classes,
    step_lr,
    uncompiled,
)


def _adv_d(kind: str, out_r: torch.Tensor, out_f: torch.Tensor) -> torch.Tensor:
    out_r, out_f = out_r.float(), out_f.float()
    if kind == "bce":
        return real_loss(out_r) + fake_loss(out_f)  # -L_adv of Eq. 1
    if kind == "hinge":
        return F.relu(1 - out_r).mean() + F.relu(1 + out_f).mean()
    return -out_r.mean() + out_f.mean()  # wgan-gp


def _adv_g(kind: str, out_f: torch.Tensor) -> torch.Tensor:
    out_f = out_f.float()
    return real_loss(out_f) if kind == "bce" else -out_f.mean()


def _check(cfg, advs):
    if cfg.adv not in advs:
        raise ValueError(f"adv must be one of {', '.join(advs)}, got {cfg.adv!r}")
    if cfg.cls not in ("aam", "softmax"):
        raise ValueError(f"cls must be 'aam' or 'softmax', got {cfg.cls!r}")


def _check_ms(cfg):
    if not cfg.ms_weight >= 0 or cfg.ms_pool < 1:
        raise ValueError(f"need ms_weight >= 0 and ms_pool >= 1, got {cfg.ms_weight}, {cfg.ms_pool}")


def _images(info, name):
    if info["kind"] != "image":
        raise ValueError(f"{name} trains on images, not {info['kind']}")


# ============================================================================ AAM-ACGAN

@dataclass
class AAMACGANConfig:
    z_dim: int = 128
    ch: int = 64
    attn_res: int = 0
    cls: str = "aam"  # "aam" (Eq. 8) or "softmax" (Eq. 7, the baseline)
    s: float = 30.0  # Eq. 8 scale (the paper states no value: insightface's ArcFace default)
    m: float = 0.5  # Eq. 8 margin (likewise)
    calibrate: bool = False  # AAM loss scaled to start at log C (AAMHead's drop-in default); False: Eq. 8 raw
    g_margin: bool = True  # the margin m in G's class term too (Eq. 4 with Eq. 8, the paper); False: m on D's only
    lambda_cls: float = 1.0  # Eq. 5-6
    adv: str = "bce"  # "bce" (Eq. 1) or "hinge"
    d_cls_fake: bool = False  # original ACGAN: D's classifier also fits G's samples
    # MSGAN mode seeking (models.base.mode_seeking) on pairs of G's batch with one class: a remedy for
    # ACGAN's within-class collapse, not in the paper (0 = off)
    ms_weight: float = 0.0
    ms_pool: int = 1  # the mode-seeking image distance on ms_pool x ms_pool averages (1: pixels, MSGAN's)
    n_dis: int = 1  # D steps per G step
    lr: float = 1e-4  # Sec. 4.2
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_every: int = 10000  # Sec. 4.2: decayed every 10K iterations
    lr_decay: float = 0.9


@register("aam-acgan")
class AAMACGAN(GANModel):
    Config = AAMACGANConfig

    def __init__(self, cfg: AAMACGANConfig, info: dict):
        super().__init__(cfg, info)
        _images(info, "aam-acgan")
        _check(cfg, ("bce", "hinge"))
        _check_ms(cfg)
        size, ch, nc = info["size"], info["channels"], info["num_classes"]
        self.nc = nc
        self.G = ResNetGenerator(cfg.z_dim, nc, size, cfg.ch, ch, attn_res=cfg.attn_res)
        self.D = ResNetDiscriminator(0, size, cfg.ch, ch, attn_res=cfg.attn_res)
        self.cls = AuxClassifier(self.D.feat_dim, nc, cfg.cls, cfg.s, cfg.m, calibrate=cfg.calibrate)  # D_cls, in D
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self._opts = {"D": torch.optim.Adam(list(self.D.parameters()) + list(self.cls.parameters()), **adam),
                      "G": torch.optim.Adam(self.G.parameters(), **adam)}
        self._base_lr = {"D": cfg.lr, "G": cfg.lr}

    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G"]

    def noise(self, n, generator=None, device=None):
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=device or next(self.G.parameters()).device)

    def truncate(self, noise, psi):
        """psi z: the noise towards the mean latent 0 of N(0, I) (the truncation trick on z)."""
        return noise * psi

    def graph_key(self, step):
        return (step + 1) % self.cfg.n_dis == 0, lr_epoch(step, self.cfg.lr_decay_every)

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        return (modules or {"G": self.G})["G"](noise, labels)

    def train_step(self, batch, step, amp=None):
        """One iteration: D (Eq. 1, 3, 5) every step, G (Eq. 1, 4, 6) every n_dis steps."""
        amp = amp or FP32
        step_lr(self._opts, self._base_lr, step, self.cfg.lr_decay_every, self.cfg.lr_decay)
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        x = torch.cat([x_l, x_u])
        if x.shape[0] == 0:
            raise ValueError("aam-acgan: empty batch")
        z = self.noise(x.shape[0])
        y_z = torch.randint(0, self.nc, (x.shape[0],), device=next(self.G.parameters()).device)
        if self.cfg.ms_weight:
            share_pair_classes(y_z)
        losses = self._d_phase(x, y_l, z, y_z, amp)
        if (step + 1) % self.cfg.n_dis == 0:
            losses.update(self._g_phase(z, y_z, amp))
        return losses

    def _d_phase(self, x, y_l, z, y_z, amp):
        """-L_adv (Eq. 1, 5) + lambda_cls x the AAM classification of the labeled real images (Eq. 3)
        (and of the synthesized ones with d_cls_fake)."""
        cfg, bl = self.cfg, y_l.shape[0]
        with torch.no_grad(), amp.ctx():
            x_z = self.G(z, y_z)
        with amp.ctx():
            out_r, h_r = self.D(x)
            out_f, h_f = self.D(x_z)
            ld = {"D/adv": _adv_d(cfg.adv, out_r, out_f)}  # -L_adv (Eq. 1, 5)
            if bl:
                ld["D/cls_real"] = cfg.lambda_cls * self.cls.loss(h_r[:bl], y_l)  # Eq. 3
            if cfg.d_cls_fake:
                ld["D/cls_fake"] = cfg.lambda_cls * self.cls.loss(h_f, y_z)
            loss_d = sum(ld.values())
        self._optimize(amp, loss_d, "D")
        return {k: v.detach() for k, v in ld.items()}

    def _g_phase(self, z, y_z, amp):
        """L_adv (Eq. 1 / 6) + lambda_cls x the AAM classification of G's images (Eq. 4)."""
        with amp.ctx():
            x_z = self.G(z, y_z)
            out, h = self.D(x_z)
            lg = {"G/adv": _adv_g(self.cfg.adv, out),
                  "G/cls": self.cfg.lambda_cls * self.cls.loss(h, y_z, margin=self.cfg.g_margin)}
            if self.cfg.ms_weight and z.shape[0] >= 2:
                lg["G/mode_seek"] = mode_seeking(x_z, z, self.cfg.ms_weight, self.cfg.ms_pool)
            loss_g = sum(lg.values())
        self._optimize(amp, loss_g, "G")
        return {k: v.detach() for k, v in lg.items()}


# ============================================================================ AAM-StarGAN

class _ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.InstanceNorm2d(c, affine=True), nn.ReLU(True),
                                 nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.InstanceNorm2d(c, affine=True))

    def forward(self, x):
        return x + self.net(x)


class StarGenerator(nn.Module):
    """StarGAN G: (image, domain code c [B, n]) -> image. Instance norm without running statistics
    (StarGAN never switches G to eval mode; an EMA copy in eval mode must behave the same)."""

    def __init__(self, channels: int, code_dim: int, ch: int = 64, repeat: int = 6, down: int = 2):
        super().__init__()
        layers = [nn.Conv2d(channels + code_dim, ch, 7, 1, 3, bias=False), nn.InstanceNorm2d(ch, affine=True),
                  nn.ReLU(True)]
        c = ch
        for _ in range(down):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.InstanceNorm2d(2 * c, affine=True), nn.ReLU(True)]
            c *= 2
        layers += [_ResBlock(c) for _ in range(repeat)]
        for _ in range(down):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.InstanceNorm2d(c // 2, affine=True),
                       nn.ReLU(True)]
            c //= 2
        layers += [nn.Conv2d(c, channels, 7, 1, 3, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.code_dim = code_dim

    def forward(self, x, c):
        c = c.to(x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return self.net(torch.cat([x, c], 1))


class StarDiscriminator(nn.Module):
    """StarGAN D (PatchGAN): stride-2 4x4 convs + LeakyReLU(0.01) down to 2x2; D_src = 3x3 conv
    (a patch map of logits); phi(x) = the flattened last features, input of D_cls."""

    def __init__(self, channels: int, size: int, ch: int = 64, max_ch: int = 2048):
        super().__init__()
        n = size.bit_length() - 2  # size / 2^n = 2
        if n < 1 or 2 ** (n + 1) != size:
            raise ValueError(f"aam-stargan: image size must be a power of two >= 4, got {size}")
        layers, cin, c = [], channels, ch
        for _ in range(n):
            layers += [nn.Conv2d(cin, c, 4, 2, 1), nn.LeakyReLU(0.01)]
            cin, c = c, min(2 * c, max_ch)
        self.body = nn.Sequential(*layers)
        self.src = nn.Conv2d(cin, 1, 3, 1, 1, bias=False)
        self.feat_dim = cin * 4

    def forward(self, x):
        h = self.body(x)
        return self.src(h).flatten(1), h.flatten(1)


@dataclass
class AAMStarGANConfig:
    ch: int = 64  # conv_dim of G and D
    g_repeat: int = 6  # residual blocks in G
    cls: str = "aam"
    s: float = 30.0
    m: float = 0.5
    calibrate: bool = False  # as AAM-ACGAN's
    g_margin: bool = True  # as AAM-ACGAN's
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    adv: str = "wgan-gp"  # "wgan-gp" (StarGAN) or "bce" (Eq. 1)
    n_critic: int = 5
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_every: int = 10000
    lr_decay: float = 0.9
    # mode seeking across sources (MSGAN Eq. 3 with the source image as the noise): pairs of the batch
    # translated into one domain must differ as much as their sources do - against translations that
    # drop the source and give one image per domain; not in the paper (0 = off)
    ms_weight: float = 0.0
    ms_pool: int = 1  # as AAM-ACGAN's
    num_sources: int = 64  # real images kept for sample grids / generate / evaluate
    use_attrs: bool = True  # multi-attribute labels when the data set has them (attrs.csv), else domains


@register("aam-stargan")
class AAMStarGAN(GANModel):
    Config = AAMStarGANConfig

    def __init__(self, cfg: AAMStarGANConfig, info: dict):
        super().__init__(cfg, info)
        _images(info, "aam-stargan")
        _check(cfg, ("wgan-gp", "bce"))
        _check_ms(cfg)
        size, ch, nc = info["size"], info["channels"], info["num_classes"]
        self.na = int(info.get("num_attrs", 0)) if cfg.use_attrs else 0
        if nc < 2 and not self.na:
            raise ValueError("aam-stargan translates between domains: it needs at least 2 (or attribute labels)")
        self.nc = nc
        code_dim = self.na or nc
        self.G = StarGenerator(ch, code_dim, cfg.ch, cfg.g_repeat)
        self.D = StarDiscriminator(ch, size, cfg.ch)
        # single label: one C-way head; attributes: one 2-way AAM head (or a BCE logit) per attribute
        self.cls = AuxClassifier(self.D.feat_dim, max(nc, 2), cfg.cls, cfg.s, cfg.m, num_attrs=self.na,
                                 calibrate=cfg.calibrate)
        self.register_buffer("sources", torch.zeros(cfg.num_sources, ch, size, size))
        self.register_buffer("source_attrs", torch.zeros(cfg.num_sources, self.na))
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.int64))
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self._opts = {"D": torch.optim.Adam(list(self.D.parameters()) + list(self.cls.parameters()), **adam),
                      "G": torch.optim.Adam(self.G.parameters(), **adam)}
        self._base_lr = {"D": cfg.lr, "G": cfg.lr}
        self._filled = None  # host copy of num_filled (None: read it once)

    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G"]

    def graph_key(self, step):
        if self._banked() < self.cfg.num_sources:
            return None  # banking source images: a few eager steps at the start
        return (step + 1) % self.cfg.n_critic == 0, lr_epoch(step, self.cfg.lr_decay_every)

    def _banked(self) -> int:
        if self._filled is None:
            self._filled = int(self.num_filled)
        return self._filled

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._filled = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def code(self, y):
        """Domain code: one-hot of the domain [B] or the attribute vector [B, A] itself."""
        if self.na:
            return y.float()
        return one_hot(y, self.nc)

    truncation_note = "a translation model: its 'noise' picks the real source images"

    def noise(self, n, generator=None, device=None):
        """Indices into the bank of real source images (a translation model has no noise)."""
        return torch.randint(0, self.cfg.num_sources, (n,), generator=generator,
                             device=device or self.sources.device)

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        """Translations of banked real images: to domain `labels`, or (attributes) with attribute
        `labels % A` of the source image flipped."""
        filled = int(self.num_filled)
        if filled == 0:
            raise RuntimeError("aam-stargan: no source images yet (train at least one step)")
        idx = noise.long() % filled
        x = self.sources[idx]
        if self.na:
            a = self.source_attrs[idx].clone()
            k = labels.long() % self.na
            rows = torch.arange(a.shape[0], device=a.device)
            a[rows, k] = 1 - a[rows, k]
            return (modules or {"G": self.G})["G"](x, a)
        return (modules or {"G": self.G})["G"](x, self.code(labels))

    @torch.no_grad()
    def translate(self, x, domain, G=None):
        """To domain `domain` (an int), or to the attribute vector `domain` (a sequence of A 0/1 values)."""
        if self.na:
            a = torch.as_tensor(domain, dtype=torch.float32, device=x.device).flatten()
            if a.numel() != self.na or not bool(((a == 0) | (a == 1)).all()):
                raise ValueError(f"this model translates by {self.na} attributes: give {self.na} values of 0 / 1, "
                                 f"got {list(a.tolist())}")
            return (G or self.G)(x, a.expand(x.shape[0], -1))
        if not isinstance(domain, int) or not 0 <= domain < self.nc:
            raise ValueError(f"domain must be an int in 0..{self.nc - 1}, got {domain!r}")
        y = torch.full((x.shape[0],), int(domain), dtype=torch.int64, device=x.device)
        return (G or self.G)(x, self.code(y))

    @torch.no_grad()
    def predict(self, x):
        """Domain [B], or attributes [B, A] (0/1) in multi-attribute mode."""
        lg = self.cls.logits(self.D(x)[1])
        return (lg > 0).float() if self.na else lg.argmax(1)

    @torch.no_grad()
    def classify(self, x):
        if self.na:
            raise NotImplementedError("aam-stargan with attribute labels has no single-label classifier")
        return self.predict(x)

    @torch.no_grad()
    def _bank(self, x, a=None):
        k = self._banked()
        n = min(self.cfg.num_sources - k, x.shape[0])
        if n > 0:
            self.sources[k:k + n].copy_(x[:n].float())
            if a is not None:
                self.source_attrs[k:k + n].copy_(a[:n].float())
            self.num_filled.fill_(k + n)
            self._filled = k + n

    def _gp(self, x, x_f, amp):
        a = torch.rand(x.shape[0], 1, 1, 1, device=x.device)
        xh = (a * x.float() + (1 - a) * x_f.float()).requires_grad_(True)
        with amp.ctx():
            out = uncompiled(self.D)(xh)[0].float()  # double backward: not through aot_autograd (--compile)
        g, = torch.autograd.grad(out.sum(), xh, create_graph=True)
        return (g.flatten(1).norm(2, 1) - 1).pow(2).mean()

    def train_step(self, batch, step, amp=None):
        """One iteration: D (Eq. 5) every step, G (Eq. 6) every n_critic steps."""
        amp = amp or FP32
        step_lr(self._opts, self._base_lr, step, self.cfg.lr_decay_every, self.cfg.lr_decay)
        s = self._draw(batch, amp)
        losses = self._d_phase(s, amp)
        if (step + 1) % self.cfg.n_critic == 0:
            losses.update(self._g_phase(s, amp))
        return losses

    def _draw(self, batch, amp):
        """Source domains y_org (C's predictions for x_u, or the attribute vectors) and targets y_trg."""
        dev = self.sources.device
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        x = torch.cat([x_l, x_u])
        if x.shape[0] == 0:
            raise ValueError("aam-stargan: empty batch")
        bl = x_l.shape[0]
        if self.na:  # every image has its attributes: all count as labeled; targets = shuffled real vectors
            if "a_l" not in batch:
                raise ValueError("aam-stargan: multi-attribute mode needs batches with a_l / a_u (a domains: data "
                                 "set with attrs.csv)")
            y_org = torch.cat([batch["a_l"], batch["a_u"]]).float()
            y_trg = y_org[rand_perm(x.shape[0], dev)]
            bl = x.shape[0]
            self._bank(x, y_org)
        else:
            self._bank(x)
            with torch.no_grad(), amp.ctx():
                y_org = torch.cat([y_l, self.predict(x_u)]) if x_u.shape[0] else y_l  # source domains
            y_trg = torch.randint(0, self.nc, (x.shape[0],), device=dev)
            if self.cfg.ms_weight:
                share_pair_classes(y_trg)
        return SimpleNamespace(x=x, bl=bl, y_org=y_org, y_trg=y_trg, c_org=self.code(y_org), c_trg=self.code(y_trg))

    def _d_phase(self, s, amp):
        """Eq. 5: adversarial + lambda_cls x the AAM classification of real images (Eq. 3) (+ GP)."""
        cfg = self.cfg
        with torch.no_grad(), amp.ctx():
            x_f = self.G(s.x, s.c_trg)
        with amp.ctx():
            out_r, h_r = self.D(s.x)
            out_f, _ = self.D(x_f)
            ld = {"D/adv": _adv_d(cfg.adv, out_r, out_f)}
            if s.bl:
                ld["D/cls_real"] = cfg.lambda_cls * self.cls.loss(h_r[:s.bl], s.y_org[:s.bl])  # Eq. 3
        if cfg.adv == "wgan-gp":
            ld["D/gp"] = cfg.lambda_gp * self._gp(s.x, x_f, amp)
        self._optimize(amp, sum(ld.values()), "D")
        return {k: v.detach() for k, v in ld.items()}

    def _g_phase(self, s, amp):
        """Eq. 6: adversarial + lambda_cls x AAM classification of the translations (Eq. 4) + cycle (Eq. 2)."""
        cfg = self.cfg
        with amp.ctx():
            x_f = self.G(s.x, s.c_trg)
            out, h = self.D(x_f)
            lg = {"G/adv": _adv_g(cfg.adv, out),
                  "G/cls": cfg.lambda_cls * self.cls.loss(h, s.y_trg, margin=cfg.g_margin),  # Eq. 4
                  "G/rec": cfg.lambda_rec * (s.x.float() - self.G(x_f, s.c_org).float()).abs().mean()}  # Eq. 2
            if cfg.ms_weight and not self.na and s.x.shape[0] >= 2:
                lg["G/mode_seek"] = mode_seeking(x_f, s.x, cfg.ms_weight, cfg.ms_pool)
        self._optimize(amp, sum(lg.values()), "G")
        return {k: v.detach() for k, v in lg.items()}

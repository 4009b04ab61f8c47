"""The three baselines of CVAE-GAN's Figure 4 ("CVAE-GAN: Fine-Grained Image Generation through Asymmetric
Training", Sec. 4), on 2-D points (ring2d-cvae).

    cvaegan-fig4-gan   the traditional GAN: D Eq. 1, G -log D(G(z))
    cvaegan-fig4-wgan  WGAN with weight clipping (critic clipped to +-clip, G every n_critic steps)
    cvaegan-fig4-fm    the mean feature matching GAN: D Eq. 1, G Eq. 2 on the input of D's last FC
                       layer, real and fake centres as moving averages of the batch means

G and D are MLPs with hidden layers 32-64-64 (ReLU), z ~ N(0, I_8), RMSProp at a fixed learning
rate; unconditional (the data has one class). One engine step is one D step; G steps every
n_critic steps (1 but for the WGAN). `python -m ssgan_fast.experiments cvae-ring` trains the three.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import FP32, GANModel, fake_loss, real_loss, register


@dataclass
class Fig4Config:
    z_dim: int = 8
    lr: float = 5e-4
    n_critic: int = 1
    clip: float = 0.0  # > 0: clip the critic's weights to [-clip, clip] after each D step (WGAN)
    fm_momentum: float = 0.9  # the centres' moving average (fm)


def _mlp(sizes):
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers), nn.Linear(sizes[-2], sizes[-1])


class _Fig4(GANModel):
    Config = Fig4Config
    loss = "gan"

    def __init__(self, cfg: Fig4Config, info: dict):
        super().__init__(cfg, info)
        if info["kind"] != "points":
            raise ValueError(f"{self.name} trains on 2-D points (--data ring2d-cvae)")
        if cfg.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {cfg.n_critic}")
        self.G = nn.Sequential(*_mlp([cfg.z_dim, 32, 64, 64, 2]))
        self.D_body, self.D_out = _mlp([2, 32, 64, 64, 1])
        d_params = list(self.D_body.parameters()) + list(self.D_out.parameters())
        self._opts = {"D": torch.optim.RMSprop(d_params, lr=cfg.lr),
                      "G": torch.optim.RMSprop(self.G.parameters(), lr=cfg.lr)}
        self.register_buffer("centres", torch.zeros(2, 64))  # fm: real, fake
        self.register_buffer("seen", torch.zeros((), dtype=torch.bool))

    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G"]

    def noise(self, n, generator=None, device=None):
        dev = device or self.centres.device
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=dev)

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        return (modules or {"G": self.G})["G"](noise)

    def _d(self, x):
        return self.D_out(self.D_body(x))[:, 0]

    def train_step(self, batch, step, amp=None):
        """One D step on the batch's real points; a G step every n_critic steps."""
        amp = amp or FP32
        x = torch.cat([batch["x_l"], batch["x_u"]])
        if x.shape[0] == 0:
            raise ValueError(f"{self.name}: empty batch")
        losses = self._d_phase(x, amp)
        if (step + 1) % self.cfg.n_critic == 0:
            losses.update(self._g_phase(x, amp))
        return losses

    def _d_phase(self, x, amp):
        with torch.no_grad():
            xf = self.G(self.noise(x.shape[0]))
        with amp.ctx():
            dr, df = self._d(x), self._d(xf)
            loss = df.mean() - dr.mean() if self.loss == "wgan" else real_loss(dr) + fake_loss(df)  # Eq. 1
        self._optimize(amp, loss, "D")
        if self.cfg.clip > 0:
            with torch.no_grad():
                for p in self._opts["D"].param_groups[0]["params"]:
                    p.clamp_(-self.cfg.clip, self.cfg.clip)
        return {"D/loss": loss.detach()}

    def _g_phase(self, x, amp):
        with amp.ctx():
            xf = self.G(self.noise(x.shape[0]))
            loss = self._g_loss(x, xf)
        self._optimize(amp, loss, "G")
        self._after_g()
        return {"G/loss": loss.detach()}

    def _after_g(self):
        pass

    def _g_loss(self, x, xf):
        return real_loss(self._d(xf))  # -log D(G(z))


@register("cvaegan-fig4-gan")
class Fig4GAN(_Fig4):
    """The traditional GAN of Figure 4."""


@dataclass
class Fig4WGANConfig(Fig4Config):
    n_critic: int = 5
    clip: float = 0.01


@register("cvaegan-fig4-wgan")
class Fig4WGAN(_Fig4):
    """WGAN with weight clipping (Figure 4)."""
    Config = Fig4WGANConfig
    loss = "wgan"

    def _g_loss(self, x, xf):
        return -self._d(xf).mean()


@register("cvaegan-fig4-fm")
class Fig4FM(_Fig4):
    """The mean feature matching GAN (Figure 4): G minimises 1/2 ||c_real - c_fake||^2 (Eq. 2) between
    moving averages of the batch means of D's last hidden features."""

    def _g_loss(self, x, xf):
        m = self.cfg.fm_momentum
        with torch.no_grad():
            fr = self.D_body(x).float().mean(0)
            c_real = torch.where(self.seen, m * self.centres[0] + (1 - m) * fr, fr)
        ff = self.D_body(xf).float().mean(0)
        c_fake = torch.where(self.seen, m * self.centres[1] + (1 - m) * ff, ff)
        self._new_centres = torch.stack([c_real, c_fake.detach()])
        return 0.5 * (c_real - c_fake).pow(2).sum()

    @torch.no_grad()
    def _after_g(self):  # the histories take this step's centres (after backward: they are saved for it)
        self.centres.copy_(self._new_centres)
        self.seen.fill_(True)

"""SphericGAN ("SphericGAN: Semi-supervised Hyper-spherical Generative Adversarial Networks for
Fine-grained Image Synthesis", Chen et al.): a hyper-spherical latent space with K learnable prototypes,
a prototypical discriminator D_prt, a class-conditional D_class, a latent discriminator D_lat, a
mapping network F, and a classifier C, trained semi-supervised.

More: docs/modules.md, section ssgan_fast.models.sphericgan.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import MLP, ResNetClassifier, ResNetDiscriminator, ResNetGenerator, thumbnail
from ..nn.heads import PrototypeHead
from ..ops import clustering_loss, cosine_softmax
from .base import FP32, GANModel, fake_loss, mode_seeking, real_loss, register, share_pair_classes

log = logging.getLogger("ssgan_fast")


@dataclass
class SphericGANConfig:
    z_dim: int = 64
    latent_dim: int = 64
    num_prototypes: int = 10  # K latent prototypes = prior clusters of the real data
    ch: int = 32  # width of G2, F, D_prt, D_class
    c_ch: int = 32  # width of C
    attn_res: int = 0  # self-attention resolution (0: none)
    lam: float = 4.0  # Eq. 2
    mu: float = 5.0  # Eq. 8
    # weight of C's own term on G's pairs (Eq. 8's mu E_z[-y_z log C(x_z)]); None = mu (the paper). A smaller
    # value keeps C a classifier of the real data, so that G's verification term (mu, Eq. 8) is not met by
    # C learning G's samples instead of G learning the class (a choice: docs/deviations.md)
    c_fake_weight: float | None = None
    nu: float = 0.01  # Eq. 9 (weight of L_cons)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    c_lr: float = 1e-3
    c_momentum: float = 0.9
    head_tau: float = 0.1  # temperature of D_prt's cluster head (cosine softmax)
    latent_clustering: bool = True
    cluster_alignment: bool = True
    semantic_verification: bool = True
    g_eval: bool = True
    prior_samples: int = 5000  # real images used to fit the prior k-means
    # the prior clusters' features (the paper: IMSAT deep clustering [16]; substitute: k-means on deep
    # features): auto = a frozen ImageNet ResNet-50 (prior_weights, from the weights registry) where its
    # file is present, else 8x8 grayscale thumbnails (the fallback, logged and named in metrics.json);
    # resnet50 = require it (prior_weights "" = random weights, for tests); thumbnail = always thumbnails
    prior_features: str = "auto"
    prior_weights: str = "resnet50-imagenet"
    prior_feat_size: int = 224
    # algorithm1: P -> F -> D -> G -> C, each its own step (Algorithm 1, lines 7-11);
    # joint: P -> D -> (G, F) -> C, G and F back-propagated from one graph (the project's earlier order)
    update_order: str = "algorithm1"
    g_sn: bool = False  # spectral norm in G2 (the paper uses no such training strategy, Sec. 4.1)
    # mode seeking (Mao et al., CVPR 2019, MSGAN Eq. 3): G also minimises ms_weight / (d(x_z1, x_z2) / d(z1, z2))
    # over pairs of its batch drawn with the same class, so that G2 cannot give one image per class whatever z°
    # (a choice against the conditional mode collapse of a short run: docs/deviations.md; 0 = off, the paper)
    ms_weight: float = 0.0


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Great-circle interpolation between unit vectors a, b [D] at fractions t [T]: [T, D], unit norm
    (the linear path, renormalised, where a and b (anti)coincide)."""
    a, b = F.normalize(a.double(), dim=0), F.normalize(b.double(), dim=0)
    omega = torch.arccos((a @ b).clamp(-1, 1))
    t = t.double()[:, None]
    if float(torch.sin(omega)) < 1e-6:
        return F.normalize((1 - t) * a + t * b, dim=1).float()
    return ((torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)).float()


def _nll(probs, target):
    return -torch.log(probs.float().gather(1, target[:, None]).clamp_min(1e-12)).mean()


class _Encoder(nn.Module):
    """F: ResNet backbone -> linear -> unit sphere."""

    def __init__(self, cfg, size, channels):
        super().__init__()
        self.body = ResNetDiscriminator(0, size, cfg.ch, channels, sn=False)
        self.out = nn.Linear(self.body.feat_dim, cfg.latent_dim)

    def forward(self, x):
        return F.normalize(self.out(self.body.features(x)), dim=1)


class _DPrt(nn.Module):
    """D_prt: backbone + real/fake head + cluster head D_prt^P (probabilities over K)."""

    def __init__(self, cfg, size, channels):
        super().__init__()
        self.body = ResNetDiscriminator(0, size, cfg.ch, channels, attn_res=cfg.attn_res)
        self.cluster = PrototypeHead(self.body.feat_dim, cfg.num_prototypes, tau=cfg.head_tau)

    def forward(self, x):
        idt, h = self.body(x)
        return idt, self.cluster(h.float())


@register("sphericgan")
class SphericGAN(GANModel):
    Config = SphericGANConfig

    def __init__(self, cfg: SphericGANConfig, info: dict):
        super().__init__(cfg, info)
        if info["kind"] != "image":
            raise ValueError("sphericgan trains on images; use medgan / triplegan for 2-D data")
        size, ch, nc = info["size"], info["channels"], info["num_classes"]
        self.nc = nc
        self.G1 = nn.Sequential(MLP(cfg.z_dim, cfg.latent_dim, hidden=(256, 256)))
        self.prior_kind = self._prior_kind(cfg)
        if cfg.update_order not in ("algorithm1", "joint"):
            raise ValueError(f"update_order must be 'algorithm1' or 'joint', got {cfg.update_order!r}")
        if not cfg.ms_weight >= 0:
            raise ValueError(f"ms_weight must be >= 0, got {cfg.ms_weight}")
        w = cfg.c_fake_weight
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0):
            raise ValueError(f"c_fake_weight must be a number >= 0 or null (= mu, the paper), got {w!r}")
        self.G2 = ResNetGenerator(cfg.latent_dim, nc, size, cfg.ch, ch, attn_res=cfg.attn_res, sn=cfg.g_sn)
        self.Dprt = _DPrt(cfg, size, ch)
        self.Dclass = ResNetDiscriminator(nc, size, cfg.ch, ch, attn_res=cfg.attn_res)
        self.C = ResNetClassifier(nc, size, cfg.c_ch, ch)
        self.P = nn.Parameter(F.normalize(torch.randn(cfg.num_prototypes, cfg.latent_dim), dim=1))
        if cfg.cluster_alignment:
            self.F = _Encoder(cfg, size, ch)
            self.Dlat = MLP(cfg.latent_dim, 1, hidden=(256, 256), sn=True)
        prior_dim = 64 if self.prior_kind == "thumbnail" else 2048
        self.register_buffer("centroids", torch.zeros(cfg.num_prototypes, prior_dim))
        self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self._opts = {
            "P": torch.optim.Adam([self.P], **adam),
            "G": torch.optim.Adam(list(self.G1.parameters()) + list(self.G2.parameters()), **adam),
            "D": torch.optim.Adam(list(self.Dprt.parameters()) + list(self.Dclass.parameters()) +
                                  (list(self.Dlat.parameters()) if cfg.cluster_alignment else []), **adam),
            "C": torch.optim.SGD(self.C.parameters(), lr=cfg.c_lr, momentum=cfg.c_momentum),
        }
        if cfg.cluster_alignment:
            self._opts["F"] = torch.optim.Adam(self.F.parameters(), **adam)

    # ------------------------------------------------------------------ contract
    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G1", "G2"]

    truncation_note = ("its latent is G1(z) on the unit sphere, whose class modes are the prototypes; "
                       "`generate interp --prototype K` walks towards them")

    def noise(self, n, generator=None, device=None):
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=device or self.P.device)

    def latent(self, z, g1=None):
        return F.normalize((g1 or self.G1)(z).float(), dim=1)

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        m = modules or {"G1": self.G1, "G2": self.G2}
        return m["G2"](self.latent(noise, m["G1"]), labels)

    @torch.no_grad()
    def interpolation(self, label: int, steps: int = 8, prototype: int | None = None, prototypes=None,
                      generator=None, modules=None):
        """Fig. 7: images of class `label` along a great-circle path in the latent sphere - from G1's
        latent of one noise vector through prototype P_k to that of another (prototype k; None: the
        prototype nearest the start), `steps` images per segment; or between two prototypes
        (prototypes = (i, j)). Returns (images [N, C, H, W], latents [N, latent_dim])."""
        m = modules or {"G1": self.G1, "G2": self.G2}
        K = self.P.shape[0]
        P = F.normalize(self.P.detach().float(), dim=1)
        t = torch.linspace(0, 1, steps)
        if prototypes is not None:
            i, j = prototypes
            if not (0 <= i < K and 0 <= j < K):
                raise ValueError(f"prototypes {i}, {j}: the model has prototypes 0..{K - 1}")
            path = slerp(P[i].cpu(), P[j].cpu(), t)
        else:
            zs = self.latent(self.noise(2, generator=generator, device="cpu").to(P.device), m["G1"]).cpu()
            k = int((P.cpu() @ zs[0]).argmax()) if prototype is None else prototype
            if not 0 <= k < K:
                raise ValueError(f"prototype {k}: the model has prototypes 0..{K - 1}")
            path = torch.cat([slerp(zs[0], P[k].cpu(), t), slerp(P[k].cpu(), zs[1], t)[1:]])
        if not 0 <= label < self.nc:
            raise ValueError(f"class {label}: the model has classes 0..{self.nc - 1}")
        path = path.to(P.device)
        y = torch.full((path.shape[0],), label, dtype=torch.int64, device=P.device)
        return m["G2"](path, y), path

    # ------------------------------------------------------------------ prior clusters
    @staticmethod
    def _prior_kind(cfg) -> str:
        if cfg.prior_features not in ("auto", "resnet50", "thumbnail"):
            raise ValueError(f"prior_features must be auto, resnet50 or thumbnail, got {cfg.prior_features!r}")
        if cfg.prior_features != "auto":
            return cfg.prior_features
        from ..weights import WeightsError, weights_path
        try:
            weights_path(cfg.prior_weights)
        except (WeightsError, KeyError) as e:
            log.warning("sphericgan: the prior clusters fall back to k-means on 8x8 thumbnails (%s)",
                        str(e).split(": put")[0])
            return "thumbnail"
        return "resnet50"

    def _thumb(self, x):
        """The prior clusters' features of real images in [-1, 1]: 8x8 thumbnails, or L2-normalised
        ResNet-50 features (the network lives outside the module tree: never in checkpoints)."""
        if self.prior_kind == "thumbnail":
            return thumbnail(x)
        net = self.__dict__.get("_prior_net")
        if net is None:
            from ..nn.clip import ResNet50Features
            net = self.__dict__["_prior_net"] = ResNet50Features(self.cfg.prior_weights, self.cfg.prior_feat_size)
        if next(net.parameters()).device != x.device:
            net.to(x.device)
        return F.normalize(net(x).float(), dim=1)

    @property
    def preparation(self):
        what = ("8x8 grayscale thumbnails (the fallback without ResNet-50 weights)" if self.prior_kind == "thumbnail"
                else f"frozen ResNet-50 features ({self.cfg.prior_weights or 'random weights'})")
        return f"prior clusters (k-means on {what} of the real training images)"

    def preparation_info(self):
        return {"prior_clusters": {"features": self.prior_kind, "weights": self.cfg.prior_weights
                                   if self.prior_kind == "resnet50" else None, "k": self.cfg.num_prototypes,
                                   "substitute_for": "IMSAT deep clustering (the SphericGAN paper's ref. [16])"}}

    def preparation_missing(self):
        if self.cfg.cluster_alignment and not bool(self.prior_fitted):
            return ("the prior clusters rho_x (L_align, Eq. 6) are not fitted: the engine fits them with "
                    "prepare(data) before training, a checkpoint restores them")
        return None

    @torch.no_grad()
    def prepare(self, data, seed: int = 0):
        """Prior clusters from up to ``prior_samples`` real images, streamed (thumbnails only are kept)."""
        if not self.cfg.cluster_alignment:
            return
        thumbs = [self._thumb(x.to(self.P.device)).cpu() for x, _ in data.batches("all", self.cfg.prior_samples)]
        if not thumbs:
            raise ValueError("sphericgan: no readable real image to fit the prior clusters on")
        self._fit_thumbs(torch.cat(thumbs), seed)

    @torch.no_grad()
    def fit_prior(self, images: torch.Tensor, seed: int = 0):
        """k-means (K clusters) on the prior features of real images in [-1, 1] (in memory)."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(images.shape[0], generator=g)[:self.cfg.prior_samples]
        self._fit_thumbs(self._thumb(images[idx]).cpu(), seed)

    def _fit_thumbs(self, t: torch.Tensor, seed: int):
        from sklearn.cluster import KMeans
        K = self.cfg.num_prototypes
        distinct = torch.unique(t, dim=0).shape[0]
        if distinct < K:
            raise ValueError(f"sphericgan: {K} prior clusters need >= {K} distinct real images, got {distinct} "
                             f"(of {t.shape[0]}); lower model.num_prototypes")
        km = KMeans(K, n_init=3, random_state=seed).fit(t.double().numpy())
        self.centroids.copy_(torch.from_numpy(km.cluster_centers_).float())
        self.prior_fitted.fill_(True)
        sizes = np.bincount(km.labels_, minlength=K)
        log.info("sphericgan: %d prior clusters fitted on %d images (sizes %d-%d)", K, t.shape[0], sizes.min(),
                 sizes.max())

    def prior_of(self, x):
        return torch.cdist(self._thumb(x), self.centroids).argmin(1)

    # ------------------------------------------------------------------ training
    def train_step(self, batch, step, amp=None):
        """One iteration (Sec. 3): P (Eq. 2), the discriminators (Eq. 3, 4, 6, 7), G and F (Eq. 4-9), C (Eq. 8)."""
        self.require_prepared()
        amp = amp or FP32
        s = self._draw(batch, amp)
        losses = self._p_phase(s, amp) if self.cfg.latent_clustering else {}
        if self.cfg.cluster_alignment and self.cfg.update_order == "algorithm1":
            losses.update(self._f_phase(s, amp))
        losses.update(self._d_phase(s, amp))
        lg, xz = self._g_phase(s, amp)
        losses.update(lg)
        losses.update(self._c_phase(s, xz, amp))
        return losses

    def _draw(self, batch, amp):
        """The iteration's noise z, labels y_z, C's pseudo-labels of x_u and the prior clusters of x."""
        dev = self.P.device
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        x = torch.cat([x_l, x_u])
        z = self.noise(x.shape[0])
        y_z = torch.randint(0, self.nc, (x.shape[0],), device=dev)
        if self.cfg.ms_weight:  # the mode-seeking pairs (i, i + B // 2) share their class
            share_pair_classes(y_z)
        with torch.no_grad(), amp.ctx():
            y_x = torch.cat([y_l, self.C(x_u).argmax(1)]) if x_u.shape[0] else y_l
            rho = self.prior_of(x) if self.cfg.cluster_alignment else None
        return SimpleNamespace(x_l=x_l, y_l=y_l, x_u=x_u, x=x, z=z, y_z=y_z, y_x=y_x, rho=rho)

    def _p_phase(self, s, amp):
        """L_clust (Eq. 2) on the latents of G1 (held fixed)."""
        loss = clustering_loss(self.latent(s.z).detach(), self.P, 1.0, self.cfg.lam)
        self._optimize(amp, loss, "P")
        return {"P/clust": loss.detach()}

    def _d_phase(self, s, amp):
        """D_prt and D_class (Eq. 7), D_prt's latent evaluation (Eq. 3), D_lat (Eq. 4), L_align (Eq. 6)."""
        cfg = self.cfg
        with torch.no_grad(), amp.ctx():
            zc = self.latent(s.z)
            xz = self.G2(zc, s.y_z)
            if cfg.cluster_alignment:
                zx = self.F(s.x)
                xr = self.G2(zx, s.y_x)
        with amp.ctx():
            idt_r, pr = self.Dprt(s.x)  # pr: D_prt's clusters of x for Eq. 6 (one pass over x)
            idt_f, pf = self.Dprt(xz)
            ld = {"D/prt_adv": real_loss(idt_r) + fake_loss(idt_f)}  # Eq. 7, D_prt
            if s.x_l.shape[0]:
                ld["D/class_adv"] = real_loss(self.Dclass(s.x_l, s.y_l)[0]) + fake_loss(self.Dclass(xz, s.y_z)[0])
            if cfg.latent_clustering:
                target = cosine_softmax(zc, self.P.detach()).argmax(1)  # one-hot(phi(z°)), Eq. 1
                ld["D/lat_eval"] = _nll(pf, target)  # Eq. 3
            if cfg.cluster_alignment:
                ld["D/lat_adv"] = real_loss(self.Dlat(zc).squeeze(1)) + fake_loss(self.Dlat(zx).squeeze(1))  # Eq. 4
                _, prr = self.Dprt(xr)
                ld["D/align"] = _nll(pr, s.rho) + _nll(prr, s.rho)  # Eq. 6
            loss_d = sum(ld.values())
        self._optimize(amp, loss_d, "D")
        return {k: v.detach() for k, v in ld.items()}

    def _g_phase(self, s, amp):
        """G1 + G2: Eq. 7 adversarial, Eq. 8 verification (mu), Eq. 3 / 9 latent evaluation; with cluster
        alignment G1's and F's sides of Eq. 4, L_align (Eq. 6) and F's consistency (Eq. 5). Returns the losses
        and G's images (C's phase fits them, Eq. 8)."""
        cfg = self.cfg
        with amp.ctx():
            zc = self.latent(s.z)
            xz = self.G2(zc, s.y_z)
            idt_f, pf = self.Dprt(xz)
            lg = {"G/adv": real_loss(idt_f) + real_loss(self.Dclass(xz, s.y_z)[0])}  # Eq. 7
            if cfg.semantic_verification:
                lg["G/verify"] = cfg.mu * F.cross_entropy(self.C(xz).float(), s.y_z)  # Eq. 8, mu term
            if cfg.ms_weight and xz.shape[0] >= 2:  # on the noise z, not z°: G1 cannot shrink it
                lg["G/mode_seek"] = mode_seeking(xz, s.z, cfg.ms_weight)  # MSGAN Eq. 3 (1 / ratio, as its code)
            if cfg.latent_clustering and cfg.g_eval:
                lg["G/lat_eval"] = _nll(pf, cosine_softmax(zc, self.P.detach()).argmax(1))  # Eq. 3 / 9
            joint = cfg.update_order == "joint"
            lf = {}
            if cfg.cluster_alignment and joint:
                g_terms, lf = self._f_terms(s, zc)
                lg.update(g_terms)
            elif cfg.cluster_alignment:
                lg.update(self._g_align_terms(s, zc))
            loss_g = sum(lg.values())
        if cfg.cluster_alignment and joint:  # G's and F's losses share the graph of x_r: G's gradients first,
            self._optimize(amp, loss_g, "G", step=False, retain_graph=True)  # F's update, then G's step
            self._optimize(amp, sum(lf.values()), "F")
            self._optimize(amp, None, "G")
        else:
            self._optimize(amp, loss_g, "G")
        return {k: v.detach() for k, v in {**lg, **lf}.items()}, xz

    def _f_phase(self, s, amp):
        """Algorithm 1, line 8: F's own step on L_lat^adv (Eq. 4), L_align (Eq. 6) and nu L_cons (Eq. 5),
        before the discriminators."""
        with amp.ctx():
            with torch.no_grad():
                zc = self.latent(s.z)
            lf = self._f_terms(s, zc)[1]
            loss_f = sum(lf.values())
        self._optimize(amp, loss_f, "F")
        return {k: v.detach() for k, v in lf.items()}

    def _g_align_terms(self, s, zc):
        """G1's side of Eq. 4 and G2's of Eq. 6 with F fixed (Algorithm 1, line 10)."""
        with torch.no_grad():
            zx = self.F(s.x)
        return {"G/lat_adv": fake_loss(self.Dlat(zc).squeeze(1)),  # Eq. 4, G1 side (non-saturating)
                "G/align": _nll(self.Dprt(self.G2(zx, s.y_x))[1], s.rho)}  # Eq. 6, synthesized part

    def _f_terms(self, s, zc):
        """Eq. 4-6: (G1's terms, F's terms); one graph through F and G2 serves both."""
        zx = self.F(s.x)
        xr = self.G2(zx, s.y_x)
        g_terms = {"G/lat_adv": fake_loss(self.Dlat(zc).squeeze(1))}  # Eq. 4, G1 side (non-saturating)
        lf = {"F/lat_adv": real_loss(self.Dlat(zx).squeeze(1))}  # Eq. 4, F side
        l_align = _nll(self.Dprt(xr)[1], s.rho)  # Eq. 6, synthesized part
        g_terms["G/align"] = l_align
        lf["F/align"] = l_align
        lf["F/cons"] = self.cfg.nu * (zx - self.F(xr).float()).abs().sum(1).mean()  # Eq. 5
        return g_terms, lf

    def _c_phase(self, s, xz, amp):
        """C (SGD), Eq. 8: cross-entropy on labeled data, entropy on unlabeled, mu x CE on G's pairs (xz, s.y_z)."""
        with amp.ctx():
            lc = {}
            if s.x_l.shape[0]:
                lc["C/labeled"] = F.cross_entropy(self.C(s.x_l).float(), s.y_l)
            if s.x_u.shape[0]:
                p = torch.softmax(self.C(s.x_u).float(), 1)
                lc["C/entropy"] = -(p * torch.log(p.clamp_min(1e-12))).sum(1).mean()
            w = self.cfg.mu if self.cfg.c_fake_weight is None else self.cfg.c_fake_weight
            if w:
                lc["C/fake"] = w * F.cross_entropy(self.C(xz.detach()).float(), s.y_z)  # Eq. 8, mu term
            loss_c = sum(lc.values())
        self._optimize(amp, loss_c, "C")
        return {k: v.detach() for k, v in lc.items()}

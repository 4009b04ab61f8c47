"""LCP-GAN ("Exploring Intra-class Variation Factors with Learnable Cluster Prompts for Semi-supervised
Image Synthesis", Zhang et al.): learnable cluster prompts for semi-supervised class-conditional
synthesis.

Networks: G (base `biggan`: the engine's BigGAN-style ResNet generator, its conditional-BN input is
the cluster-label embedding blend of Eq. 4; base `stylegan2`: a StyleGAN2-style mapping network +
modulated-conv synthesis, models/stylegan2.py), D_class (conditional on the class label, Eq. 9:
base `biggan` the spectral-norm projection ResNet D; base `stylegan2` StyleGAN2-ADA's residual D
with minibatch std and the cmap projection, regularised by the lazy R1 penalty
r1_gamma / 2 * E||grad D(x_real)||^2 every r1_every steps, on the augmented reals with ADA), D_prompt
(Eq. 6-7: a frozen CLIP's image / text towers, learnable context vectors per cluster, light-weight
mappings h_img, h_txt and the unconditional weight w_unc), C (classifier, Eq. 10), f (a frozen
ImageNet ResNet-50 for the intra-class clusters).

More: docs/modules.md, section ssgan_fast.models.lcpgan.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import ResNetClassifier, ResNetDiscriminator, ResNetGenerator, thumbnail
from ..nn.clip import FrozenCLIP, ResNet50Classifier, ResNet50Features
from ..ops import cosine_softmax, group_offsets, prototype_ema_update
from .base import (
    FP32,
    GANModel,
    fake_loss,
    mode_seeking,
    real_loss,
    register,
    share_pair_classes,
    triple_c_adversarial,
    uncompiled,
)

log = logging.getLogger(__name__)


@dataclass
class LCPGANConfig:
    base: str = "biggan"  # biggan | stylegan2
    z_dim: int = 120
    ch: int = 64  # width of G, D_class
    c_ch: int = 32  # width of C (c_net: small)
    c_net: str = "small"  # small (the engine's ResNet classifier) | resnet50 (the paper's C, Sec. 4.1)
    c_weights: str = ""  # c_net resnet50: registry weights to start from ('resnet50-imagenet'); '' = scratch
    emb_dim: int = 128  # cluster label embedding E
    w_dim: int = 256  # stylegan2: mapping network width / style size
    map_layers: int = 4  # stylegan2: mapping network depth (8 in StyleGAN2; 2 for the small presets)
    ada: bool = False  # stylegan2 base: ADA-style differentiable augmentation of D's inputs
    ada_target: float = 0.6  # ADA: target sign(D(real)) mean
    # R1 weight; < 0: StyleGAN2-ADA's heuristic 0.0002 res^2 / batch on the stylegan2 base, off on biggan
    r1_gamma: float = -1.0
    r1_every: int = 16  # lazy R1: every r1_every D steps, scaled by r1_every
    # stylegan2: style-mixing probability; < 0: StyleGAN2-ADA's 0.9, 0 below 64 px (its cifar config)
    style_mix: float = -1.0
    # stylegan2: path-length penalty weight; < 0: StyleGAN2's 2, 0 below 64 px (ADA's cifar config)
    pl_weight: float = -1.0
    pl_every: int = 4  # lazy path-length penalty: every pl_every G steps, scaled by pl_every
    pl_shrink: int = 2  # the penalty runs on batch / pl_shrink rows
    pl_decay: float = 0.01  # moving average of the path lengths (the penalty's target a)
    attn_res: int = 0
    max_clusters: int = 3  # up to 3 clusters per class (Sec. 4.1)
    merge_cos: float = 0.8  # merge clusters whose prototypes have cosine > 0.8
    delta: float = 0.1  # Eq. 3 temperature
    proto_momentum: float = 0.05  # mu of Eq. 2
    kmeans_rounds: int = 5  # soft k-means rounds after the hard initialisation
    # the images clustered per class (Sec. 3.2): all = labeled with their labels and unlabeled with
    # one-hot(C(x)) (Eq. 1; C first trained c_warmup steps on the labeled images); labeled = those only
    cluster_images: str = "all"
    c_warmup: int = 500  # cluster_images all: C's steps on the labeled images before it labels the rest
    feat_net: str = "resnet50"  # resnet50 (the paper) | thumbnail (8x8 grayscale, for tiny data like digits)
    feat_center: bool = False  # subtract the labeled images' mean feature before the cosines
    feat_weights: str = ""  # registry name of the ResNet-50 weights ('resnet50-imagenet'); '' = random
    feat_size: int = 224
    clip_arch: str = "ViT-B-32"  # open_clip architecture, or 'tiny' (random, for tests / CPU demos)
    clip_weights: str = ""  # registry name ('clip-vit-b32-openai'); '' = random weights
    n_ctx: int = 4  # context vectors per cluster (Sec. 4.1)
    ctx_std: float = 0.02  # their N(0, 0.02) initialisation
    head_dim: int = 256  # h_img / h_txt output size
    lam: float = 1.0  # lambda of Eq. 11
    clip_tau: float = 0.07  # temperature of L_CLIP
    prompt_d: bool = True
    clusters: bool = True
    learn_prompts: bool = True
    clip_loss: bool = False
    # Table 2's rows: scheme lcp = Eq. 9-11 (D_class takes every real image with its Eq. 1 label as real);
    # triple = the Semi-BigGAN baseline's Triple-GAN scheme (Sec. 4.1): D_class takes the labeled pairs as
    # real, G's pairs (weight 1 - triple_alpha) and C's pairs (x_u, y ~ p_c; weight triple_alpha) as fake,
    # and C also makes its pairs look real. d_clusters: D_class conditioned on the cluster memberships
    # (real: Eq. 3's u_x, fake: u_z) in place of the class ("Semi-BigGAN+Clusters", Sec. 4.4)
    scheme: str = "lcp"
    triple_alpha: float = 0.5
    d_clusters: bool = False
    # MSGAN mode seeking (models.base.mode_seeking) on pairs of G's batch with one class, against
    # within-class collapse; not in the paper (0 = off)
    ms_weight: float = 0.0
    lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    c_lr: float = 2e-4


class _Mapping(nn.Module):
    """A light-weight mapping (h_img / h_txt): Linear - LeakyReLU - Linear."""

    def __init__(self, din, dout):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(din, dout), nn.LeakyReLU(0.2), nn.Linear(dout, dout))

    def forward(self, x):
        return self.net(x.float())


class DPrompt(nn.Module):
    """D_prompt (Eq. 6-7) on top of a frozen CLIP: logit = (w_y + w_unc) . h_img(E_img(x)),
    w_y = sum_i u^(i) h_txt(E_txt(t_{y,i})). Owns the learnable context vectors of every cluster slot."""

    def __init__(self, clip: FrozenCLIP, slots: int, n_ctx: int, ctx_std: float, head_dim: int):
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(slots, n_ctx, clip.width) * ctx_std)  # Eq. 5 context vectors
        self.h_img = _Mapping(clip.embed_dim, head_dim)
        self.h_txt = _Mapping(clip.embed_dim, head_dim)
        self.w_unc = nn.Parameter(torch.zeros(head_dim))

    def forward(self, img_feat, txt_feat, u):
        """img_feat [B, e] = E_img(x); txt_feat [K, e] = E_txt(t) of the cluster slots; u [B, K]
        memberships (zero outside the row's class)."""
        w = u.float() @ self.h_txt(txt_feat)  # Eq. 6
        return ((w + self.w_unc) * self.h_img(img_feat)).sum(1)  # Eq. 7 (a logit; the sigmoid is in the loss)


class _BigGANBase:
    """The BigGAN base (Sec. 4.1): ResNet G with the blended cluster embedding, projection D_class; no
    R1 unless r1_gamma > 0, no style mixing, no path-length penalty, no augmentation."""
    r1_by_default = False

    def generator(self, cfg, slots, size, ch):
        return ResNetGenerator(cfg.z_dim, slots, size, cfg.ch, ch, emb_dim=cfg.emb_dim, attn_res=cfg.attn_res)

    def discriminator(self, cfg, nc, size, ch):
        return ResNetDiscriminator(nc, size, cfg.ch, ch, attn_res=cfg.attn_res)

    def style_mix(self, cfg, size):
        return 0.0

    def pl_weight(self, cfg, size):
        return 0.0

    def augment(self, cfg):
        return None


class _StyleGAN2Base:
    """The StyleGAN2 base (Sec. 4.4): mapping + modulated synthesis with the blended embedding, its D;
    StyleGAN2-ADA's defaults where the settings are < 0 (lazy R1, style mixing 0.9 and path-length
    weight 2 from 64 px), ADA-style augmentation with ada=true."""
    r1_by_default = True

    def generator(self, cfg, slots, size, ch):
        from .stylegan2 import StyleGenerator
        return StyleGenerator(cfg.z_dim, slots, size, cfg.ch, ch, emb_dim=cfg.emb_dim, w_dim=cfg.w_dim,
                              map_layers=cfg.map_layers)

    def discriminator(self, cfg, nc, size, ch):
        from .stylegan2 import StyleDiscriminator
        return StyleDiscriminator(nc, size, cfg.ch, ch, map_layers=cfg.map_layers)

    def style_mix(self, cfg, size):
        return cfg.style_mix if cfg.style_mix >= 0 else 0.9 * (size >= 64)

    def pl_weight(self, cfg, size):
        return cfg.pl_weight if cfg.pl_weight >= 0 else 2.0 * (size >= 64)

    def augment(self, cfg):
        if not cfg.ada:
            return None
        from .stylegan2 import ADAugment
        return ADAugment(cfg.ada_target)


BASES = {"biggan": _BigGANBase, "stylegan2": _StyleGAN2Base}


@register("lcpgan")
class LCPGAN(GANModel):
    Config = LCPGANConfig

    def __init__(self, cfg: LCPGANConfig, info: dict):
        super().__init__(cfg, info)
        if info["kind"] != "image":
            raise ValueError("lcpgan trains on images")
        if cfg.base not in BASES:
            raise ValueError(f"base must be one of {sorted(BASES)}, got {cfg.base!r}")
        if not 1 <= cfg.max_clusters <= 16:
            raise ValueError(f"max_clusters must be in 1..16, got {cfg.max_clusters}")
        if cfg.cluster_images not in ("all", "labeled"):
            raise ValueError(f"cluster_images must be 'all' or 'labeled', got {cfg.cluster_images!r}")
        if cfg.scheme not in ("lcp", "triple") or not 0 <= cfg.triple_alpha <= 1:
            raise ValueError(f"need scheme 'lcp' or 'triple' and triple_alpha in [0, 1], got {cfg.scheme!r}, "
                             f"{cfg.triple_alpha}")
        if not cfg.ms_weight >= 0:
            raise ValueError(f"ms_weight must be >= 0, got {cfg.ms_weight}")
        if cfg.d_clusters and not cfg.clusters:
            raise ValueError("d_clusters conditions D_class on the clusters: it needs clusters=true")
        if cfg.c_warmup < 0:
            raise ValueError(f"c_warmup must be >= 0, got {cfg.c_warmup}")
        if not -1 <= cfg.merge_cos <= 1 or not cfg.delta > 0 or not 0 <= cfg.proto_momentum <= 1:
            raise ValueError("need merge_cos in [-1, 1], delta > 0 and proto_momentum in [0, 1]")
        size, ch, nc = info["size"], info["channels"], info["num_classes"]
        self.nc = nc
        self.kmax = cfg.max_clusters if cfg.clusters else 1
        slots = self.kmax * nc
        names = list(info.get("class_names") or [str(i) for i in range(nc)])
        if len(names) != nc:
            raise ValueError(f"{len(names)} class names for {nc} classes")
        self.class_names = names
        self.base = base = BASES[cfg.base]()
        self.G = base.generator(cfg, slots, size, ch)
        self.Dclass = base.discriminator(cfg, slots if cfg.d_clusters else nc, size, ch)
        if cfg.r1_every < 1:
            raise ValueError(f"r1_every must be >= 1, got {cfg.r1_every}")
        self.r1 = cfg.r1_gamma > 0 or (cfg.r1_gamma < 0 and base.r1_by_default)
        self.size = size
        self.style_mix, self.pl_weight = base.style_mix(cfg, size), base.pl_weight(cfg, size)
        if not 0 <= self.style_mix <= 1:
            raise ValueError(f"style_mix must be in [0, 1] (or < 0 for the default), got {cfg.style_mix}")
        if cfg.pl_every < 1 or cfg.pl_shrink < 1 or not 0 < cfg.pl_decay <= 1:
            raise ValueError("need pl_every >= 1, pl_shrink >= 1 and pl_decay in (0, 1]")
        if self.pl_weight > 0:
            self.register_buffer("pl_mean", torch.zeros(()))
        if cfg.c_net == "small":
            self.C = ResNetClassifier(nc, size, cfg.c_ch, ch)
        elif cfg.c_net == "resnet50":
            self.C = ResNet50Classifier(nc, cfg.c_weights)
        else:
            raise ValueError(f"c_net must be 'small' or 'resnet50', got {cfg.c_net!r}")
        if cfg.feat_net == "resnet50":
            self.fnet = ResNet50Features(cfg.feat_weights, cfg.feat_size)
        elif cfg.feat_net == "thumbnail":
            self.fnet = Thumbnail()
        else:
            raise ValueError(f"feat_net must be 'resnet50' or 'thumbnail', got {cfg.feat_net!r}")
        self.register_buffer("protos", torch.zeros(slots, self.fnet.dim))
        self.register_buffer("feat_mean", torch.zeros(self.fnet.dim))
        self.register_buffer("counts", torch.zeros(nc, dtype=torch.int64))
        self._layout = None
        need_clip = cfg.prompt_d or cfg.clip_loss
        if need_clip:
            self.clip = FrozenCLIP(cfg.clip_arch, cfg.clip_weights)
        if cfg.prompt_d:
            self.Dprompt = DPrompt(self.clip, slots, cfg.n_ctx, cfg.ctx_std, cfg.head_dim)
            self.Dprompt.ctx.requires_grad_(cfg.learn_prompts)
            self.register_buffer("prompt_ids", self.clip.prompt_ids(names, cfg.n_ctx), persistent=False)  # [nc, L]
        if cfg.clip_loss:
            self.register_buffer("class_ids", self.clip.text_ids([f"a photo of a {n}." for n in names]),
                                 persistent=False)
        ada = base.augment(cfg)
        if ada is not None:
            self.ada = ada
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        d_params = list(self.Dclass.parameters())
        if cfg.prompt_d:
            d_params += [p for p in self.Dprompt.parameters() if p.requires_grad]
        self._opts = {"G": torch.optim.Adam(self.G.parameters(), **adam), "D": torch.optim.Adam(d_params, **adam),
                      "C": torch.optim.Adam(self.C.parameters(), lr=cfg.c_lr, betas=(cfg.beta1, cfg.beta2))}

    # ------------------------------------------------------------------ contract
    def optimizers(self):
        return self._opts

    def generator_modules(self):
        return ["G"]

    def graph_key(self, step):
        return self._r1_due(step), self._pl_due(step)

    def _r1_due(self, step) -> bool:
        return self.r1 and step % self.cfg.r1_every == 0

    def _pl_due(self, step) -> bool:
        return self.pl_weight > 0 and step % self.cfg.pl_every == 0

    def _pl(self, noise, y, amp):
        """Lazy path-length penalty (StyleGAN2 Sec. 5, as StyleGAN2-ADA's loss): on batch / pl_shrink rows,
        J_w^T n for image-space noise n / sqrt(HW), lengths |J_w^T n| (squares summed over w, averaged
        over the ws), a = moving average of the mean length (decay pl_decay), penalty
        pl_weight * E(length - a)^2 * pl_every."""
        from .stylegan2 import path_lengths
        n = max(1, noise.shape[0] // self.cfg.pl_shrink)
        noise, y = noise[:n], y[:n]
        z, e = noise[:, :self.cfg.z_dim], noise[:, self.cfg.z_dim:]
        G = self.G  # mapping_ws / synthesis bypass the compiled __call__ of --compile (double backward)
        pl_noise = torch.randn(n, self.info["channels"], self.size, self.size, device=noise.device)
        with amp.ctx():
            ws = G.mapping_ws(z, emb=self._blend_emb(self.blend(e, y), G), mix=self.style_mix)
            lengths = path_lengths(G, ws, pl_noise / self.size)  # n / sqrt(H W)
        a = self.pl_mean.lerp(lengths.mean(), self.cfg.pl_decay)
        self.pl_mean.copy_(a.detach())
        return (lengths - a).pow(2).mean() * self.pl_weight * self.cfg.pl_every

    def _r1(self, xr, y, u, amp):
        """Lazy R1 (StyleGAN2): gamma / 2 * E||grad_x D(x_real)||^2 * r1_every, D run uncompiled (double
        backward)."""
        g = self.cfg.r1_gamma if self.cfg.r1_gamma > 0 else 0.0002 * self.size ** 2 / xr.shape[0]
        x = xr.detach().float().requires_grad_(True)
        with amp.ctx():
            out = self._dcls(x, y, u, uncompiled(self.Dclass)).float()
        grad, = torch.autograd.grad(out.sum(), x, create_graph=True)
        return g / 2 * grad.float().pow(2).sum((1, 2, 3)).mean() * self.cfg.r1_every

    def noise(self, n, generator=None, device=None):
        """(z [n, z_dim], e [n, slots] ~ Exp(1)): e restricted to a class's clusters and normalised is
        u_z, uniform on that class's simplex."""
        dev = device or self.protos.device
        z = torch.randn(n, self.cfg.z_dim, generator=generator, device=dev)
        e = torch.empty(n, self.protos.shape[0], device=dev).exponential_(generator=generator)
        return torch.cat([z, e], 1)

    def truncate(self, noise, psi):
        """psi z on the Gaussian part (its mean latent is 0); the cluster-mixing weights e are kept."""
        z, e = noise[:, :self.cfg.z_dim], noise[:, self.cfg.z_dim:]
        return torch.cat([z * psi, e], 1)

    def _frozen_prefixes(self):
        return ("fnet.", "clip.")

    def state_dict(self, *a, **k):
        """The frozen ResNet-50 / CLIP weights come from the registry, not from checkpoints."""
        sd = super().state_dict(*a, **k)
        prefix = k.get("prefix", a[1] if len(a) > 1 else "")
        for key in [key for key in sd if key[len(prefix):].startswith(self._frozen_prefixes())]:
            del sd[key]
        return sd

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        full = dict(state_dict)
        for key, v in super().state_dict().items():
            if key.startswith(self._frozen_prefixes()):
                full.setdefault(key, v)
        out = super().load_state_dict(full, strict=strict, assign=assign)
        self._layout = None
        return out

    # ------------------------------------------------------------------ cluster layout
    def layout(self):
        """(offsets [nc + 1] int64, K = total clusters) from the per-class counts (cached)."""
        return self._cached_layout()[:2]

    def cluster_class(self):
        """[K] the class of each cluster row."""
        return self._cached_layout()[2]

    def _cached_layout(self):
        if self._layout is None or self._layout[0].device != self.counts.device:
            self.require_prepared()  # the layout needs fitted per-class cluster counts
            off = group_offsets(self.counts.cpu()).to(self.counts.device)
            row_class = torch.repeat_interleave(torch.arange(self.nc, device=off.device), self.counts)
            self._layout = (off, int(off[-1]), row_class)
        return self._layout

    @torch.no_grad()
    def features(self, x):
        """f(x) of Eq. 2-3 (minus the labeled mean with feat_center)."""
        return self.fnet(x).float() - self.feat_mean

    def memberships(self, feats, y):
        """u [B, K] (Eq. 3): cosine softmax over the clusters of each row's class, zero elsewhere."""
        off, K = self.layout()
        return cosine_softmax(feats.float(), self.protos[:K], self.cfg.delta, (y, off))

    def blend(self, e, y):
        """u_z [B, K] uniform on each row's class simplex, from the Exp(1) variates e of noise()."""
        off, K = self.layout()
        k = torch.arange(K, device=y.device)
        own = (k[None] >= off[y][:, None]) & (k[None] < off[y + 1][:, None])
        w = e[:, :K] * own
        return w / w.sum(1, keepdim=True)

    @staticmethod
    def _blend_emb(u, G):
        return u.to(G.embed.weight.dtype) @ G.embed.weight[:u.shape[1]]  # Eq. 4: sum_i u_z^(i) E(c_{y,i})

    def _g(self, z_e, y, G=None, u=None, train=False):
        z, e = z_e[:, :self.cfg.z_dim], z_e[:, self.cfg.z_dim:]
        if u is None:
            u = self.blend(e, y)
        G = G or self.G
        kw = {"mix": self.style_mix} if train and self.style_mix > 0 else {}
        return G(z, emb=self._blend_emb(u, G), **kw), u

    @torch.no_grad()
    def sample(self, labels, noise, modules=None):
        return self._g(noise, labels, (modules or {"G": self.G})["G"])[0]

    @torch.no_grad()
    def interpolate(self, z, y, a, b, steps: int = 8):
        """Figure 5: images from one latent z [z_dim] along the path between clusters a and b (indices
        within class y) of the blended embeddings."""
        off, K = self.layout()
        k = int(self.counts[y])
        if not (0 <= a < k and 0 <= b < k):
            raise ValueError(f"class {y} has {k} cluster(s); got a={a}, b={b}")
        t = torch.linspace(0, 1, steps, device=self.protos.device)
        u = torch.zeros(steps, K, device=t.device)
        u[:, int(off[y]) + a] += 1 - t
        u[:, int(off[y]) + b] += t
        noise = torch.cat([z.expand(steps, -1), torch.ones(steps, self.protos.shape[0], device=t.device)], 1)
        return self._g(noise, torch.full((steps,), y, device=t.device), u=u)[0]

    @property
    def preparation(self):
        if self.cfg.cluster_images == "labeled":
            return "intra-class clusters (features of the labeled images)"
        return (f"intra-class clusters (features of all images; the unlabeled ones labeled by C (Eq. 1) after "
                f"{self.cfg.c_warmup} warm-up steps on the labeled images)")

    def preparation_info(self):
        return {"clusters": dict(self._prep_info)} if getattr(self, "_prep_info", None) else {}

    def preparation_missing(self):
        if not bool((self.counts > 0).all()):
            return ("the intra-class clusters (Sec. 3.2) are not fitted: the engine fits them with prepare(data) "
                    "before training, a checkpoint restores them")
        return None

    def prepare(self, data, seed: int = 0):
        """Intra-class clusters (Sec. 3.2), streamed: only the features are kept. cluster_images all: C
        learns the labeled images for c_warmup steps, then every image is clustered within its class of
        Eq. 1 (ground truth if labeled, else one-hot(C(x)))."""
        dev = self.protos.device
        feats, labels = [], []
        with torch.no_grad():
            for x, y in data.batches("labeled"):
                feats.append(self.fnet(x.to(dev)).float())
                labels.append(y.to(dev))
        if not feats:
            raise ValueError("lcpgan: no readable labeled image to cluster")
        n_lab = sum(len(y) for y in labels)
        info = {"images": self.cfg.cluster_images, "labeled": n_lab, "unlabeled": 0}
        if self.cfg.cluster_images == "all":
            info["c_warmup_accuracy"] = self._warm_up_c(data, seed)
            was = self.C.training
            self.C.eval()
            with torch.no_grad():
                for x, _ in data.batches("unlabeled"):
                    x = x.to(dev)
                    feats.append(self.fnet(x).float())
                    labels.append(self.C(x).argmax(1))  # Eq. 1: one-hot(C(x)) for an unlabeled image
            self.C.train(was)
            info["unlabeled"] = sum(len(y) for y in labels) - n_lab
        with torch.no_grad():
            self.fit_features(torch.cat(feats), torch.cat(labels), seed)
        self._prep_info = info

    def _warm_up_c(self, data, seed: int) -> float | None:
        """c_warmup Adam steps of C on the labeled images (Eq. 10's labeled term; C's own optimizer),
        cycling through them; returns C's accuracy on them afterwards (%), None without steps."""
        if self.cfg.c_warmup == 0:
            return None
        dev = self.protos.device
        opt, done = self._opts["C"], 0
        self.C.train()
        while done < self.cfg.c_warmup:
            for x, y in data.batches("labeled"):
                x, y = x.to(dev), y.to(dev)
                loss = F.cross_entropy(self.C(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done += 1
                if done == self.cfg.c_warmup:
                    break
        hits = n = 0
        self.C.eval()
        with torch.no_grad():
            for x, y in data.batches("labeled"):
                hits += int((self.C(x.to(dev)).argmax(1) == y.to(dev)).sum())
                n += len(y)
        self.C.train()
        acc = 100.0 * hits / max(1, n)
        log.info("lcpgan: C warmed up for %d steps on the labeled images (%.1f %% of them right) to label the "
                 "unlabeled ones for the clusters (Eq. 1)", self.cfg.c_warmup, acc)
        return acc

    @torch.no_grad()
    def fit_clusters(self, images, labels, seed: int = 0, batch: int = 64):
        """fit_features on the features of labeled images [N, C, H, W] in memory (in batches)."""
        labels = torch.as_tensor(labels).to(images.device)
        if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise ValueError(f"fit_clusters needs labeled images and as many labels, got {images.shape[0]} images and "
                             f"{labels.shape[0]} labels")
        feats = torch.cat([self.fnet(images[i:i + batch].to(self.protos.device))
                           for i in range(0, images.shape[0], batch)]).float()
        self.fit_features(feats, labels, seed)

    @torch.no_grad()
    def fit_features(self, feats, labels, seed: int = 0):
        """Intra-class clustering of the labeled images' features (Sec. 3.2 / 4.1): spherical k-means with
        min(max_clusters, n_y) clusters, `kmeans_rounds` soft rounds (Eq. 3 memberships, weighted
        means), then merging of clusters with prototype cosine > merge_cos."""
        from sklearn.cluster import KMeans
        labels = torch.as_tensor(labels).to(feats.device)
        if feats.shape[0] != labels.shape[0] or feats.shape[0] == 0:
            raise ValueError(f"fit_features needs features and as many labels, got {feats.shape[0]} and "
                             f"{labels.shape[0]}")
        missing = sorted(set(range(self.nc)) - set(labels.tolist()))
        if missing:
            raise ValueError(f"lcpgan: classes without labeled images cannot be clustered: {missing[:10]}")
        self.feat_mean.copy_(feats.mean(0) if self.cfg.feat_center else torch.zeros_like(self.feat_mean))
        fn = F.normalize(feats - self.feat_mean, dim=1)
        rows, counts = [], []
        for c in range(self.nc):
            f = fn[labels.to(fn.device) == c]
            k = min(self.kmax, f.shape[0])
            if k > 1:
                km = KMeans(k, n_init=3, random_state=seed).fit(f.double().cpu().numpy())
                P = F.normalize(torch.from_numpy(km.cluster_centers_).float().to(f.device), dim=1)
                for _ in range(self.cfg.kmeans_rounds):  # soft k-means: memberships of Eq. 3
                    u = torch.softmax(f @ P.T / self.cfg.delta, 1)
                    P = F.normalize((u.T @ f) / u.sum(0)[:, None].clamp_min(1e-12), dim=1)
                mass = torch.softmax(f @ P.T / self.cfg.delta, 1).sum(0)
                P, mass = _merge(P, mass, self.cfg.merge_cos)
            else:
                P = F.normalize(f.mean(0, keepdim=True), dim=1)
            rows.append(P)
            counts.append(P.shape[0])
        P = torch.cat(rows)
        self.protos.zero_()
        self.protos[:P.shape[0]] = P
        self.counts.copy_(torch.tensor(counts))
        self._layout = None
        log.info("lcpgan: %d clusters for %d classes (%s)", P.shape[0], self.nc,
                 ", ".join(f"{k}x{n}" for k, n in sorted(((k, counts.count(k)) for k in set(counts)), reverse=True)))

    # ------------------------------------------------------------------ CLIP terms
    def _text_feats(self, grad: bool):
        K = self.layout()[1]
        ids = self.prompt_ids[self.cluster_class()]  # t_{y,i} = [v_1] .. [v_R] [class name of y] (Eq. 5)
        with torch.set_grad_enabled(grad):
            return self.clip.encode_prompts(self.Dprompt.ctx[:K], ids)

    def _dprompt(self, x, txt, u):
        return self.Dprompt(self.clip.encode_image(x), txt, u)

    # ------------------------------------------------------------------ training
    def _dcls(self, x, y, u, D=None):
        """D_class's logit of images x: on the class y (Eq. 9), or with d_clusters on the memberships u
        [B, K] (padded to every cluster slot)."""
        D = D or self.Dclass
        if self.cfg.d_clusters:
            return D(x, u=F.pad(u.float(), (0, self.protos.shape[0] - u.shape[1])))[0]
        return D(x, y)[0]

    def train_step(self, batch, step, amp=None):
        """One iteration: D_class + D_prompt (Eq. 8-9, 11), C (Eq. 10), G (Eq. 11), the prototypes (Eq. 2)."""
        self.require_prepared()
        amp = amp or FP32
        s = self._draw(batch, amp)
        losses, txt = self._d_phase(s, step, amp)
        losses.update(self._c_phase(s, amp))
        losses.update(self._g_phase(s, txt, step, amp))
        off, K = self.layout()
        prototype_ema_update(self.protos[:K], s.f, s.u_x.float(), self.cfg.proto_momentum)  # Eq. 2
        return losses

    def _draw(self, batch, amp):
        """Noise, labels y_z, C's pseudo-labels (Eq. 1), the real memberships u_x (Eq. 3) and x_z."""
        x_l, y_l, x_u = batch["x_l"], batch["y_l"], batch["x_u"]
        x = torch.cat([x_l, x_u])
        if x.shape[0] == 0:
            raise ValueError("lcpgan: empty batch")
        noise = self.noise(x.shape[0])
        y_z = torch.randint(0, self.nc, (x.shape[0],), device=self.protos.device)
        if self.cfg.ms_weight:
            share_pair_classes(y_z)
        with torch.no_grad(), amp.ctx():
            logit_u = self.C(x_u).float() if x_u.shape[0] else None
            y_u = logit_u.argmax(1) if x_u.shape[0] else y_l[:0]
            y = torch.cat([y_l, y_u])  # Eq. 1
            f = self.features(x)
            u_x = self.memberships(f, y)  # Eq. 3
            x_z, u_z = self._g(noise, y_z, train=True)
        return SimpleNamespace(x_l=x_l, y_l=y_l, x_u=x_u, x=x, noise=noise, y_z=y_z, y=y, f=f, u_x=u_x,
                               x_z=x_z.to(x.dtype), u_z=u_z, aug=getattr(self, "ada", None), txt=None,
                               logit_u=logit_u)

    def _d_phase(self, s, step, amp):
        """D_class (Eq. 9, + lazy R1) and D_prompt with the learnable prompts (Eq. 8, lambda of Eq. 11)."""
        cfg = self.cfg
        with amp.ctx():
            xr, xf = (s.aug(s.x), s.aug(s.x_z)) if s.aug is not None else (s.x, s.x_z)
            if cfg.scheme == "triple":  # Semi-BigGAN: the labeled pairs are real, G's and C's pairs fake
                n, a = s.x_l.shape[0], cfg.triple_alpha if s.x_u.shape[0] else 0.0
                x_u = xr[n:]
                xr, yr, ur = xr[:n], s.y_l, s.u_x[:n]
                out_r = self._dcls(xr, yr, ur)
                ld = {"D/class_real": real_loss(out_r),
                      "D/class_fake": (1 - a) * fake_loss(self._dcls(xf, s.y_z, s.u_z))}
                if s.x_u.shape[0]:
                    y_s = torch.multinomial(torch.softmax(s.logit_u, 1), 1)[:, 0]  # y ~ p_c(y | x_u)
                    u_s = self.memberships(s.f[n:], y_s) if cfg.d_clusters else None
                    ld["D/pseudo_fake"] = a * fake_loss(self._dcls(x_u, y_s, u_s))
            else:
                yr, ur = s.y, s.u_x
                out_r = self._dcls(xr, yr, ur)
                ld = {"D/class_real": real_loss(out_r),  # Eq. 9
                      "D/class_fake": fake_loss(self._dcls(xf, s.y_z, s.u_z))}
            if self._r1_due(step):
                ld["D/r1"] = self._r1(xr, yr, ur, amp)
            txt = None
            if cfg.prompt_d:
                txt = self._text_feats(cfg.learn_prompts)
                ld["D/prompt_real"] = real_loss(self._dprompt(s.x, txt, s.u_x))  # Eq. 8
                ld["D/prompt_fake"] = cfg.lam * fake_loss(self._dprompt(s.x_z, txt, s.u_z))
            loss_d = sum(ld.values())
        self._optimize(amp, loss_d, "D")
        if s.aug is not None:
            s.aug.update(out_r.detach())
        return {k: v.detach() for k, v in ld.items()}, txt

    def _c_phase(self, s, amp):
        """Eq. 10: cross-entropy on labeled data and on G's pairs, entropy on unlabeled data."""
        with amp.ctx():
            lc = {"C/labeled": F.cross_entropy(self.C(s.x_l).float(), s.y_l),
                  "C/fake": F.cross_entropy(self.C(s.x_z).float(), s.y_z)}
            if s.x_u.shape[0]:
                logit = self.C(s.x_u).float()
                p = torch.softmax(logit, 1)
                lc["C/entropy"] = -(p * torch.log(p.clamp_min(1e-12))).sum(1).mean()
                if self.cfg.scheme == "triple":  # Triple-GAN: C makes its pairs look real to D_class
                    lc["C/adv"] = self.cfg.triple_alpha * self._triple_c(s, F.log_softmax(logit, 1))
            loss_c = sum(lc.values())
        self._optimize(amp, loss_c, "C")
        return {k: v.detach() for k, v in lc.items()}

    def _triple_c(self, s, logp):
        """C's adversarial term (models.base.triple_c_adversarial) on D_class: exact up to 16 classes."""
        x_u, f_u = s.x_u, s.f[s.x_l.shape[0]:]

        def d_logits(ys, r):
            xs, fs = (x_u.repeat_interleave(r, 0), f_u.repeat_interleave(r, 0)) if r > 1 else (x_u, f_u)
            return self._dcls(xs, ys, self.memberships(fs, ys) if self.cfg.d_clusters else None)
        return triple_c_adversarial(logp, d_logits, logp.shape[1] <= 16)

    def _g_phase(self, s, txt, step, amp):
        """Eq. 11: D_class, L_label^fake (C), lambda x D_prompt (against D's phase's text features `txt`); the
        L_CLIP baseline (Sec. 4.4); lazy path length."""
        cfg = self.cfg
        with amp.ctx():
            x_g, u_g = self._g(s.noise, s.y_z, train=True)
            xg_d = s.aug(x_g) if s.aug is not None else x_g
            lg = {"G/class": real_loss(self._dcls(xg_d, s.y_z, u_g)),
                  "G/label": F.cross_entropy(self.C(x_g).float(), s.y_z)}  # L_label^fake
            if cfg.prompt_d:
                lg["G/prompt"] = cfg.lam * real_loss(self._dprompt(x_g, txt.detach(), u_g))
            if cfg.clip_loss:  # Sec. 4.4 baseline: the class prompt's CLIP similarity
                with torch.no_grad():
                    t = F.normalize(self.clip.encode_text(self.class_ids).float(), dim=1)
                v = F.normalize(self.clip.encode_image(x_g).float(), dim=1)
                lg["G/clip"] = F.cross_entropy(v @ t.T / cfg.clip_tau, s.y_z)
            if cfg.ms_weight and x_g.shape[0] >= 2:
                lg["G/mode_seek"] = mode_seeking(x_g, s.noise, cfg.ms_weight)
        if self._pl_due(step):
            lg["G/pl"] = self._pl(s.noise, s.y_z, amp)
        self._optimize(amp, sum(lg.values()), "G")
        return {k: v.detach() for k, v in lg.items()}


class Thumbnail(nn.Module):
    """8x8 grayscale thumbnails as features (64-d): for tiny images (digits) where an ImageNet ResNet-50
    has nothing to see."""
    dim = 64

    @torch.no_grad()
    def forward(self, x):
        return thumbnail(x)


def _merge(P, mass, thr):
    """Merge the most similar pair while its cosine exceeds thr (mass-weighted mean, renormalised)."""
    P, mass = P.clone(), mass.clone()
    while P.shape[0] > 1:
        S = P @ P.T
        S.fill_diagonal_(-2)
        i, j = divmod(int(S.argmax()), P.shape[0])
        if float(S[i, j]) <= thr:
            break
        i, j = min(i, j), max(i, j)
        P[i] = F.normalize(mass[i] * P[i] + mass[j] * P[j], dim=0)
        mass[i] = mass[i] + mass[j]
        keep = [r for r in range(P.shape[0]) if r != j]
        P, mass = P[keep], mass[keep]
    return P, mass

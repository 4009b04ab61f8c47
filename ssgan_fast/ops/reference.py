"""Plain-torch definitions of every fused op: the spec that all fast paths are tested against.

Everything here works in any float dtype (float64 in the tests), uses only differentiable torch
ops, and is what ``SSGAN_FAST_BACKEND=ref`` runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# F.normalize semantics: v / max(||v||, NORM_EPS).
NORM_EPS = 1e-12
# cos theta_y is clamped to [-1 + eps, 1 - eps] inside sqrt(1 - cos^2) of the margin.
MARGIN_CLAMP_EPS = 1e-7
# log(mean_b phi) is taken of max(mean_b phi, PBAR_MIN) (a cluster with no mass at all).
PBAR_MIN = 1e-30


def cosine_logits(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """cos(x_b, w_k) for all rows: [B, K]."""
    return F.normalize(x, dim=1, eps=NORM_EPS) @ F.normalize(w, dim=1, eps=NORM_EPS).t()


def group_bounds(labels: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row prototype range [lo, hi) of class labels[b]: offsets[y] .. offsets[y + 1]."""
    return offsets[labels], offsets[labels + 1]


def cosine_softmax(x, protos, tau=1.0, group=None):
    """phi(x)^(k) = softmax_k(cos(x, P_k) / tau)  (SphericGAN Eq. 1; LCP-GAN Eq. 3 with tau = delta).

    group = (labels[B], offsets[C + 1]) restricts row b to prototypes offsets[y_b] .. offsets[y_b + 1]
    (LCP-GAN: each class owns its k_y intra-class clusters); other entries are exactly 0.
    """
    logits = cosine_logits(x, protos) / tau
    if group is not None:
        lo, hi = group_bounds(*group)
        k = torch.arange(protos.shape[0], device=x.device)
        inside = (k[None, :] >= lo[:, None]) & (k[None, :] < hi[:, None])
        logits = logits.masked_fill(~inside, float("-inf"))
    return torch.softmax(logits, dim=1)


def clustering_loss(x, protos, tau=1.0, lam=4.0):
    """SphericGAN Eq. (2): E_z[-phi log phi] - lam * sum_k (1/K) log(mean_b phi_k)."""
    phi = cosine_softmax(x, protos, tau)
    entropy = -torch.special.xlogy(phi, phi).sum(1).mean()
    pbar = phi.mean(0)
    return entropy - lam * torch.log(pbar.clamp_min(PBAR_MIN)).mean()


@torch.no_grad()
def prototype_ema_update(protos, feats, weights, momentum):
    """LCP-GAN Eq. (2) over a batch: rho_k <- (1 - mu) rho_k + mu * sum_n u_nk f_n / sum_n u_nk.

    Prototypes whose batch weight sum is 0 are left unchanged. In place; returns protos.
    """
    w = weights.to(torch.float64)
    sums = w.t() @ feats.to(torch.float64)
    wsum = w.sum(0)
    mean = sums / torch.where(wsum > 0, wsum, torch.ones_like(wsum))[:, None]
    new = (1 - momentum) * protos.to(torch.float64) + momentum * mean
    protos.copy_(torch.where((wsum > 0)[:, None], new, protos.to(torch.float64)).to(protos.dtype))
    return protos


def arcface_margin(cos: torch.Tensor, m: float) -> torch.Tensor:
    """cos(theta + m) for cos = cos(theta), the standard (insightface, non-"easy") ArcFace form.

    Where theta + m would pass pi (cos <= cos(pi - m)) the target logit continues linearly as
    cos - m sin(m) (insightface's `mm` term), so it stays monotone in theta.
    """
    cc = cos.clamp(-1 + MARGIN_CLAMP_EPS, 1 - MARGIN_CLAMP_EPS)
    phi = cc * math.cos(m) - torch.sqrt(1 - cc * cc) * math.sin(m)
    return torch.where(cos > math.cos(math.pi - m), phi, cos - math.sin(math.pi - m) * m)


def aam_logits(x, weight, target, s=30.0, m=0.5):
    """aam-discriminator Eq. (8) logits: s cos theta_j (j != y), s cos(theta_y + m) for the target."""
    cos = cosine_logits(x, weight)
    onehot = F.one_hot(target, weight.shape[0]).to(torch.bool)
    return s * torch.where(onehot, arcface_margin(cos, m), cos)


def aam_cross_entropy(x, weight, target, s=30.0, m=0.5, reduction="mean"):
    """aam-discriminator Eq. (8): softmax cross-entropy of the AAM logits (no bias)."""
    return F.cross_entropy(aam_logits(x, weight, target, s, m), target, reduction=reduction)

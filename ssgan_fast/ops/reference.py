"""Plain-torch definitions of every fused op: the spec that all fast paths are tested against.

Everything here works in any float dtype (float64 in the tests), uses only differentiable torch
ops, and is what ``SSGAN_FAST_BACKEND=ref`` runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# NORM_EPS (F.normalize), MARGIN_CLAMP_EPS (the margin's clamp), PBAR_MIN (Eq. 2's log): csrc/common/shared.h
from .._constants import MARGIN_CLAMP_EPS, NORM_EPS, PBAR_MIN


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


# ---------------------------------------------------------------- op family 3: CutMix + mask embedding

def box_mask(boxes: torch.Tensor, H: int, W: int, dtype=torch.float32) -> torch.Tensor:
    """[B, 1, H, W] mask: 1 inside box (y0, x0, y1, x1) (half-open: y0 <= y < y1, x0 <= x < x1)."""
    b = boxes.long()
    ys = torch.arange(H, device=boxes.device)[None, :]
    xs = torch.arange(W, device=boxes.device)[None, :]
    my = (ys >= b[:, 0:1]) & (ys < b[:, 2:3])
    mx = (xs >= b[:, 1:2]) & (xs < b[:, 3:4])
    return (my[:, :, None] & mx[:, None, :]).unsqueeze(1).to(dtype)


def cutmix(xa: torch.Tensor, xb: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MED-GAN Eq. (1): x_hat = m * xa + (1 - m) * xb with m = 1 inside the box (a selection: no
    arithmetic on the pixel values). Returns (mixed, mask [B, 1, H, W])."""
    mask = box_mask(boxes, xa.shape[2], xa.shape[3], xa.dtype)
    return torch.where(mask.bool(), xa, xb), mask


def nearest_index(n_out: int, n_in: int, device=None) -> torch.Tensor:
    """Source index floor(i * n_in / n_out) of each of n_out destination positions (exact integer
    arithmetic; equals F.interpolate(mode="nearest") whenever one size divides the other)."""
    return torch.arange(n_out, device=device) * n_in // n_out


def resize_nearest(emb: torch.Tensor, H: int, W: int) -> torch.Tensor:
    iy = nearest_index(H, emb.shape[2], emb.device)
    ix = nearest_index(W, emb.shape[3], emb.device)
    return emb[:, :, iy][:, :, :, ix]


def mask_embed(feat: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """MED-GAN Eq. (2): D_f(x, m) = D_f(x) + A_mask(m) * D_f(x), with emb = A_mask(m) [B, 1 or C, h, w]
    resized to the resolution of feat by nearest neighbour."""
    up = resize_nearest(emb.to(feat.dtype), feat.shape[2], feat.shape[3])
    return feat + up * feat


# ---------------------------------------------------------------- op family 4: feature statistics

def feature_stats_moments(x: torch.Tensor, labels: torch.Tensor, shift: torch.Tensor, num_classes: int):
    """Per-class (count [C], sum [C, D], X^T X [C, D, D]) of y = x - shift[label], in float64."""
    x = x.double()
    y = x - shift.double()[labels]
    C, D = num_classes, x.shape[1]
    count = torch.bincount(labels, minlength=C).double()
    s = torch.zeros(C, D, dtype=torch.float64, device=x.device).index_add_(0, labels, y)
    xtx = torch.zeros(C, D, D, dtype=torch.float64, device=x.device)
    for c in torch.unique(labels).tolist():
        yc = y[labels == c]
        xtx[c] = yc.t() @ yc
    return count, s, xtx


# ---------------------------------------------------------------- op family 5: k-nearest neighbours

def sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [M, N] of the rows of a [M, D] and b [N, D], summed from the
    differences themselves (no GEMM + norms cancellation, no square root): the exact values the fast
    paths' tiles approximate. Rows go in chunks of <= 2^24 differences at a time."""
    step = max(1, (1 << 24) // max(1, b.shape[0] * a.shape[1]))
    return torch.cat([(a[i:i + step, None, :] - b[None, :, :]).square().sum(-1) for i in range(0, a.shape[0], step)])


def knn_smallest(x: torch.Tensor, ref: torch.Tensor | None, k: int) -> torch.Tensor:
    """The k smallest squared distances [M, k], ascending, from each row of x to the rows of ref; ref
    None: to the other rows of x (the row itself excluded by index, so a duplicate row is a neighbour
    at 0 - column k - 1 is prdc's k + 1-th value of a row that includes itself)."""
    d = sq_distances(x, x if ref is None else ref)
    if ref is None:
        d.fill_diagonal_(float("inf"))
    return d.topk(k, dim=1, largest=False, sorted=True).values


def knn_radius_count(a: torch.Tensor, b: torch.Tensor, ra2: torch.Tensor, rb2: torch.Tensor,
                     inclusive: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass over the pairs (a_i, b_j) with d_ij the squared distance and ra2 [M] / rb2 [N] squared
    radii: (cnt_a [M] int64 = #{j : d_ij < rb2_j}, cnt_b [N] int64 = #{i : d_ij < ra2_i},
    nn_a [M] = min_j d_ij); inclusive: <= instead of <."""
    d = sq_distances(a, b)
    inside = torch.le if inclusive else torch.lt
    return inside(d, rb2[None, :]).sum(1), inside(d, ra2[:, None]).sum(0), d.min(1).values

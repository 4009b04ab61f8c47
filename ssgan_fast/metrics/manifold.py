"""Precision / recall (Kynkäänniemi et al. 2019, k = 3) and density / coverage (Naeem et al. 2020, k = 5)
on feature sets, from the k-NN op family (``ssgan_fast.ops.knn``: tiles, never an N x M matrix).

With r_k(x) the distance from a real (or generated) feature to its k-th nearest neighbour in its own set
(the point itself excluded), and d the distance between a real and a generated feature:
- precision = share of generated features inside some real ball B(real_i, r_k(real_i));
- recall = share of real features inside some generated ball B(fake_j, r_k(fake_j));
- density = (1 / (k M)) sum_j #{i : fake_j inside B(real_i, r_k(real_i))};
- coverage = share of real features whose nearest generated feature is inside their own ball.
"Inside" is prdc's strict d < r (``inclusive=False``, the default); stylegan2-ada-pytorch's ``pr50k3``
uses d <= r (``inclusive=True``). The two differ only for points exactly on a radius. The distances are
formed as GEMM + norms in float32: a pair within ``TIE_RTOL`` x (|a|^2 + |b|^2) of a radius may fall on
either side of it (the stated tie tolerance).

Work: one k-NN search per side (P/R and D/C radii both from one search with k = max(k_pr, k_dc); on CPU
a self search computes half the tile pairs) and one real x generated pass per distinct k.
Memory: the two feature sets (float32 on the host: 400 MB per side at 50 000 x 2048; ``feature_dtype``
float16 halves it) plus the op's tiles (4 MB on CPU) and O(N k) - never N x M.
"""
from __future__ import annotations

import torch

from ..ops import knn_radius_count, knn_smallest
from .kid import check_features

__all__ = ["manifold_metrics", "precision_recall", "density_coverage", "manifold_memory_bytes"]


def _features(t, name: str, dtype) -> torch.Tensor:
    t = check_features(t, name)
    return t.to(dtype) if dtype is not None else t


def manifold_metrics(real, fake, k_pr: int | None = 3, k_dc: int | None = 5, inclusive: bool = False,
                     feature_dtype=None, device=None) -> dict:
    """{"precision", "recall"} (k_pr) and {"density", "coverage"} (k_dc) of feature sets real [N, dim]
    and fake [M, dim]; k None skips that pair. ``feature_dtype`` (e.g. torch.float16) rounds the features
    before the search (they are still computed in float32); ``device`` moves them (CUDA: the Triton / CUDA
    kernels)."""
    if k_pr is None and k_dc is None:
        raise ValueError("nothing to compute: k_pr and k_dc are both None")
    real = _features(real, "real features", feature_dtype)
    fake = _features(fake, "generated features", feature_dtype)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dims differ: real {real.shape[1]}, generated {fake.shape[1]} "
                         "(features of different extractors?)")
    ks = [k for k in (k_pr, k_dc) if k is not None]
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
    kmax = max(ks)
    n_r, n_f = real.shape[0], fake.shape[0]
    if n_r <= kmax or n_f <= kmax:
        raise ValueError(f"k = {kmax} neighbours need more than {kmax} features per side, got {n_r} real and "
                         f"{n_f} generated")
    if device is not None:
        real, fake = real.to(device), fake.to(device)
    r_real = knn_smallest(real, None, kmax)  # squared distances, ascending
    r_fake = knn_smallest(fake, None, kmax) if k_pr is not None else None
    out = {"n_real": n_r, "n_fake": n_f, "inclusive": inclusive}
    passes = {}
    for k in set(ks):
        rb2 = r_fake[:, k - 1] if r_fake is not None else torch.zeros(n_f, dtype=r_real.dtype, device=r_real.device)
        passes[k] = knn_radius_count(real, fake, r_real[:, k - 1], rb2, inclusive)
    if k_pr is not None:
        cnt_r, cnt_f, _ = passes[k_pr]
        out.update(precision=float((cnt_f > 0).double().mean()), recall=float((cnt_r > 0).double().mean()),
                   k_pr=k_pr)
    if k_dc is not None:
        _, cnt_f, nn_r = passes[k_dc]
        ra2 = r_real[:, k_dc - 1]
        covered = nn_r <= ra2 if inclusive else nn_r < ra2
        out.update(density=float(cnt_f.double().sum() / (k_dc * n_f)), coverage=float(covered.double().mean()),
                   k_dc=k_dc)
    return out


def precision_recall(real, fake, k: int = 3, inclusive: bool = False, **kw) -> tuple[float, float]:
    o = manifold_metrics(real, fake, k_pr=k, k_dc=None, inclusive=inclusive, **kw)
    return o["precision"], o["recall"]


def density_coverage(real, fake, k: int = 5, inclusive: bool = False, **kw) -> tuple[float, float]:
    o = manifold_metrics(real, fake, k_pr=None, k_dc=k, inclusive=inclusive, **kw)
    return o["density"], o["coverage"]


def manifold_memory_bytes(n_real: int, n_fake: int, dim: int, k: int = 5, feature_bytes: int = 4) -> int:
    """Host bytes of manifold_metrics on CPU: both feature sets, the k-NN lists, the counts and the C++
    kernel's 1024 x 1024 float32 tile."""
    n = n_real + n_fake
    return feature_bytes * dim * n + 4 * k * n + 8 * 3 * n + 4 * 1024 ** 2

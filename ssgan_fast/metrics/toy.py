"""Mode metrics for the 2-D ring (the VEEGAN / PacGAN protocol, as MED-GAN Table 1 reports them).

For generated points and the K mode centres (standard deviation sigma per coordinate):
- each point is assigned to its nearest centre;
- it is *high quality* (HQ) if it lies within `k_sigma` (3) standard deviations of that centre;
- a mode is *covered* if at least `min_count` (1) HQ points are assigned to it (VEEGAN's rule);
- reverse KL = KL(q || p) between the distribution q of the HQ points over the modes and the data's
  uniform p = 1/K (modes without HQ points contribute 0; with no HQ point at all it is log K).
Thresholds are in units of the mode standard deviation, as in the cited protocol.
*HQ at 1 sigma* = the % of points within one standard deviation of their nearest centre: the HQ rule
with a tighter radius, for modes so wide that 3 sigma exceeds half the distance between neighbouring
centres (MED-GAN's variance 0.1: 3 sigma = 0.95, half the spacing 0.38), where the 3-sigma HQ of

More: docs/modules.md, section ssgan_fast.metrics.toy.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["ring_centres", "mode_metrics", "ring_metrics"]


def ring_centres(k: int = 8, radius: float = 1.0, centre=(0.0, 0.0)) -> np.ndarray:
    a = 2 * np.pi * np.arange(k) / k
    return np.stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)], 1)


def mode_metrics(points, centres, sigma: float, k_sigma: float = 3.0, min_count: int = 1, labels=None) -> dict:
    p = np.asarray(points, dtype=np.float64)
    c = np.asarray(centres, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise ValueError(f"points must be a non-empty [N, 2] array, got {p.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    d = np.linalg.norm(p[:, None, :] - c[None, :, :], axis=2)
    nearest = d.argmin(1)
    dn = d[np.arange(len(p)), nearest]
    hq = dn <= k_sigma * sigma
    counts = np.bincount(nearest[hq], minlength=len(c))
    K = len(c)
    if counts.sum() == 0:
        rkl = math.log(K)
    else:
        q = counts / counts.sum()
        nz = q > 0
        rkl = float((q[nz] * np.log(q[nz] * K)).sum())
    out = {"modes": int((counts >= min_count).sum()), "hq_percent": 100.0 * float(hq.mean()), "reverse_kl": rkl,
           "hq_1sigma_percent": 100.0 * float((dn <= sigma).mean()),
           "spread": float(np.sqrt((dn ** 2).mean() / 2) / sigma), "per_mode": counts.tolist()}
    if labels is not None:
        y = np.asarray(labels)
        if y.shape != (len(p),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= K:
            raise ValueError(f"labels must be {len(p)} integers in [0, {K}), got shape {y.shape} dtype {y.dtype}")
        out["class_acc_percent"] = 100.0 * float((nearest == y).mean())
    return out


def ring_metrics(points, centre=(100.0, 100.0), radius: float = 2.0, radial_std: float = 0.1, bins: int = 36,
                 k_sigma: float = 3.0) -> dict:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise ValueError(f"points must be a non-empty [N, 2] array, got {p.shape}")
    if not radius > 0 or not radial_std > 0 or bins < 1:
        raise ValueError("radius and radial_std must be > 0 and bins >= 1")
    if not np.isfinite(p).all():
        return {"on_ring_percent": 0.0, "coverage_percent": 0.0, "distance": float("inf")}
    v = p - np.asarray(centre, dtype=np.float64)
    off = np.abs(np.linalg.norm(v, axis=1) - radius) / radial_std
    on = off <= k_sigma
    ang = np.arctan2(v[on, 1], v[on, 0])
    counts = np.bincount(np.minimum(((ang + np.pi) / (2 * np.pi) * bins).astype(int), bins - 1), minlength=bins)
    covered = counts >= 0.25 * on.sum() / bins if on.any() else np.zeros(bins, bool)
    return {"on_ring_percent": 100.0 * float(on.mean()), "coverage_percent": 100.0 * float(covered.mean()),
            "distance": float(off.mean())}

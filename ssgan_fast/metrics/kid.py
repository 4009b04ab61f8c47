"""Kernel Inception Distance (Bińkowski et al. 2018), overall and per class (Intra-KID).

KID = the unbiased estimate of MMD^2 with the cubic polynomial kernel k(x, y) = (gamma x.y + coef0)^degree
(gamma = 1 / dim, coef0 = 1, degree = 3), averaged over ``subsets`` random subsets of ``subset_size``
features per side; reported as mean and standard deviation (numpy's std, ddof 0) over the subsets. The
defaults are torch-fidelity's, stylegan2-ada-pytorch's ``kid50k_full`` and torchmetrics': 100 subsets of
1 000. The subsets are drawn as torch-fidelity draws them: ``np.random.RandomState(seed)``, for each
subset ``choice(n_fake, m, replace=False)`` then ``choice(n_real, m, replace=False)`` (torch-fidelity's
input 1 = the generated side), so with the same seed (its default 2020) the subsets - and the value -
are torch-fidelity's. Kernel sums are float64 (the GEMMs in float64 too by default).

Fewer features than ``subset_size`` on a side: the subset shrinks to the smaller side's size with a
warning (per-class KID on CUB-200, about 30 images a class, always does: min(1000, n_c)).
Memory: the features of both sides (kept by the caller, float32 on the host) plus three m x m kernel
matrices per subset (24 MB at m = 1000).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

__all__ = ["kid", "intra_kid", "mmd2_unbiased", "kid_memory_bytes", "KID_SUBSETS", "KID_SUBSET_SIZE", "KID_SEED"]

log = logging.getLogger("ssgan_fast")

KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED = 100, 1000, 2020


def check_features(t, name: str) -> torch.Tensor:
    """Feature rows [N, dim] as a floating-point tensor (arrays accepted); NaN / inf rows are an error."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(np.asarray(t))
    if t.dim() != 2 or not t.is_floating_point():
        raise ValueError(f"{name} must be floating-point features [N, dim], got {t.dtype} {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(1).sum())
        raise ValueError(f"{name} has {bad} row(s) with NaN or inf values (a broken extractor or generator?)")
    return t


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None,
                  coef0: float = 1.0) -> float:
    """The unbiased MMD^2 of two equal-size samples x, y [m, dim] with the polynomial kernel (the estimator
    of torch-fidelity's ``mmd2(..., mmd_est='unbiased')`` and stylegan2-ada-pytorch's ``compute_kid``):
    (sum_{i != j} k(x_i, x_j) + sum_{i != j} k(y_i, y_j)) / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise ValueError(f"the unbiased MMD^2 needs two samples of the same size m >= 2, got {m} and {y.shape[0]}")
    g = 1.0 / x.shape[1] if gamma is None else gamma

    def k(a, b):
        return (a @ b.t() * g + coef0) ** degree

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = kxx.sum(dtype=torch.float64) - kxx.diagonal().sum(dtype=torch.float64)
    syy = kyy.sum(dtype=torch.float64) - kyy.diagonal().sum(dtype=torch.float64)
    return float((sxx + syy) / (m * (m - 1)) - 2 * kxy.sum(dtype=torch.float64) / (m * m))


def kid(real, fake, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0, seed: int = KID_SEED, dtype=torch.float64,
        what: str = "KID") -> dict:
    """{"mean", "std", "subsets", "subset_size", "n_real", "n_fake"} of KID between feature sets
    real [N_r, dim] and fake [N_f, dim] (tensors or arrays; see the module docstring)."""
    real, fake = check_features(real, "real features"), check_features(fake, "generated features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"{what}: feature dims differ: real {real.shape[1]}, generated {fake.shape[1]} "
                         "(features of different extractors?)")
    if not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"{what}: subsets must be a positive int, got {subsets!r}")
    nr, nf = real.shape[0], fake.shape[0]
    m = min(subset_size, nr, nf)
    if m < 2:
        raise ValueError(f"{what} needs >= 2 features on each side, got {nr} real and {nf} generated")
    if m < subset_size:
        log.warning("%s: %d real / %d generated features: subsets of %d instead of %d", what, nr, nf, m, subset_size)
    rng = np.random.RandomState(seed)
    real, fake = real.to(dtype), fake.to(dtype)
    vals = np.empty(subsets)
    for s in range(subsets):
        f = fake[torch.from_numpy(rng.choice(nf, m, replace=False))]
        r = real[torch.from_numpy(rng.choice(nr, m, replace=False))]
        vals[s] = mmd2_unbiased(f, r, degree, gamma, coef0)
    return {"mean": float(vals.mean()), "std": float(vals.std()), "subsets": subsets, "subset_size": m,
            "n_real": nr, "n_fake": nf}


def intra_kid(real, real_labels, fake, fake_labels, num_classes: int, subsets: int = KID_SUBSETS,
              subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED, **kw) -> tuple[float, dict[int, dict]]:
    """(mean over classes of the per-class KID mean, {class: kid(...)}); per class the subsets are
    min(subset_size, n_c) (no warning per class: the sizes are in the result) and the draws are seeded
    with seed + c; a class with < 2 features
    on either side is skipped with one warning naming them."""
    real, fake = check_features(real, "real features"), check_features(fake, "generated features")
    rl, fl = torch.as_tensor(real_labels).long().reshape(-1), torch.as_tensor(fake_labels).long().reshape(-1)
    if rl.numel() != real.shape[0] or fl.numel() != fake.shape[0]:
        raise ValueError("Intra-KID: one label per feature row is needed on each side")
    per, skipped = {}, []
    for c in range(num_classes):
        r, f = real[rl == c], fake[fl == c]
        if r.shape[0] < 2 or f.shape[0] < 2:
            skipped.append(c)
            continue
        per[c] = kid(r, f, subsets, min(subset_size, r.shape[0], f.shape[0]), seed=seed + c, what=f"KID class {c}",
                     **kw)
    if skipped:
        log.warning("Intra-KID: skipping classes with < 2 real or generated features: %s", skipped)
    if not per:
        raise ValueError("Intra-KID: no class has >= 2 real and >= 2 generated features")
    return float(np.mean([v["mean"] for v in per.values()])), per


def kid_memory_bytes(n_real: int, n_fake: int, dim: int, subset_size: int = KID_SUBSET_SIZE) -> int:
    """Host bytes KID needs: both sides' float32 features + the float64 subsets and three kernel matrices."""
    m = min(subset_size, n_real, n_fake)
    return 4 * dim * (n_real + n_fake) + 8 * (2 * m * dim + 3 * m * m)

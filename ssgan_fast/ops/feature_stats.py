"""Op family 4: streaming feature statistics and the Fréchet distance (FID, Intra-FID, cFID).

``FeatureStats`` accumulates, per class, the count, the sum and X^T X of the features in one pass
(the ``feature_stats_moments`` kernel: C++ CPU, CUDA, Triton; float64 reference). Numerics: **shifted
sums with float64 accumulation**. Each class keeps a shift vector (its mean in the first batch
that contains it); the kernel forms y = x - shift and the products y y^T in the features' dtype
(float32 products for float32 features, over at most 4096 rows at a time), and adds them to float64
accumulators. The covariance (sum yy^T - n ybar ybar^T) / (n - 1) then never subtracts two large
nearly equal numbers, which is what breaks naive float32 E[xx^T] - mu mu^T on 50 000 x 2048
Inception features (mean ~0.4, std ~0.3 per dimension).

``frechet_distance`` is a torch.linalg composition in float64 on the tensors' device: with
Sigma1 = L L^T (Cholesky), tr sqrt(Sigma1 Sigma2) = sum sqrt(eig(L^T Sigma2 L)), the eigenvalues of
a symmetric PSD matrix (eigvalsh, no complex numbers). A singular Sigma1 (N < dim) falls back to
Cholesky of Sigma2, then to L = V sqrt(max(lambda, 0)) from eigh(Sigma1).
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from .._backends import c_ops, op_scope, pick_backend, triton_kernels
from . import reference
from ._checks import check_labels, check_tensor, values_checkable

__all__ = ["FeatureStats", "frechet_distance", "trace_sqrt_product"]

log = logging.getLogger("ssgan_fast")


def _feature_stats_moments(backend: str, x: Tensor, labels: Tensor, shift: Tensor, count: Tensor, s: Tensor,
                           xtx: Tensor):
    if backend == "ref":
        c, sm, xx = reference.feature_stats_moments(x, labels, shift, count.numel())
        count += c
        s += sm
        xtx += xx
    elif backend == "triton":
        with op_scope("FeatureStats.update", feats=x, labels=labels):
            triton_kernels("feature_stats").moments(x, labels, shift, count, s, xtx)
    else:
        c_ops(backend).feature_stats_moments(x, labels, shift.to(x.dtype).contiguous(), count, s, xtx)


class FeatureStats:
    """Streaming count / mean / covariance of features, per class when ``num_classes`` is given.

    >>> st = FeatureStats(2048, num_classes=200, device="cuda")
    >>> for feats, labels in batches: st.update(feats, labels)
    >>> mu, sigma = st.mean(), st.cov()          # all classes pooled
    >>> mu7, sigma7 = st.mean(7), st.cov(7)      # one class (Intra-FID)

    Accumulators are float64 [C], [C, D], [C, D, D] on ``device`` (C = num_classes or 1).
    ``merge`` adds another instance (e.g. from another process); ``all_reduce`` does it across a
    torch.distributed group; ``state_dict`` / ``load_state_dict`` save and restore.
    """

    def __init__(self, dim: int, num_classes: int | None = None, device="cpu"):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        self.dim, self.num_classes = dim, num_classes
        C = num_classes or 1
        f64 = dict(dtype=torch.float64, device=device)
        self.count = torch.zeros(C, **f64)
        self.sum = torch.zeros(C, dim, **f64)
        self.xtx = torch.zeros(C, dim, dim, **f64)
        self.shift = torch.zeros(C, dim, **f64)
        self.has_shift = torch.zeros(C, dtype=torch.bool, device=device)

    @property
    def device(self) -> torch.device:
        return self.count.device

    def _xtx(self, idx) -> Tensor:
        """Full symmetric X^T X of class(es) idx: the kernels define only the upper triangle."""
        u = torch.triu(self.xtx[idx])
        return u + torch.triu(u, 1).transpose(-1, -2)

    # ------------------------------------------------------------------ update
    def update(self, feats: Tensor, labels: Tensor | None = None) -> FeatureStats:
        """Add a batch of features [N, dim] (and their class labels [N] when num_classes is set)."""
        check_tensor(feats, "feats")
        if feats.dim() != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"feats must be [N, {self.dim}], got shape {tuple(feats.shape)}")
        if not feats.is_floating_point():
            raise TypeError(f"feats must be floating point, got {feats.dtype}")
        if feats.shape[0] == 0:
            raise ValueError("feats is an empty batch (N = 0)")
        feats = feats.detach().to(self.device)
        if values_checkable() and not bool(torch.isfinite(feats).all()):
            bad = int((~torch.isfinite(feats)).any(1).sum())
            raise ValueError(f"feats has {bad} row(s) with NaN or inf values: the statistics (and FID) would be NaN")
        N = feats.shape[0]
        C = self.count.numel()
        if self.num_classes is None:
            if labels is not None:
                raise ValueError("labels were given but this FeatureStats has num_classes=None (unconditional)")
            labels = torch.zeros(N, dtype=torch.int64, device=self.device)
        else:
            if labels is None:
                raise ValueError(f"labels [N] are required: this FeatureStats has num_classes={self.num_classes}")
            labels = labels.to(self.device)
            check_labels(labels, "labels", N, C, self.device)
            labels = labels.long().contiguous()
        x = feats if feats.dtype in (torch.float32, torch.float64) else feats.float()
        x = x.contiguous()
        self._init_shifts(x, labels)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            _feature_stats_moments(pick_backend(self.device), x, labels, self.shift, self.count, self.sum, self.xtx)
        return self

    def _init_shifts(self, x: Tensor, labels: Tensor):
        """Classes seen for the first time get their batch mean as shift. Any vector near the mean
        serves (it only has to remove the bulk of the offset), so it is computed in the features'
        dtype and rounded to float32: exactly representable in every dtype the kernels use."""
        C = self.count.numel()
        n = torch.bincount(labels, minlength=C)
        new = (n > 0) & ~self.has_shift
        if not bool(new.any()):
            return
        s = torch.zeros(C, self.dim, dtype=x.dtype, device=self.device).index_add_(0, labels, x)
        mean = (s / n.clamp_min(1)[:, None].to(x.dtype)).float().double()
        self.shift = torch.where(new[:, None], mean, self.shift)
        self.has_shift |= new

    # ------------------------------------------------------------------ results
    def _check_class(self, c):
        if c is None:
            return
        if self.num_classes is None:
            raise ValueError("this FeatureStats is unconditional (num_classes=None): no per-class statistics")
        if not isinstance(c, int) or not 0 <= c < self.num_classes:
            raise ValueError(f"class index must be an int in [0, {self.num_classes}), got {c!r}")

    def counts(self) -> Tensor:
        return self.count.clone()

    def total(self) -> int:
        return int(self.count.sum())

    def mean(self, c: int | None = None) -> Tensor:
        """float64 [dim]: mean of class c, or of all features (pooled over classes) if c is None."""
        self._check_class(c)
        if c is not None or self.count.numel() == 1:
            i = 0 if c is None else c
            n = float(self.count[i])
            if n < 1:
                raise ValueError(f"no features were added{'' if c is None else f' for class {c}'}")
            return self.shift[i] + self.sum[i] / n
        N = float(self.count.sum())
        if N < 1:
            raise ValueError("no features were added")
        return (self.count[:, None] * self.shift + self.sum).sum(0) / N

    def cov(self, c: int | None = None) -> Tensor:
        """float64 [dim, dim] unbiased covariance (divides by n - 1, as numpy.cov / pytorch-fid)."""
        self._check_class(c)
        if c is not None or self.count.numel() == 1:
            i = 0 if c is None else c
            n = float(self.count[i])
            if n < 2:
                which = "" if c is None else f" of class {c}"
                raise ValueError(f"the covariance needs >= 2 samples{which}, got {int(n)}")
            ybar = self.sum[i] / n
            cov = (self._xtx(i) - n * torch.outer(ybar, ybar)) / (n - 1)
            return (cov + cov.t()) / 2
        N = float(self.count.sum())
        if N < 2:
            raise ValueError(f"the covariance needs >= 2 samples, got {int(N)}")
        m = self.mean()
        d = self.shift - m  # x - m = y + d for the rows of each class
        seen = self.count > 0
        S = self._xtx(seen).sum(0)
        ds, ss, n = d[seen], self.sum[seen], self.count[seen]
        S = S + ds.t() @ ss + ss.t() @ ds + (ds * n[:, None]).t() @ ds
        cov = S / (N - 1)
        return (cov + cov.t()) / 2

    def class_stats(self, min_count: int = 2, classes=None) -> tuple[Tensor, Tensor, Tensor]:
        """(class indices [K], means [K, dim], covs [K, dim, dim]) of the given classes (default: all
        with >= min_count samples). Batch over a few classes at a time for large dims."""
        if self.num_classes is None:
            raise ValueError("this FeatureStats is unconditional (num_classes=None)")
        if classes is None:
            idx = (self.count >= min_count).nonzero().flatten()
        else:
            idx = torch.as_tensor(classes, dtype=torch.int64, device=self.device).reshape(-1)
            if bool((self.count[idx] < 2).any()):
                raise ValueError(f"classes {idx[self.count[idx] < 2].tolist()} have < 2 samples")
        n = self.count[idx]
        ybar = self.sum[idx] / n[:, None]
        covs = (self._xtx(idx) - n[:, None, None] * ybar[:, :, None] * ybar[:, None, :]) / (n - 1)[:, None, None]
        covs = (covs + covs.transpose(1, 2)) / 2
        return idx, self.shift[idx] + ybar, covs

    # ------------------------------------------------------------------ combine / persist
    def _recenter(self, new_shift: Tensor) -> None:
        """Express the accumulators relative to new_shift (exact algebra, float64)."""
        delta = self.shift - new_shift  # y_new = y_old + delta
        moved = ((delta != 0).any(1) & (self.count > 0)).nonzero().flatten().tolist()
        for c in moved:  # per class: no [C, D, D] temporaries
            d, sm, n = delta[c], self.sum[c], float(self.count[c])
            self.xtx[c] += torch.outer(d, sm) + torch.outer(sm, d) + n * torch.outer(d, d)
        self.sum += self.count[:, None] * delta
        self.shift = new_shift.clone()

    def merge(self, other: FeatureStats) -> FeatureStats:
        """Add the statistics of another FeatureStats (same dim and classes) into this one."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"can only merge a FeatureStats, got {type(other).__name__}")
        if other.dim != self.dim or other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge FeatureStats(dim={other.dim}, num_classes={other.num_classes}) into "
                             f"FeatureStats(dim={self.dim}, num_classes={self.num_classes})")
        o = FeatureStats(other.dim, other.num_classes, self.device)
        o.load_state_dict(other.state_dict())
        # adopt the other's shift for classes only it has seen, then bring it to our shifts
        adopt = o.has_shift & ~self.has_shift
        self.shift = torch.where(adopt[:, None], o.shift, self.shift)
        self.has_shift |= o.has_shift
        o._recenter(self.shift)
        self.count += o.count
        self.sum += o.sum
        self.xtx += o.xtx
        return self

    def all_reduce(self, group=None) -> FeatureStats:
        """Sum the statistics over a torch.distributed group (DDP evaluation), in place on every rank.
        Shifts are first made common: the count-weighted mean of the ranks' shifts."""
        import torch.distributed as dist
        n = self.count.clone()
        ws = self.shift * n[:, None]
        dist.all_reduce(n, group=group)
        dist.all_reduce(ws, group=group)
        common = (ws / n.clamp_min(1)[:, None]).float().double()
        self._recenter(common)
        self.has_shift = n > 0
        for t in (self.count, self.sum, self.xtx):
            dist.all_reduce(t, group=group)
        return self

    def state_dict(self) -> dict:
        return {"dim": self.dim, "num_classes": self.num_classes, "count": self.count.cpu(), "sum": self.sum.cpu(),
                "xtx": self.xtx.cpu(), "shift": self.shift.cpu(), "has_shift": self.has_shift.cpu()}

    def load_state_dict(self, state: dict) -> FeatureStats:
        if state.get("dim") != self.dim or state.get("num_classes") != self.num_classes:
            raise ValueError(f"state is for FeatureStats(dim={state.get('dim')}, "
                             f"num_classes={state.get('num_classes')}), "
                             f"this is FeatureStats(dim={self.dim}, num_classes={self.num_classes})")
        for k in ("count", "sum", "xtx", "shift", "has_shift"):
            setattr(self, k, torch.as_tensor(state[k]).to(self.device).clone())
        return self


# ---------------------------------------------------------------------- Fréchet distance

def _f64(t, name: str, device=None) -> Tensor:
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(t)
    check_tensor(t, name)
    return t.to(device=device if device is not None else t.device, dtype=torch.float64)


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """tr sqrt(Sigma1 Sigma2) for symmetric PSD [..., D, D] matrices, float64, eigenvalues only."""
    s1 = (sigma1 + sigma1.transpose(-1, -2)) / 2
    s2 = (sigma2 + sigma2.transpose(-1, -2)) / 2
    batch = s1.shape[:-2]
    s1, s2 = s1.reshape(-1, *s1.shape[-2:]), s2.reshape(-1, *s2.shape[-2:])
    L, info = torch.linalg.cholesky_ex(s1)
    other = s2.clone()
    bad = info != 0
    if bool(bad.any()):  # singular Sigma1: tr sqrt(S1 S2) = tr sqrt(S2 S1), try Sigma2's factor
        i = bad.nonzero().flatten()
        L2, info2 = torch.linalg.cholesky_ex(s2[i])
        ok = info2 == 0
        L[i[ok]], other[i[ok]] = L2[ok], s1[i[ok]]
        j = i[~ok]
        if j.numel():  # both singular: L = V sqrt(max(lambda, 0)) from eigh
            lam, V = torch.linalg.eigh(s1[j])
            L[j] = V * lam.clamp_min(0).sqrt()[:, None, :]
    M = L.transpose(-1, -2) @ other @ L
    M = (M + M.transpose(-1, -2)) / 2
    ev = torch.linalg.eigvalsh(M).clamp_min(0)
    return ev.sqrt().sum(-1).reshape(batch)


def _check_covariance(s: Tensor, name: str) -> None:
    """A covariance: symmetric and positive semi-definite up to rounding (a Cholesky factor of s + tol I
    exists, tol = 1e-6 of the largest variance); else ValueError (a negative-definite matrix would give a
    meaningless distance, e.g. 0.0)."""
    scale = torch.diagonal(s, dim1=-2, dim2=-1).abs().amax(-1).clamp_min(1e-30)  # [...]
    tol = 1e-6 * scale
    if bool(((s - s.transpose(-1, -2)).abs().amax((-2, -1)) > tol).any()):
        raise ValueError(f"{name} is not symmetric: not a covariance matrix")
    eye = torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)
    _, info = torch.linalg.cholesky_ex(s + tol[..., None, None] * eye)
    if bool((info != 0).any()):
        raise ValueError(f"{name} is not positive semi-definite: not a covariance matrix")


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), in float64 on the device of mu1.

    Inputs are tensors (or numpy arrays) [D] / [D, D], or batched [K, D] / [K, D, D] (Intra-FID:
    one distance per class). Returns a Python float for one pair, a float64 tensor [K] for a batch.
    Raises on shape mismatches, non-finite inputs and a sigma that is not a covariance (not symmetric, or
    not positive semi-definite beyond rounding).
    """
    mu1 = _f64(mu1, "mu1")
    dev = mu1.device
    sigma1, mu2, sigma2 = _f64(sigma1, "sigma1", dev), _f64(mu2, "mu2", dev), _f64(sigma2, "sigma2", dev)
    if mu1.dim() not in (1, 2) or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must both be [D] or [K, D], got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    D = mu1.shape[-1]
    want = (*mu1.shape[:-1], D, D)
    if tuple(sigma1.shape) != want or tuple(sigma2.shape) != want:
        raise ValueError(f"sigma1 and sigma2 must be {list(want)} to match the means, got {tuple(sigma1.shape)} "
                         f"and {tuple(sigma2.shape)}")
    for t, name in ((mu1, "mu1"), (sigma1, "sigma1"), (mu2, "mu2"), (sigma2, "sigma2")):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} has NaN or inf values")
    for t, name in ((sigma1, "sigma1"), (sigma2, "sigma2")):
        _check_covariance(t, name)
    diff = mu1 - mu2
    tr = torch.diagonal(sigma1, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(sigma2, dim1=-2, dim2=-1).sum(-1)
    d = (diff * diff).sum(-1) + tr - 2 * trace_sqrt_product(sigma1, sigma2)
    return float(d) if d.dim() == 0 else d


def aot_cases(full: bool):
    """(label, thunk) pairs over the Triton dispatch of the statistics kernel, on meta tensors (tools/aot.py):
    Inception (2048) and small extractors, per class or not."""
    from ._meta import F32, F64, idx, t
    for D in ((16, 33, 64, 512, 2048) if full else (16, 2048)):
        for N in (1, 50, 5000):
            for C in (1, 200):
                def st(D=D, N=N, C=C):
                    lab = idx(N)
                    z = torch.zeros(C, D, dtype=torch.float64, device="meta")
                    cnt = torch.zeros(C, dtype=torch.float64, device="meta")
                    xtx = torch.zeros(C, D, D, dtype=torch.float64, device="meta")
                    for dt in (F32, F64):
                        _feature_stats_moments("triton", t(N, D, dtype=dt), lab, z, cnt, z.clone(), xtx)
                yield f"feature_stats N{N} D{D} C{C}", st

"""FID, Intra-FID, cFID, Inception Score, RA, GAN-train / GAN-test on streaming statistics.

Every metric consumes batches: images flow through a feature extractor in batches into
``FeatureStats`` (FID family), per-split sums (IS) or counters (RA); nothing of size N x dim is
kept. Definitions:
- FID: Fréchet distance of the Gaussians fitted to real and generated features (Heusel et al.).
- Intra-FID: mean over classes of the FID between the real and generated features of that class
  (Miyato & Koyama); classes with < 2 samples on either side are skipped with a warning naming them.
- cFID: conditional FID of Benny et al. (2021) with one-hot class embeddings, whose closed form is
  sum_y p(y) ||mu_r|y - mu_f|y||^2 + tr(S_r + S_f - 2 (S_r S_f)^1/2) with S the pooled
  within-class covariance (class means as the conditional means of the linear-Gaussian model).
  The SphericGAN paper calls it "class-wise FID" without a formula; this is the documented choice.

More: docs/modules.md, section ssgan_fast.metrics.scores.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from ..ops import FeatureStats, frechet_distance

log = logging.getLogger("ssgan_fast")

__all__ = ["collect", "fid", "intra_fid", "cfid", "InceptionScore", "Collected"]


class InceptionScore:
    """Streaming IS over `splits` consecutive splits of `total` samples: in arrival order, or - with
    ``shuffle_seed`` - in the order of a seeded random permutation, so that samples arriving class by
    class do not give one class per split (whose IS is ~1 whatever the samples). The permutation
    (``np.random.RandomState(seed).permutation``) and the split boundaries (split i holds positions
    i * total // splits .. (i + 1) * total // splits) are torch-fidelity's ``isc_features_to_metric``:
    the same logits and seed give its value."""

    def __init__(self, total: int, splits: int = 10, shuffle_seed: int | None = None):
        if total < splits or splits < 1:
            raise ValueError(f"the Inception Score needs at least `splits` = {splits} samples, got {total}")
        self.total, self.splits, self.seen = total, splits, 0
        # position of arrival i in the (shuffled) order the splits are cut from
        self.position = (None if shuffle_seed is None else
                         torch.from_numpy(np.argsort(np.random.RandomState(shuffle_seed).permutation(total))))
        self.bounds = torch.tensor([(i + 1) * total // splits for i in range(splits)])
        self.plogp = torch.zeros(splits, dtype=torch.float64)
        self.psum: torch.Tensor | None = None
        self.n = torch.zeros(splits, dtype=torch.float64)

    def update(self, logits: torch.Tensor):
        p = torch.softmax(logits.double(), 1).cpu()
        B, K = p.shape
        if self.psum is None:
            self.psum = torch.zeros(self.splits, K, dtype=torch.float64)
        idx = torch.arange(self.seen, self.seen + B)
        if int(idx[-1]) >= self.total:
            raise ValueError(f"more than total = {self.total} samples were fed to the Inception Score")
        pos = idx if self.position is None else self.position[idx]
        split = torch.searchsorted(self.bounds, pos, right=True)
        self.plogp.index_add_(0, split, (p * torch.log(p.clamp_min(1e-30))).sum(1))
        self.psum.index_add_(0, split, p)
        self.n.index_add_(0, split, torch.ones(B, dtype=torch.float64))
        self.seen += B

    def compute(self) -> tuple[float, float]:
        if self.seen != self.total:
            raise ValueError(f"the Inception Score expected {self.total} samples, got {self.seen}")
        py = self.psum / self.n[:, None]
        kl = (self.plogp - (self.psum * torch.log(py.clamp_min(1e-30))).sum(1)) / self.n
        scores = torch.exp(kl)
        return float(scores.mean()), float(scores.std(unbiased=False))


class Collected:
    """What one pass over a set of images gathers: overall / per-class feature statistics, IS
    accumulator and classifier hits."""

    def __init__(self, stats: FeatureStats, cstats: FeatureStats | None, is_acc: InceptionScore | None,
                 correct: int, count: int, conf_sum: float = 0.0, features: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None):
        self.stats, self.cstats, self.is_acc, self.correct, self.count = stats, cstats, is_acc, correct, count
        self.conf_sum = conf_sum
        # the pooled features themselves (host, float32 or the kept dtype) and their labels, where the
        # k-NN / KID metrics need them (collect(keep_features=...))
        self.features, self.labels = features, labels

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.count)

    @property
    def confidence(self) -> float:
        """Average confidence (aam-discriminator Sec. 4.4): the classifier's mean softmax
        probability of the class each image was generated for."""
        return self.conf_sum / max(1, self.count)


@torch.no_grad()
def collect(batches: Iterable, extractor, num_classes: int | None = None, total: int | None = None,
            is_splits: int = 0, classifier=None, device="cpu", progress: bool = False,
            is_shuffle_seed: int | None = None, keep_features=None, is_start: int = 0) -> Collected:
    """One pass: batches yield (images [B, C, H, W] in [-1, 1], labels [B] or None). ``keep_features``
    (a dtype: torch.float32, or torch.float16 to halve the memory) also keeps the pooled features on the
    host, N x dim in that dtype, with their labels (-1 where a batch has none): what KID and the k-NN
    metrics (precision / recall, density / coverage) need. Every metric of the extractor comes from this
    one pass over the images. ``is_start``: the position of the first image among the ``total`` (a
    distributed share: the IS splits are cut from the positions of all ranks' samples)."""
    stats = FeatureStats(extractor.dim, device=device)
    cstats = FeatureStats(extractor.dim, num_classes, device=device) if num_classes else None
    is_acc = InceptionScore(total, is_splits, is_shuffle_seed) if is_splits else None
    if is_acc is not None:
        is_acc.seen = is_start
    correct = count = 0
    conf_sum = 0.0
    kept, kept_labels = [], []
    it = batches
    if progress:
        from tqdm import tqdm
        it = tqdm(batches, desc="features", unit="batch", leave=False)
    for images, labels in it:
        images = images.to(device)
        out = extractor(images)
        feats = out["pool"].double()
        stats.update(feats)
        if cstats is not None and labels is not None:
            keep = labels >= 0
            if bool(keep.any()):
                cstats.update(feats[keep.to(device)], labels[keep].to(device))
        if keep_features is not None:
            kept.append(out["pool"].detach().to("cpu", keep_features))
            kept_labels.append(labels.cpu().long() if labels is not None else
                               torch.full((feats.shape[0],), -1, dtype=torch.int64))
        if is_acc is not None:
            is_acc.update(out["logits"])
        if classifier is not None and labels is not None:
            logits = classifier(images)["logits"].float().cpu()
            pred = logits.argmax(1)
            correct += int((pred == labels.cpu()).sum())
            conf_sum += float(torch.softmax(logits, 1).gather(1, labels.cpu().long()[:, None]).sum())
            count += int(labels.numel())
    feats = torch.cat(kept) if kept else None
    return Collected(stats, cstats, is_acc, correct, count, conf_sum, feats,
                     torch.cat(kept_labels) if kept_labels else None)


def fid(real: FeatureStats, fake: FeatureStats) -> float:
    if real.dim != fake.dim:
        raise ValueError(f"feature dims differ: real {real.dim}, fake {fake.dim} (different extractors?)")
    return frechet_distance(real.mean(), real.cov(), fake.mean(), fake.cov())


def _common_classes(real: FeatureStats, fake: FeatureStats, what: str) -> list[int]:
    if real.num_classes is None or fake.num_classes is None:
        raise ValueError(f"{what} needs per-class statistics (num_classes) on both sides")
    if real.dim != fake.dim:
        raise ValueError(f"feature dims differ: real {real.dim}, fake {fake.dim} (different extractors?)")
    ok_r, ok_f = real.count >= 2, fake.count >= 2
    C = min(real.num_classes, fake.num_classes)
    classes = [c for c in range(C) if ok_r[c] and ok_f[c]]
    skipped = [c for c in range(max(real.num_classes, fake.num_classes)) if c not in classes]
    if skipped:
        log.warning("%s: skipping classes with < 2 real or generated samples: %s", what, skipped)
    if not classes:
        raise ValueError(f"{what}: no class has >= 2 real and >= 2 generated samples")
    return classes


def _chunks(classes: list[int], dim: int) -> list[list[int]]:
    """Groups of classes whose covariances fit in ~2 GiB of float64 at once."""
    k = max(1, (1 << 28) // (dim * dim))
    return [classes[i:i + k] for i in range(0, len(classes), k)]


def intra_fid(real: FeatureStats, fake: FeatureStats) -> tuple[float, dict[int, float]]:
    """(mean over classes, {class: FID}); batched Fréchet over groups of classes."""
    classes = _common_classes(real, fake, "Intra-FID")
    per = {}
    for group in _chunks(classes, real.dim):
        _, mr, sr = real.class_stats(classes=group)
        _, mf, sf = fake.class_stats(classes=group)
        d = frechet_distance(mr, sr, mf.to(mr.device), sf.to(mr.device))
        per.update({c: float(v) for c, v in zip(group, d.tolist(), strict=False)})
    return float(np.mean(list(per.values()))), per


def _pooled(st: FeatureStats, classes: list[int]):
    """Per-class means [K, dim], pooled within-class covariance (weights n_c - 1), counts."""
    means, pooled = [], torch.zeros(st.dim, st.dim, dtype=torch.float64, device=st.device)
    n = st.count[torch.tensor(classes, device=st.device)]
    w = (n - 1) / (n - 1).sum()
    for group in _chunks(classes, st.dim):
        _, m, c = st.class_stats(classes=group)
        means.append(m)
        pooled += (c * w[[classes.index(g) for g in group]][:, None, None]).sum(0)
    return torch.cat(means), pooled, n


def cfid(real: FeatureStats, fake: FeatureStats) -> float:
    """Conditional FID (Benny et al.) with one-hot class embeddings; see the module docstring."""
    classes = _common_classes(real, fake, "cFID")
    mr, sr, nr = _pooled(real, classes)
    mf, sf, _ = _pooled(fake, classes)
    py = nr / nr.sum()
    mean_term = float((py * ((mr - mf.to(mr.device)) ** 2).sum(1)).sum())
    zero = torch.zeros(real.dim, dtype=torch.float64, device=mr.device)
    return mean_term + frechet_distance(zero, sr, zero, sf.to(mr.device))

"""Two weights-free scores of generated digits (the built-in data set), at the digits' native 8 x 8:

- recognition: % of samples that an RBF SVM (scikit-learn) trained on the real training digits
  (sklearn's load_digits, the split of ssgan_fast's digits data set) assigns to the class they were
  generated for - a classifier this project does not train for the run;
- spread ratio: per class, the mean over pixels of the per-pixel standard deviation of the samples,
  divided by the same of the real training digits of that class, averaged over classes (1: as
  varied as the data; 0: one image per class);
- fd_pixels: the Frechet distance between the samples' 64 pixels (0..16) and the real training
  digits' - a noisy generator raises the spread ratio, and this with it (0: the real statistics).
The real digits go through the samples' pipeline first (bilinear to H x H as the data set stores
them, uint8, back to 8 x 8 by area), so that a resolution round trip is not counted against them.

    from ssgan_fast.metrics.digits import digits_scores
    digits_scores(images, labels)   # uint8 [N, H, W, 1] (any H = W, e.g. the 16 px runs) or [N, 8, 8] in 0..16
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["digits_scores", "to_digits_scale"]


@functools.lru_cache(maxsize=4)
def _real(size: int):
    """(train x [N, 64], train y, test x, test y) in 0..16 at 8 x 8 after the size-`size` round trip,
    the data set's split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    t = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    if size != 8:  # as ssgan_fast.data stores the digits at `size`
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    x = to_digits_scale((t * 255).round().to(torch.uint8)[:, 0].numpy())
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=d.target)
    return x[np.sort(tr)], d.target[np.sort(tr)], x[np.sort(te)], d.target[np.sort(te)]


@functools.lru_cache(maxsize=4)
def _svm(size: int):
    from sklearn.svm import SVC
    xtr, ytr, _, _ = _real(size)
    return SVC(kernel="rbf", gamma="scale", C=10.0).fit(xtr, ytr)


def to_digits_scale(images) -> np.ndarray:
    """uint8 [N, H, W(, 1)] in 0..255 (or float [N, 8, 8] already in 0..16) -> float [N, 64] in 0..16,
    area-averaged to 8 x 8."""
    x = np.asarray(images)
    if x.ndim == 4:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1] != x.shape[2]:
        raise ValueError(f"images must be [N, H, W] or [N, H, W, 1] with H = W, got {tuple(np.shape(images))}")
    if x.dtype == np.uint8:
        t = torch.from_numpy(x.astype(np.float32) / 255.0 * 16.0)[:, None]
        if t.shape[-1] != 8:
            t = F.adaptive_avg_pool2d(t, 8)
        x = t[:, 0].double().numpy()
    elif x.shape[1] != 8:
        raise ValueError("float images must already be 8 x 8 in 0..16")
    return x.reshape(len(x), 64)


def digits_scores(images, labels) -> dict:
    """{"recognition_percent", "spread_ratio", "spread_per_class", "fd_pixels", "svm_real_test_percent", "n"} for
    uint8 images of any H = W (the real digits are compared after the same H round trip)."""
    size = int(np.shape(images)[1])
    x = to_digits_scale(images)
    y = np.asarray(labels).astype(np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as images (> 0), got {len(x)} images and {len(y)} labels")
    if y.min() < 0 or y.max() > 9:
        raise ValueError("digit labels must be in 0..9")
    xtr, ytr, xte, yte = _real(size)
    svm = _svm(size)
    rec = float((svm.predict(x) == y).mean() * 100)
    per_class = {}
    for c in np.unique(y):
        gen = x[y == c]
        if len(gen) < 2:
            continue
        per_class[int(c)] = float(gen.std(0).mean() / xtr[ytr == c].std(0).mean())
    fd = None
    if len(x) > 1:
        from ..ops import frechet_distance
        a, b = torch.from_numpy(x), torch.from_numpy(xtr)
        fd = float(frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T)))
    return {"recognition_percent": rec, "spread_ratio": float(np.mean(list(per_class.values()))) if per_class else 0.0,
            "spread_per_class": per_class, "fd_pixels": fd,
            "svm_real_test_percent": float((svm.predict(xte) == yte).mean() * 100), "n": int(len(x))}

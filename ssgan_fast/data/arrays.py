"""In-memory data sets as arrays: images uint8 NHWC + int64 labels (-1 = unlabeled).

Specs: ``digits`` (scikit-learn's 8x8 digits, offline, upsampled to ``size``; a fixed stratified
80/20 train/test split), ``npz:/file.npz`` (arrays ``images`` uint8 [N, H, W, C] and ``labels``
int [N]; optional ``test_images`` / ``test_labels`` for a test split).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ArrayData", "load_arrays", "images_to_tensor"]


@dataclass
class ArrayData:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray  # int64 [N], -1 = unlabeled
    num_classes: int
    name: str

    def __len__(self):
        return len(self.labels)


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [-1, 1]."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8 or t.dim() != 4:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {tuple(t.shape)} {t.dtype}")
    return t.permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def _digits(size: int, split: str) -> ArrayData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    imgs = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=0.2, random_state=0, stratify=labels)
    sel = {"train": np.sort(tr), "test": np.sort(te), "all": idx}[split]
    return ArrayData(imgs[sel], labels[sel], 10, f"digits{size}-{split}")


def _npz(path: str, split: str) -> ArrayData:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"npz data set {p} does not exist")
    with np.load(p) as z:
        key_i, key_l = ("test_images", "test_labels") if split == "test" else ("images", "labels")
        if key_i not in z or key_l not in z:
            raise ValueError(f"{p} needs arrays {key_i!r} (uint8 [N, H, W, C]) and {key_l!r} (int [N]); has {list(z.keys())}")
        imgs, labels = z[key_i], z[key_l].astype(np.int64)
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[-1] not in (1, 3):
        raise ValueError(f"{p}: {key_i} must be uint8 [N, H, W, 1 or 3], got {imgs.shape} {imgs.dtype}")
    if labels.shape != (imgs.shape[0],):
        raise ValueError(f"{p}: {key_l} must have shape [{imgs.shape[0]}], got {labels.shape}")
    known = labels[labels >= 0]
    num_classes = int(known.max()) + 1 if known.size else 0
    return ArrayData(imgs, labels, num_classes, f"npz:{p.resolve()}-{split}")


def load_arrays(spec: str, split: str = "train", size: int = 32) -> ArrayData:
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    if spec == "digits":
        return _digits(size, split)
    if spec.startswith("npz:"):
        return _npz(spec[4:], split)
    raise ValueError(f"unknown data set spec {spec!r} for in-memory arrays; use 'digits' or 'npz:/file.npz'")

"""Streaming a data set in batches of decoded tensors: for model preparation (prior / intra-class
clusters), reference statistics and test-split accuracy. Nothing holds the whole set in memory:
files are decoded by a thread pool a few batches ahead, in the same way as the loaders
(``ImageDataset.load``: RGB, shorter side to ``size``, centre crop, optional box crop).

Unreadable files are skipped and counted. At the end of a pass, more than ``max_bad_fraction`` of
them is an error naming the first bad files (as the loaders do); fewer are reported in the log.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .datasets import DataError, ImageDataset, PointDataset, images_to_tensor

log = logging.getLogger("ssgan_fast")

__all__ = ["stream", "PrepData", "bad_files_error"]


def bad_files_error(name: str, bad: list, count: int, seen: int, max_bad_fraction: float) -> DataError:
    """The error for too many unreadable images: `count` of `seen`, naming the first of `bad`."""
    first = ", ".join(str(b) for b in bad[:5]) or "(names not recorded)"
    return DataError(f"{name}: {count} of {seen} images are corrupt or unreadable, more than max_bad_fraction = "
                     f"{max_bad_fraction} (raise it with --max-bad-fraction or train.max_bad_fraction); first bad "
                     f"file(s): {first}{' ...' if count > min(5, len(bad)) else ''}")


def stream(ds, indices=None, batch: int = 64, device="cpu", threads: int = 8, max_bad_fraction: float = 0.01,
           what: str = "", labels=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, labels): x float32 [B, C, H, W] in [-1, 1] (points: [B, 2]), labels int64 [B]
    (``labels`` [len(ds)] if given, else the data set's; -1 = unlabeled), over ``indices``
    (default: all) in that order."""
    idx = np.arange(len(ds)) if indices is None else np.asarray(indices, dtype=np.int64)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    labels = np.asarray(ds.labels if labels is None else labels, dtype=np.int64)
    dev = torch.device(device)
    if isinstance(ds, PointDataset):
        for i in range(0, len(idx), batch):
            j = idx[i:i + batch]
            yield torch.from_numpy(ds.points[j]).to(dev), torch.from_numpy(labels[j]).to(dev)
        return
    if not isinstance(ds, ImageDataset):
        raise TypeError(f"cannot stream {type(ds).__name__}")
    if ds.in_memory:
        for i in range(0, len(idx), batch):
            j = idx[i:i + batch]
            yield images_to_tensor(ds.images[j]).to(dev), torch.from_numpy(labels[j]).to(dev)
        return

    bad: list = []
    with ThreadPoolExecutor(threads) as ex:
        chunks = [idx[i:i + batch] for i in range(0, len(idx), batch)]
        pending = [ex.map(ds.try_load, c) for c in chunks[:2]]
        for k, chunk in enumerate(chunks):
            imgs = list(pending[k])
            if k + 2 < len(chunks):
                pending.append(ex.map(ds.try_load, chunks[k + 2]))
            ok = [im is not None for im in imgs]
            bad += [ds.files[int(i)] for i, g in zip(chunk, ok, strict=False) if not g]
            if not any(ok):
                continue
            x = images_to_tensor(np.stack([im for im in imgs if im is not None]))
            yield x.to(dev), torch.from_numpy(labels[chunk[np.array(ok)]]).to(dev)
    if bad:
        log.warning("%s%s: %d unreadable image(s) skipped, e.g. %s", ds.name, f" ({what})" if what else "", len(bad),
                    bad[0])
        if len(bad) > max_bad_fraction * max(1, len(idx)):
            raise bad_files_error(ds.name, bad, len(bad), len(idx), max_bad_fraction)


class PrepData:
    """What a model's ``prepare`` reads: batches of the training data set streamed from its files.

    ``batches("all" | "labeled" | "unlabeled", limit=None)`` yields (x, y) with y the labels of the
    semi-supervised split (-1 for every image outside the labeled pool), in a seeded random order,
    at most ``limit`` images."""

    def __init__(self, ds, split, device="cpu", seed: int = 0, batch: int = 64, max_bad_fraction: float = 0.01):
        self.ds, self.split, self.device, self.seed = ds, split, torch.device(device), seed
        self.batch, self.max_bad_fraction = batch, max_bad_fraction

    def _indices(self, which):
        if which == "all":
            return np.arange(len(self.ds))
        if which == "labeled":
            return np.asarray(self.split.labeled)
        if which == "unlabeled":
            return np.asarray(self.split.unlabeled)
        raise ValueError(f"which must be all, labeled or unlabeled, got {which!r}")

    def batches(self, which: str = "all", limit: int | None = None):
        idx = self._indices(which)
        idx = idx[np.random.default_rng([self.seed, 7]).permutation(len(idx))]
        if limit is not None:
            idx = idx[:limit]
        split_labels = np.full(len(self.ds), -1, dtype=np.int64)
        split_labels[self.split.labeled] = np.asarray(self.ds.labels)[self.split.labeled]
        yield from stream(self.ds, idx, self.batch, self.device, max_bad_fraction=self.max_bad_fraction,
                          what=f"preparation, {which}", labels=split_labels)

    def __repr__(self):
        return f"PrepData({self.ds.name}, {len(self.split.labeled)} labeled / {len(self.ds)})"

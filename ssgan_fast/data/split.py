"""Semi-supervised split and the fixed-shape batch sampler.

Split: ``make_split(labels, labels_per_class=N | label_fraction=F, seed)`` keeps the labels of N
images per class (or a class-stratified fraction F of the labeled images) and treats every other
image as unlabeled (images already labeled -1 stay unlabeled). The papers' counts: CUB-200 14 per
class (2 800), CIFAR-10 400 per class (4 000), CIFAR-100 100 per class (10 000), FaceScrub-100
20 per class. ``labels_per_class=None, label_fraction=None`` keeps every label (fully supervised).
The split is saved with the run (``save`` / ``load``, JSON with the indices and a fingerprint of
the labels) and reloaded on resume; a fingerprint mismatch (a different data set) is an error.

More: docs/modules.md, section ssgan_fast.data.split.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import DataError

__all__ = ["Split", "make_split", "split_from_file", "SemiSupervisedSampler"]


def _fingerprint(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


@dataclass
class Split:
    labeled: np.ndarray  # int64 indices into the data set
    unlabeled: np.ndarray
    num_classes: int
    seed: int
    rule: str
    fingerprint: str

    def save(self, path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps({"labeled": self.labeled.tolist(), "unlabeled": self.unlabeled.tolist(),
                                   "num_classes": self.num_classes, "seed": self.seed, "rule": self.rule,
                                   "fingerprint": self.fingerprint}))
        tmp.replace(p)

    @classmethod
    def load(cls, path, labels: np.ndarray | None = None) -> Split:
        d = json.loads(Path(path).read_text())
        s = cls(np.array(d["labeled"], dtype=np.int64), np.array(d["unlabeled"], dtype=np.int64), d["num_classes"],
                d["seed"], d["rule"], d["fingerprint"])
        if labels is not None and _fingerprint(labels) != s.fingerprint:
            raise DataError(f"the split saved in {path} was made for other data (label fingerprint "
                            f"{s.fingerprint} != {_fingerprint(labels)}): resume with the same --data")
        return s

    def labeled_counts(self, labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels[self.labeled], minlength=self.num_classes)


def make_split(labels, num_classes: int, labels_per_class: int | None = None, label_fraction: float | None = None,
               seed: int = 0) -> Split:
    labels = np.asarray(labels, dtype=np.int64)
    if labels_per_class is not None and label_fraction is not None:
        raise DataError("give labels_per_class or label_fraction, not both")
    known = np.nonzero(labels >= 0)[0]
    if known.size == 0:
        raise DataError("the data set has no labeled images at all")
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels[known], minlength=num_classes)
    if labels_per_class is not None:
        if not isinstance(labels_per_class, (int, np.integer)) or labels_per_class < 1:
            raise DataError(f"labels_per_class must be a positive int, got {labels_per_class!r}")
        short = [(c, int(n)) for c, n in enumerate(counts) if n < labels_per_class]
        if short:
            raise DataError(f"{labels_per_class} labels per class requested but {len(short)} class(es) have fewer "
                            f"labeled images: {short[:8]}{' ...' if len(short) > 8 else ''} (class, count)")
        take = {c: labels_per_class for c in range(num_classes)}
        rule = f"labels_per_class={labels_per_class}"
    elif label_fraction is not None:
        if not 0 < label_fraction <= 1:
            raise DataError(f"label_fraction must be in (0, 1], got {label_fraction!r}")
        take = {c: max(1, int(round(label_fraction * n))) if n else 0 for c, n in enumerate(counts)}
        rule = f"label_fraction={label_fraction}"
    else:
        take = {c: int(n) for c, n in enumerate(counts)}
        rule = "all labels"
    chosen = []
    for c in range(num_classes):
        idx = known[labels[known] == c]
        chosen.append(rng.permutation(idx)[:take[c]])
    labeled = np.sort(np.concatenate(chosen)).astype(np.int64)
    unlabeled = np.setdiff1d(np.arange(len(labels)), labeled).astype(np.int64)
    return Split(labeled, unlabeled, num_classes, seed, rule, _fingerprint(labels))


class SemiSupervisedSampler:
    """Infinite iterator of (labeled indices [bl], unlabeled indices [bu]) numpy int64 arrays."""

    def __init__(self, split: Split, labels, batch_labeled: int, batch_unlabeled: int, seed: int = 0,
                 class_balanced: bool = False, rank: int = 0, world_size: int = 1):
        if batch_labeled < 0 or batch_unlabeled < 0 or batch_labeled + batch_unlabeled == 0:
            raise DataError(f"batch sizes must be >= 0 and not both 0, got {batch_labeled}, {batch_unlabeled}")
        labels = np.asarray(labels, dtype=np.int64)
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}")
        # DDP: every rank takes a disjoint stride of both pools (same seed everywhere)
        self.lab = split.labeled[rank::world_size]
        self.unl = split.unlabeled[rank::world_size]
        if batch_labeled and self.lab.size == 0:
            raise DataError("the split has no labeled images (per rank) but batch_labeled > 0")
        if batch_unlabeled and self.unl.size < batch_unlabeled:
            raise DataError(f"the unlabeled pool has {self.unl.size} images (per rank), fewer than one batch of "
                            f"{batch_unlabeled}: lower --batch / train.batch_unlabeled to <= {self.unl.size}, or keep "
                            "fewer labels (the labeled pool, unlike the unlabeled one, is cycled and may be smaller "
                            "than its batch)")
        self.bl, self.bu = batch_labeled, batch_unlabeled
        self.seed, self.class_balanced = seed, class_balanced
        self.lab_labels = labels[self.lab]
        self.classes = [self.lab[self.lab_labels == c] for c in range(split.num_classes)]
        self.classes = [c for c in self.classes if c.size]
        self.steps_per_epoch = self.unl.size // self.bu if self.bu else max(1, self.lab.size // max(1, self.bl))
        self.epoch = self.step = 0
        self._lab_pos = 0
        self._lab_round = 0
        self._cache: dict = {}

    def __len__(self) -> int:
        return self.steps_per_epoch

    def _perm(self, n: int, *key) -> np.ndarray:
        """The permutation of round `key` (a pure function of seed and key: resumable)."""
        k = (n, *key)
        p = self._cache.get(k)
        if p is None:
            if len(self._cache) > 4 * (len(self.classes) + 4):
                self._cache.clear()
            p = self._cache[k] = np.random.default_rng([self.seed, *key]).permutation(n)
        return p

    def _labeled(self) -> np.ndarray:
        if not self.bl:
            return np.zeros(0, dtype=np.int64)
        if self.class_balanced:
            out = np.empty(self.bl, dtype=np.int64)
            K = len(self.classes)
            for j in range(self.bl):
                t = self._lab_pos + j
                c = (t + self._lab_round) % K
                pool = self.classes[c]
                k = t // K
                p = self._perm(pool.size, 1, c, k // pool.size)
                out[j] = pool[p[k % pool.size]]
            self._lab_pos += self.bl
            return out
        out = np.empty(self.bl, dtype=np.int64)
        n = self.lab.size
        for j in range(self.bl):
            t = self._lab_pos + j
            out[j] = self.lab[self._perm(n, 2, t // n)[t % n]]
        self._lab_pos += self.bl
        return out

    def __iter__(self):
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self.step >= self.steps_per_epoch:
            self.epoch += 1
            self.step = 0
        lab = self._labeled()
        if self.bu:
            p = self._perm(self.unl.size, 3, self.epoch)
            unl = self.unl[p[self.step * self.bu:(self.step + 1) * self.bu]]
        else:
            unl = np.zeros(0, dtype=np.int64)
        self.step += 1
        return lab, unl

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "lab_pos": self._lab_pos}

    def load_state_dict(self, s: dict) -> None:
        self.epoch, self.step, self._lab_pos = int(s["epoch"]), int(s["step"]), int(s["lab_pos"])


def split_from_file(path, ds, num_classes: int | None = None) -> Split:
    """The labeled subset a user already has (a benchmark's split): a text file with one image
    per line - the layout's image id (CUB-200's images.txt ids), the file's path (absolute, or
    relative to the data set's folder), or for in-memory data sets the image's index. Blank lines
    and lines starting with # are ignored. Every listed image must exist in the data set and carry
    a label; the others are unlabeled. The split's rule records the file and its sha256."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"--labeled: file {p} does not exist")
    entries = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not entries:
        raise DataError(f"--labeled: {p} lists no images")
    labels = np.asarray(ds.labels, dtype=np.int64)
    lookup: dict[str, int] = {}
    files = getattr(ds, "files", None)
    if files is not None:
        root = Path(getattr(ds, "root", "") or "/")
        for i, f in enumerate(files):
            fp = Path(f)
            lookup[str(fp)] = lookup[str(fp.resolve())] = i
            try:
                lookup[str(fp.relative_to(root))] = i
                lookup[str(fp.relative_to(root / "images"))] = i  # CUB's images.txt paths
            except ValueError:
                pass
    for i, k in enumerate(getattr(ds, "ids", None) or []):
        lookup[str(k)] = i
    if files is None and not getattr(ds, "ids", None):
        lookup.update((str(i), i) for i in range(len(labels)))
    found, missing = [], []
    for e in entries:
        i = lookup.get(e)
        if i is None and files is not None:  # an absolute path written another way (~, .., symlinks)
            i = lookup.get(str(Path(e).expanduser().resolve()))
        if i is None:
            missing.append(e)
        else:
            found.append(i)
    if missing:
        raise DataError(f"--labeled {p}: {len(missing)} of {len(entries)} entries are not images of {ds.name}, "
                        f"e.g. {missing[:3]} (give image ids, paths relative to the data folder, or indices)")
    idx = np.unique(np.array(found, dtype=np.int64))
    unl = idx[labels[idx] < 0]
    if unl.size:
        raise DataError(f"--labeled {p}: {unl.size} listed image(s) have no label in {ds.name}, e.g. index {unl[0]}")
    nc = ds.num_classes if num_classes is None else num_classes
    unlabeled = np.setdiff1d(np.arange(len(labels)), idx).astype(np.int64)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return Split(idx, unlabeled, nc, 0, f"labeled_file={p.resolve()} sha256={digest}", _fingerprint(labels))

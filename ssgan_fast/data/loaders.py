"""Loaders: one interface, an infinite iterator of batches {x_l, y_l, x_u} on the training device,
images in [-1, 1] (NCHW float32) or 2-D points, with static shapes (batch_labeled, batch_unlabeled).

More: docs/modules.md, section ssgan_fast.data.loaders.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .augment import Augment
from .datasets import ZIP_SEP, DataError, ImageDataset, PointDataset
from .split import SemiSupervisedSampler, Split

log = logging.getLogger("ssgan_fast")

__all__ = ["TensorLoader", "TorchLoader", "DaliLoader", "make_loader", "dali_available", "LOADERS"]

LOADERS = ("auto", "tensor", "torch", "dali")


def dali_available() -> tuple[bool, str]:
    try:
        import nvidia.dali  # noqa: F401
        from nvidia.dali.plugin import pytorch  # noqa: F401
    except Exception as e:
        return False, f"NVIDIA DALI is not installed ({type(e).__name__}: {e}); pip install .[dali]"
    return True, ""


def _scan(ds: ImageDataset, indices: np.ndarray, threads: int = 8) -> np.ndarray:
    """Indices (of `indices`) whose files decode; the rest are reported."""
    with ThreadPoolExecutor(threads) as ex:
        good = np.fromiter((im is not None for im in ex.map(ds.try_load, indices)), dtype=bool, count=len(indices))
    return good


class _Base:
    x_shape: tuple

    def __init__(self, ds, split: Split, batch_labeled: int, batch_unlabeled: int, device, seed: int,
                 class_balanced: bool, max_bad_fraction: float, rank: int, world_size: int):
        if len(ds) == 0:
            raise DataError(f"{ds.name} is empty")
        self.ds, self.split = ds, split
        self.bl, self.bu = batch_labeled, batch_unlabeled
        self.device = torch.device(device)
        self.seed = seed
        self.max_bad_fraction = max_bad_fraction
        self.bad = 0
        self.bad_files: list = []
        self.labels = np.asarray(ds.labels, dtype=np.int64)
        attrs = getattr(ds, "attrs", None)
        self.attrs = None if attrs is None else np.asarray(attrs, dtype=np.float32)
        self.sampler = SemiSupervisedSampler(split, self.labels, batch_labeled, batch_unlabeled, seed, class_balanced,
                                             rank, world_size)

    def __iter__(self):
        return self

    def _check_bad(self, seen: int, when: str):
        if self.bad:
            frac = self.bad / max(1, seen)
            log.warning("%s: %d corrupt or unreadable image(s) skipped %s (%.2f%%)", self.ds.name, self.bad, when,
                        100 * frac)
            if frac > self.max_bad_fraction:
                from .stream import bad_files_error
                raise bad_files_error(self.ds.name, self.bad_files, self.bad, seen, self.max_bad_fraction)

    def next_into(self, buffers: dict) -> dict:
        """Copy the next batch into static buffers (same keys and shapes); returns buffers."""
        b = next(self)
        for k, v in b.items():
            buffers[k].copy_(v, non_blocking=True)
        return buffers

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, s: dict) -> None:
        self.sampler.load_state_dict(s["sampler"])

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)


class TensorLoader(_Base):
    """The data set resident on the device as uint8 (points as float32)."""

    def __init__(self, ds, split, batch_labeled, batch_unlabeled, device="cpu", augment: Augment | None = None,
                 seed: int = 0, class_balanced: bool = False, max_bad_fraction: float = 0.01, rank: int = 0,
                 world_size: int = 1):
        arr, bad = None, 0
        if isinstance(ds, ImageDataset) and not ds.in_memory:
            # decode every file once (threads); unreadable ones leave the pools
            arr = np.zeros((len(ds), ds.size, ds.size, ds.channels), dtype=np.uint8)

            def load(i):
                img = ds.try_load(i)
                if img is not None:
                    arr[i] = img
                return img is not None
            with ThreadPoolExecutor(8) as ex:
                good = np.fromiter(ex.map(load, range(len(ds))), dtype=bool, count=len(ds))
            bad = int((~good).sum())
            bad_files = [ds.files[i] for i in np.nonzero(~good)[0]]
            split = Split(split.labeled[good[split.labeled]], split.unlabeled[good[split.unlabeled]], split.num_classes,
                          split.seed, split.rule, split.fingerprint)
            if bad > max_bad_fraction * len(ds):  # named before the split is found empty by what they took away
                from .stream import bad_files_error
                raise bad_files_error(ds.name, bad_files, bad, len(ds), max_bad_fraction)
        super().__init__(ds, split, batch_labeled, batch_unlabeled, device, seed, class_balanced, max_bad_fraction,
                         rank, world_size)
        self.augment = augment or Augment()
        if bad:
            self.bad, self.bad_files = bad, bad_files
            self._check_bad(len(ds), "while loading")
        if isinstance(ds, PointDataset):
            self.data = torch.from_numpy(ds.points).to(self.device)
        else:
            arr = ds.images if arr is None else arr
            self.data = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.label_t = torch.from_numpy(self.labels).to(self.device)
        self.attr_t = None if self.attrs is None else torch.from_numpy(self.attrs).to(self.device)
        self.gen = torch.Generator(self.device).manual_seed(seed)

    def __next__(self) -> dict:
        il, iu = next(self.sampler)
        il = torch.from_numpy(il).to(self.device, non_blocking=True)
        iu = torch.from_numpy(iu).to(self.device, non_blocking=True)
        xl, xu = self.data.index_select(0, il), self.data.index_select(0, iu)
        if isinstance(self.ds, ImageDataset):
            xl, xu = self.augment.to_unit(xl, self.gen), self.augment.to_unit(xu, self.gen)
        out = {"x_l": xl, "y_l": self.label_t.index_select(0, il), "x_u": xu}
        if self.attr_t is not None:
            out["a_l"], out["a_u"] = self.attr_t.index_select(0, il), self.attr_t.index_select(0, iu)
        return out

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict) -> None:
        self.sampler.load_state_dict(s["sampler"])
        self.gen.set_state(s["gen"])


# ----------------------------------------------------------------------------- torch DataLoader

class _Items(torch.utils.data.Dataset):
    """Map-style view: item i -> (uint8 CHW image, label, 1, attributes [A] or [0]) or, if unreadable,
    (the next good item of the same pool, 0). Pools are given per call through the batch sampler's
    (index, pool) pairs."""

    def __init__(self, ds: ImageDataset, pools: dict):
        self.ds, self.pools = ds, pools

    def __len__(self):
        return len(self.ds)

    def _load(self, i):
        return self.ds.load(i)

    def __getitem__(self, key):
        i, pool = key
        ok, failed = 1, -1
        candidates = self.pools[pool]
        pos = int(np.searchsorted(candidates, i))
        for t in range(len(candidates)):
            j = i if t == 0 else int(candidates[(pos + t) % len(candidates)])
            try:
                img = self._load(j)
                attrs = self.ds.attrs[j] if getattr(self.ds, "attrs", None) is not None else np.zeros(0, np.float32)
                return (torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1), int(self.ds.labels[j]), ok,
                        torch.from_numpy(np.asarray(attrs, dtype=np.float32)), failed)
            except Exception:
                ok = 0
                failed = i if failed < 0 else failed
        raise DataError(f"{self.ds.name}: no readable image in the {pool} pool")


class _Batches(torch.utils.data.Sampler):
    def __init__(self, sampler: SemiSupervisedSampler):
        self.s = sampler

    def __iter__(self):
        while True:
            lab, unl = next(self.s)
            yield [(int(i), "l") for i in lab] + [(int(i), "u") for i in unl]


class TorchLoader(_Base):
    def __init__(self, ds, split, batch_labeled, batch_unlabeled, device="cpu", augment: Augment | None = None,
                 seed: int = 0, class_balanced: bool = False, max_bad_fraction: float = 0.01, rank: int = 0,
                 world_size: int = 1, num_workers: int | None = None):
        if isinstance(ds, PointDataset):
            raise DataError("the torch loader is for images; 2-D points use the tensor loader")
        super().__init__(ds, split, batch_labeled, batch_unlabeled, device, seed, class_balanced, max_bad_fraction,
                         rank, world_size)
        self.augment = augment or Augment()
        pools = {"l": np.sort(self.sampler.lab), "u": np.sort(self.sampler.unl)}
        if num_workers is None:
            num_workers = 0 if ds.in_memory else min(8, os.cpu_count() or 1)
        self.dl = torch.utils.data.DataLoader(
            _Items(ds, pools), batch_sampler=_Batches(self.sampler), num_workers=num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0,
            prefetch_factor=4 if num_workers > 0 else None)
        self._it = None
        self.gen = torch.Generator(self.device).manual_seed(seed)
        self.seen = self.steps = 0

    def __next__(self) -> dict:
        if self._it is None:
            self._it = iter(self.dl)
        x, y, ok, a, failed = next(self._it)
        self.bad += int((ok == 0).sum())
        self.bad_files += [self.ds.files[int(i)] for i in failed[failed >= 0][:max(0, 5 - len(self.bad_files))]]
        self.seen += int(ok.numel())
        self.steps += 1
        if self.steps % self.steps_per_epoch == 0:
            self._check_bad(self.seen, f"in epoch {self.steps // self.steps_per_epoch}")
            self.bad = self.seen = 0
            self.bad_files = []
        x = x.to(self.device, non_blocking=True)
        xl, xu = x[:self.bl], x[self.bl:]
        out = {"x_l": self.augment.to_unit(xl, self.gen), "y_l": y[:self.bl].to(self.device, non_blocking=True),
               "x_u": self.augment.to_unit(xu, self.gen)}
        if self.attrs is not None:
            a = a.to(self.device, non_blocking=True)
            out["a_l"], out["a_u"] = a[:self.bl], a[self.bl:]
        return out

    def state_dict(self) -> dict:
        # batches already prefetched by workers are not counted: the sampler is read back by the
        # number of batches handed out, so resume continues where training stopped
        return {"steps": self.steps, "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict) -> None:
        for _ in range(int(s["steps"])):
            next(self.sampler)
        self.steps = int(s["steps"])
        self.gen.set_state(s["gen"])


# ----------------------------------------------------------------------------- DALI

class DaliLoader(_Base):
    """DALI pipelines for the labeled and the unlabeled pool (file data sets).

    Augmentation: random resized crop (area 0.8-1, aspect 3/4-4/3) when ``augment.crop_pad`` or
    ``augment.translate`` is set, else resize + centre crop; flip when ``augment.flip``. DALI shuffles
    itself (seeded); class_balanced sampling is not available with DALI."""

    def __init__(self, ds, split, batch_labeled, batch_unlabeled, device="cuda", augment: Augment | None = None,
                 seed: int = 0, class_balanced: bool = False, max_bad_fraction: float = 0.01, rank: int = 0,
                 world_size: int = 1, num_threads: int = 4, _dali_device: str | None = None):
        ok, why = dali_available()
        if not ok:
            raise DataError(f"--loader dali: {why}")
        dev = torch.device(device)
        if _dali_device is None and (dev.type != "cuda" or not torch.cuda.is_available()):
            raise DataError("--loader dali needs a CUDA device (DALI decodes and augments on the GPU); "
                            "use --loader tensor or torch on CPU")
        if not isinstance(ds, ImageDataset) or ds.in_memory:
            raise DataError("the dali loader reads image files (folder:, cub200:, domains:); in-memory data sets "
                            "use the tensor loader")
        if ds.boxes is not None:
            raise DataError("the dali loader does not crop to bounding boxes; use --loader tensor or torch for cub200 "
                            "with bbox=1")
        if class_balanced:
            raise DataError("class_balanced sampling is not available with the dali loader")
        if getattr(ds, "attrs", None) is not None:
            raise DataError("the dali loader does not carry attribute labels (attrs.csv); use --loader tensor or torch")
        super().__init__(ds, split, batch_labeled, batch_unlabeled, dev, seed, class_balanced, max_bad_fraction,
                         rank, world_size)
        self.augment = augment or Augment()
        pools = {"l": self.sampler.lab, "u": self.sampler.unl}
        seen = len(pools["l"]) + len(pools["u"])
        for k in pools:
            good = _scan(ds, pools[k])
            self.bad += int((~good).sum())
            self.bad_files += [ds.files[int(i)] for i in pools[k][~good]]
            pools[k] = pools[k][good]
        self._check_bad(seen, "before training (pre-scan)")
        dali_dev = _dali_device or "gpu"
        device_id = None if dali_dev == "cpu" else (dev.index if dev.index is not None else torch.cuda.current_device())
        self._iters = {}
        for k, bs in (("l", batch_labeled), ("u", batch_unlabeled)):
            if bs:
                self._iters[k] = self._pipeline(pools[k], bs, dali_dev, device_id, num_threads, seed + (k == "u"))

    def _pipeline(self, idx, bs, dali_dev, device_id, threads, seed):
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali import pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
        files = [self.ds.files[i] for i in idx]
        labels = [int(self.ds.labels[i]) if self.ds.labels[i] >= 0 else 0 for i in idx]
        size, aug = self.ds.size, self.augment

        @pipeline_def(batch_size=bs, num_threads=threads, device_id=device_id, seed=seed)
        def pipe():
            enc, lab = fn.readers.file(files=files, labels=labels, random_shuffle=True, seed=seed, name="reader")
            img = fn.decoders.image(enc, device="mixed" if dali_dev == "gpu" else "cpu", output_type=types.RGB)
            if aug.crop_pad > 0 or aug.translate > 0:
                img = fn.random_resized_crop(img, size=(size, size), random_area=(0.8, 1.0),
                                             random_aspect_ratio=(3 / 4, 4 / 3))
            else:
                img = fn.resize(img, resize_shorter=size)
                img = fn.crop(img, crop=(size, size))
            mirror = fn.random.coin_flip(probability=0.5) if aug.flip else 0
            img = fn.crop_mirror_normalize(img, dtype=types.FLOAT, output_layout="CHW", mean=[127.5] * 3,
                                           std=[127.5] * 3, mirror=mirror)
            return img, lab

        p = pipe()
        p.build()
        return DALIGenericIterator([p], ["x", "y"], reader_name="reader", auto_reset=True,
                                   last_batch_policy=LastBatchPolicy.DROP)

    def _next(self, k):
        it = self._iters[k]
        try:
            b = next(it)
        except StopIteration:  # auto_reset starts the next epoch
            b = next(it)
        return b[0]["x"].to(self.device), b[0]["y"].view(-1).long().to(self.device)

    def __next__(self) -> dict:
        shape = (0, 3, self.ds.size, self.ds.size)
        xl, yl = self._next("l") if "l" in self._iters else (torch.zeros(shape, device=self.device),
                                                             torch.zeros(0, dtype=torch.long, device=self.device))
        xu = self._next("u")[0] if "u" in self._iters else torch.zeros(shape, device=self.device)
        return {"x_l": xl, "y_l": yl, "x_u": xu}

    def state_dict(self) -> dict:
        return {}  # DALI readers are not resumable mid-epoch: a resumed run starts a fresh shuffle

    def load_state_dict(self, s: dict) -> None:
        pass


def make_loader(kind: str, ds, split: Split, batch_labeled: int, batch_unlabeled: int, device="cpu",
                augment: Augment | None = None, seed: int = 0, memory_budget: int | None = None, **kw):
    """The loader `kind` (auto | tensor | torch | dali). auto: tensor when the data fit in memory
    (in-memory sets, points, or decoded size under `memory_budget`), dali for image files on a GPU
    when DALI is installed, else torch; the choice and its reason are logged."""
    if kind not in LOADERS:
        raise DataError(f"unknown loader {kind!r}; choose one of {', '.join(LOADERS)}")
    dev = torch.device(device)
    args = (ds, split, batch_labeled, batch_unlabeled, dev, augment, seed)
    if kind == "auto":
        if memory_budget is None:
            memory_budget = (torch.cuda.get_device_properties(dev).total_memory // 4 if dev.type == "cuda"
                             else 4 << 30)
        ok, why = dali_available()
        zipped = any(ZIP_SEP in f for f in (getattr(ds, "files", None) or [])[:1])
        if zipped:
            ok, why = False, "files inside a zip archive (DALI reads files from disk)"
        if ds.in_memory:
            kind, reason = "tensor", "the data set is in memory"
        elif dev.type == "cuda" and ok and getattr(ds, "boxes", None) is None and getattr(ds, "attrs", None) is None:
            kind, reason = "dali", "image files on a GPU with DALI installed"
        elif ds.nbytes() <= memory_budget:
            kind, reason = "tensor", f"the decoded data set ({ds.nbytes() / 2**20:.0f} MiB) fits the memory budget"
            if dev.type == "cuda":
                reason += f" (dali not used: {why or 'bounding-box crops or attribute labels'})"
        else:
            kind, reason = "torch", (f"{ds.nbytes() / 2**20:.0f} MiB decoded exceeds the budget and "
                                     f"{'no GPU' if dev.type != 'cuda' else why or 'bounding-box crops need PIL'}")
        log.info("loader auto -> %s (%s)", kind, reason)
    if kind == "dali" and getattr(ds, "files", None) and any(ZIP_SEP in f for f in ds.files[:1]):
        raise DataError(f"{ds.name}: the dali loader reads image files from disk, not from a zip archive; use "
                        "--loader torch or tensor (or unzip it and use sg2:<folder>)")
    cls = {"tensor": TensorLoader, "torch": TorchLoader, "dali": DaliLoader}[kind]
    return cls(*args, **kw)

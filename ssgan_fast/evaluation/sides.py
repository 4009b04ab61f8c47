"""The two sides of an evaluation, from whatever the user holds.

Either side (real or generated) may be:

- a data set spec (``digits``, ``cifar10:/path``, ``folder:/path``, ``images:/path``, ``npz:/file.npz``, ...);
- a folder: one sub-folder of images per class (labeled, as ``folder:``) or image files (unlabeled, as
  ``images:``);
- an ``.npz`` file: ``images`` (uint8 [N, H, W, C]) with optional ``labels`` (int [N]), as
  ``python -m ssgan_fast.generate`` writes; or FID statistics ``mu`` / ``sigma`` (pytorch-fid's format,
  ssgan_fast.metrics.stats_io): then only ``fid`` can be computed;
- images in memory: a uint8 NHWC array / tensor or a float NCHW tensor in [-1, 1], or a tuple
  (images, labels);
- a torch DataLoader (or any re-iterable) of (images, labels) or of image batches;
- (generated side only) a callable ``fn(labels [B] int64) -> images [B, C, H, W]`` in [-1, 1], called
  batch by batch (``per_class`` images per class, class by class), under a fixed torch seed each pass;
- (generated side) ``Samples``; (real side) an ``ImageDataset``.

A run folder is resolved by the CLI (``python -m ssgan_fast.evaluate``): the engine lies above this layer.
Unlabeled sides give the metrics that need no classes (FID, KID, IS, precision / recall, density /
coverage); the per-class and classifier metrics ask for labels on both sides.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DataError, ImageDataset, images_to_tensor, open_dataset, stream
from ..data.datasets import IMAGE_EXTS, resize_crop

log = logging.getLogger("ssgan_fast")

__all__ = ["EvalError", "Samples", "StatsSide", "RealSide", "fake_side", "real_side", "is_stats_file"]


class EvalError(ValueError):
    """Bad evaluation input (unknown metrics, label range, sample shapes, no test split)."""


@dataclass
class Samples:
    """Generated samples: int64 labels [N] (the classes they were generated for; -1 = unlabeled) and a
    callable that yields (images [B, C, H, W] in [-1, 1], labels [B]) batches in label order. ``size``:
    their resolution where known up front; ``what``: where they came from (for the result)."""
    labels: torch.Tensor
    batches: Callable[[], Iterable]
    size: int | None = None
    what: str = "samples"
    batch: int | None = None  # the size of every batch but the last, where known (distributed shares align to it)
    shard: Callable[[int, int], Iterable] | None = None  # (lo, hi) -> the batches of samples [lo, hi), where
    # cheaper than drawing every batch (a run's generator: the noise of other ranks' batches, not their images)

    def share(self, rank: int, world: int) -> tuple[int, Iterable]:
        """(first sample, batches) of rank `rank`'s share (ssgan_fast.evaluation.distributed.share); one
        process (world 1): every batch."""
        if world == 1:
            return 0, self.batches()
        from .distributed import share, sliced
        lo, hi = share(len(self), self.batch or max(1, -(-len(self) // world)), rank, world)
        return lo, (self.shard(lo, hi) if self.shard is not None else sliced(self.batches(), lo, hi))

    @classmethod
    def from_arrays(cls, images, labels=None, batch: int = 100, what: str = "arrays") -> Samples:
        """uint8 NHWC images (or a float [-1, 1] NCHW tensor) with int labels (None: unlabeled)."""
        x = _as_unit(images)
        y = (torch.full((x.shape[0],), -1, dtype=torch.int64) if labels is None else
             torch.as_tensor(np.asarray(labels), dtype=torch.int64))
        if y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise EvalError(f"{x.shape[0]} samples but labels of shape {tuple(y.shape)}")
        if x.shape[0] == 0:
            raise EvalError("no samples to evaluate")
        return cls(y, lambda: ((x[i:i + batch], y[i:i + batch]) for i in range(0, x.shape[0], batch)),
                   int(x.shape[-1]), what, batch,
                   lambda lo, hi: ((x[i:min(i + batch, hi)], y[i:min(i + batch, hi)]) for i in range(lo, hi, batch)))

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def labeled(self) -> bool:
        return bool((self.labels >= 0).all())

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*[(x.float().cpu(), y.cpu()) for x, y in self.batches()], strict=False)
        return torch.cat(xs), torch.cat(ys)


@dataclass
class StatsSide:
    """FID statistics of one side (a file): only ``fid`` can use them."""
    mu: torch.Tensor
    sigma: torch.Tensor
    n: int | None
    extractor: str | None
    path: str


@dataclass
class RealSide:
    """The reference side: a data set (file-backed or in memory; ``spec`` where it came from one, for its
    test split) or a statistics file."""
    ds: ImageDataset | None = None
    spec: str | None = None
    stats: StatsSide | None = None
    what: str = ""


def check_float_range(x: torch.Tensor, what: str, warned: set | None = None) -> None:
    """The rule for float images, which must be in [-1, 1] (the generators' tanh range):
    - any |value| > 2: an error (images in [0, 255], or unnormalised outputs: x / 127.5 - 1);
    - every value in [0, 1] (no negative value at all): a warning - [0, 1] images passed where [-1, 1]
      is expected would be read as washed-out images and give wrong metrics (x * 2 - 1);
    - values in (1, 2] or [-2, -1): a warning, they are clamped to [-1, 1] as an image file would be.
    Each warning once per side (``warned``)."""
    lo, hi = float(x.min()), float(x.max())
    if max(abs(lo), abs(hi)) > 2:
        raise EvalError(f"{what}: float images must be in [-1, 1], these span [{lo:.3g}, {hi:.3g}] (images in "
                        "[0, 255]: pass x / 127.5 - 1, or uint8 NHWC)")
    warned = set() if warned is None else warned
    if lo >= 0 and hi <= 1 and "unit" not in warned and x.numel() > 1:
        warned.add("unit")
        log.warning("%s: every value is in [0, 1], as images in [0, 1] would be; the metrics read them as [-1, 1] "
                    "(pass x * 2 - 1 if they are [0, 1] images)", what)
    if (lo < -1 - 1e-3 or hi > 1 + 1e-3) and "clamp" not in warned:
        warned.add("clamp")
        log.warning("%s: values in [%.3g, %.3g] are clamped to [-1, 1]", what, lo, hi)


def _as_unit(images) -> torch.Tensor:
    """uint8 NHWC (array / tensor) or float NCHW in [-1, 1] -> float32 NCHW in [-1, 1]."""
    if torch.is_tensor(images) and images.is_floating_point():
        x = images.detach().float().cpu()
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise EvalError(f"float images must be [N, 1 or 3, H, W] in [-1, 1], got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise EvalError("the images hold NaN or inf values")
        check_float_range(x, "the float images")
        return x.clamp(-1, 1)
    a = images.cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise EvalError(f"images must be uint8 [N, H, W, 1|3|4] or float [N, C, H, W] in [-1, 1]; got "
                        f"{a.shape} {a.dtype}")
    return images_to_tensor(np.ascontiguousarray(a[..., :3]))


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC (as an image file would hold them)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def is_stats_file(path) -> bool:
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return False
    try:
        with np.load(p) as z:
            return "mu" in z and "sigma" in z and "images" not in z
    except (OSError, ValueError):
        return False


def _stats_side(path) -> StatsSide:
    from ..metrics.stats_io import StatsFileError, load_fid_stats
    try:
        s = load_fid_stats(path)
    except StatsFileError as e:
        raise EvalError(str(e)) from None
    return StatsSide(s["mu"], s["sigma"], s["n"], s["extractor"], str(Path(path).resolve()))


def _npz_images(path: Path):
    """(uint8 images NHWC, int64 labels or None) of an images .npz."""
    try:
        with np.load(path) as z:
            if "images" not in z:
                raise EvalError(f"{path} must hold 'images' (uint8 [N, H, W, C]) and optionally 'labels' (int [N]), "
                                f"or FID statistics 'mu' and 'sigma'; it has {list(z.keys())}")
            imgs = z["images"]
            labels = z["labels"].astype(np.int64) if "labels" in z else None
    except (OSError, ValueError) as e:
        if isinstance(e, EvalError):
            raise
        raise EvalError(f"{path} is not a readable .npz ({e})") from None
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[-1] not in (1, 3, 4):
        raise EvalError(f"{path}: images must be uint8 [N, H, W, 1|3|4]; got {imgs.shape} {imgs.dtype}")
    if labels is not None and labels.shape != (imgs.shape[0],):
        raise EvalError(f"{path}: labels must have shape [{imgs.shape[0]}], got {labels.shape}")
    if imgs.shape[0] == 0:
        raise EvalError(f"{path} holds no images")
    return imgs[..., :3], labels


def _folder_spec(p: Path) -> str:
    """folder:P where P has class sub-folders holding images, else images:P (unlabeled)."""
    subs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
    flat = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS]
    if subs and not flat:
        return f"folder:{p}"
    if flat and subs:
        log.warning("%s holds image files next to sub-folders: read as one unlabeled set (images:)", p)
    return f"images:{p}"


def _spec_of(obj) -> tuple[str, Path | None]:
    """A string / path -> (data set spec, path of an .npz or None)."""
    s = str(obj)
    if ":" in s.split("/")[0] and not Path(s).exists():  # name:path, a data set spec
        return s, None
    p = Path(s).expanduser()
    if p.is_dir():
        return _folder_spec(p), None
    if p.suffix.lower() == ".npz":
        if not p.is_file():
            raise EvalError(f"{p} does not exist")
        return "", p
    if p.exists():
        raise EvalError(f"{p} is neither a folder nor an .npz file")
    if "/" in s and ":" not in s:
        raise EvalError(f"{p} does not exist")
    return s, None


def _open(spec: str, size: int | None, split: str = "train") -> ImageDataset:
    try:
        ds = open_dataset(spec, split, size or 32)
    except DataError as e:
        raise EvalError(str(e)) from None
    if ds.kind != "image":
        raise EvalError(f"{spec} is not an image data set")
    if len(ds) == 0:
        raise EvalError(f"{spec} holds no images")
    return ds


def _first_size(ds: ImageDataset) -> int:
    """The resolution of a file-backed set's first image (square images only)."""
    from ..data.datasets import open_image
    with open_image(ds.files[0]) as im:
        w, h = im.size
    if w != h:
        raise EvalError(f"{ds.files[0]} is {w} x {h}: give the evaluation resolution (--size / size=)")
    return w


def _materialise(batches: Iterable, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A loader's (images, labels) or image batches, read once, as uint8 NHWC on the host (+ labels)."""
    xs, ys, labeled = [], [], None
    for b in batches:
        x, y = (b[0], b[1]) if isinstance(b, (tuple, list)) else (b, None)
        if labeled is None:
            labeled = y is not None
        elif labeled != (y is not None):
            raise EvalError(f"{what}: some batches have labels and some not")
        xs.append(_to_uint8(_as_unit(x)))
        if y is not None:
            ys.append(torch.as_tensor(y).long().cpu().numpy().reshape(-1))
    if not xs:
        raise EvalError(f"{what} yielded no images")
    imgs = np.concatenate(xs)
    labels = np.concatenate(ys) if labeled else None
    if labels is not None and labels.shape[0] != imgs.shape[0]:
        raise EvalError(f"{what}: {imgs.shape[0]} images but {labels.shape[0]} labels")
    return imgs, labels


def _memory_set(imgs: np.ndarray, labels, name: str, size: int | None) -> ImageDataset:
    labels = np.full(imgs.shape[0], -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    if size is not None and imgs.shape[1:3] != (size, size):
        imgs = np.stack([resize_crop(im, size) for im in imgs])
    known = labels[labels >= 0]
    return ImageDataset(name, labels, int(known.max()) + 1 if known.size else 0, int(imgs.shape[1]),
                        channels=int(imgs.shape[-1]), images=np.ascontiguousarray(imgs))


def real_side(obj, size: int | None = None) -> RealSide:
    """The reference side from any of the forms of the module docstring; ``size``: the resolution its
    images are brought to (None: a data set's default or the images' own)."""
    if isinstance(obj, RealSide):
        return obj
    if isinstance(obj, StatsSide):
        return RealSide(stats=obj, what=obj.path)
    if isinstance(obj, ImageDataset):
        return RealSide(ds=obj, what=obj.name)
    if isinstance(obj, (str, Path)):
        spec, npz = _spec_of(obj)
        if npz is not None:
            if is_stats_file(npz):
                st = _stats_side(npz)
                return RealSide(stats=st, what=st.path)
            imgs, labels = _npz_images(npz)
            return RealSide(ds=_memory_set(imgs, labels, f"npz-images:{npz.resolve()}", size), what=str(npz.resolve()))
        ds = _open(spec, size)
        if size is None and not ds.in_memory and spec.split(":")[0] in ("folder", "images"):
            ds = _open(spec, _first_size(ds))
        return RealSide(ds=ds, spec=spec, what=ds.name)
    if isinstance(obj, Samples):
        x, y = obj.tensors()
        return RealSide(ds=_memory_set(_to_uint8(x), y.numpy(), f"samples:{obj.what}", size), what=obj.what)
    if isinstance(obj, tuple) and len(obj) == 2:
        imgs = _to_uint8(_as_unit(obj[0]))
        return RealSide(ds=_memory_set(imgs, np.asarray(obj[1]).reshape(-1), "arrays", size), what="arrays")
    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        return RealSide(ds=_memory_set(_to_uint8(_as_unit(obj)), None, "arrays", size), what="arrays")
    if callable(obj):
        raise EvalError("the real side cannot be a generator callable; give a data set, images or statistics")
    if isinstance(obj, Iterable):
        imgs, labels = _materialise(obj, "the real loader")
        return RealSide(ds=_memory_set(imgs, labels, f"loader:{type(obj).__name__}", size),
                        what=f"loader ({type(obj).__name__})")
    raise EvalError(f"cannot evaluate against a {type(obj).__name__}: give a data set spec, a folder, an .npz, "
                    "images, a loader or FID statistics")


def _dataset_samples(ds: ImageDataset, batch: int, what: str) -> Samples:
    """A data set as generated samples: streamed from its files; no unreadable file is tolerated."""
    def batches():
        return stream(ds, None, batch, "cpu", max_bad_fraction=0.0, what=f"samples {what}")
    def shard(lo, hi):
        return stream(ds, np.arange(lo, hi), batch, "cpu", max_bad_fraction=0.0, what=f"samples {what}")
    return Samples(torch.as_tensor(np.asarray(ds.labels), dtype=torch.int64), batches, ds.size, what, batch, shard)


def _generator_samples(fn, num_classes: int, per_class: int, batch: int, seed: int) -> Samples:
    """A generator callable fn(labels) -> images, called class by class under a fixed torch seed."""
    nc = max(1, num_classes)
    labels = torch.arange(nc).repeat_interleave(per_class)
    out_labels = labels if num_classes else torch.full_like(labels, -1)

    warned = set()

    def batches():
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available()
                                   else []):
            torch.manual_seed(seed)
            for i in range(0, labels.shape[0], batch):
                y = labels[i:i + batch]
                with torch.no_grad():
                    x = fn(y)
                if not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 4 or x.shape[0] != y.shape[0]:
                    got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
                    raise EvalError(f"the generator callable must return float images [{y.shape[0]}, C, H, W] in "
                                    f"[-1, 1] for {y.shape[0]} labels, got {got}")
                if not bool(torch.isfinite(x).all()):
                    raise EvalError(f"the generator callable returned NaN / inf images (batch {i // batch})")
                check_float_range(x, "the generator callable's images", warned)
                yield x.detach().float().clamp(-1, 1), out_labels[i:i + batch]
    return Samples(out_labels, batches, None, getattr(fn, "__name__", "generator callable"), batch)


def fake_side(obj, size: int | None = None, batch: int = 100, num_classes: int = 0, per_class: int = 100,
              seed: int = 0) -> Samples | StatsSide:
    """The generated side from any of the forms of the module docstring (``num_classes`` / ``per_class``
    for a generator callable; ``size`` for folders of files of other sizes)."""
    if isinstance(obj, (Samples, StatsSide)):
        return obj
    if isinstance(obj, ImageDataset):
        return _dataset_samples(obj, batch, obj.name)
    if isinstance(obj, (str, Path)):
        spec, npz = _spec_of(obj)
        if npz is not None:
            if is_stats_file(npz):
                return _stats_side(npz)
            imgs, labels = _npz_images(npz)
            return Samples.from_arrays(imgs, labels, batch, str(npz.resolve()))
        ds = _open(spec, size)
        if size is None and not ds.in_memory and spec.split(":")[0] in ("folder", "images"):
            ds = _open(spec, _first_size(ds))
        return _dataset_samples(ds, batch, ds.name)
    if isinstance(obj, tuple) and len(obj) == 2:
        return Samples.from_arrays(obj[0], obj[1], batch)
    if torch.is_tensor(obj) or isinstance(obj, np.ndarray):
        return Samples.from_arrays(obj, None, batch)
    if callable(obj):
        if per_class < 1:
            raise EvalError(f"per_class must be >= 1, got {per_class}")
        return _generator_samples(obj, num_classes, per_class, batch, seed)
    if isinstance(obj, Iterable):
        imgs, labels = _materialise(obj, "the generated loader")
        return Samples.from_arrays(imgs, labels, batch, f"loader ({type(obj).__name__})")
    raise EvalError(f"cannot evaluate a {type(obj).__name__} as generated samples: give Samples, images, a folder, "
                    "an .npz, a loader, a generator callable or FID statistics")

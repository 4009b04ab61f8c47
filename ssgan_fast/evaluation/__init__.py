"""Evaluation of generated samples against a reference: the library function behind
``python -m ssgan_fast.evaluate`` and the trainer's periodic and final metrics. Either side may be a
data set spec, a folder, an .npz of images or of FID statistics, images in memory, a loader, or (the
generated side) a generator callable: ssgan_fast.evaluation.sides.

More: docs/modules.md, section ssgan_fast.evaluation.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..data import DataError, open_dataset, stream
from ..data.datasets import RESIZE_RULE
from ..metrics import (
    FIDInceptionV3,
    WeightsError,
    cfid,
    collect,
    fid,
    intra_fid,
    train_classifier,
    train_classifier_batches,
)
from ..metrics.cache import cached, from_portable, lookup, portable, store
from ..metrics.classifier import check_classifier_arch, classifier_from_config
from ..metrics.inception import RESIZE_MODES
from ..metrics.kid import KID_SEED, KID_SUBSET_SIZE, intra_kid, kid, kid_memory_bytes
from ..metrics.manifold import manifold_memory_bytes, manifold_metrics
from ..metrics.stats_io import StatsFileError, check_fid_stats, load_fid_stats, save_fid_stats
from ..ops import frechet_distance
from ..weights import sha256_file, weights_dir
from .distributed import barrier as dist_barrier
from .distributed import broadcast, merge, rank_world
from .distributed import share as dist_share
from .sides import EvalError, RealSide, Samples, StatsSide, fake_side, real_side

log = logging.getLogger("ssgan_fast")

METRICS = ("fid", "intra_fid", "cfid", "is", "ra", "gan_train", "gan_test", "avg_conf", "kid", "intra_kid", "pr",
           "intra_pr", "dc")
# the metrics that need the features themselves (kept on the host, float32), not only their moments
_KEPT = ("kid", "intra_kid", "pr", "intra_pr", "dc")
K_PR, K_DC = 3, 5  # Kynkaenniemi et al. (pr50k3), Naeem et al.
# auto: the FID Inception where its weights are present, else the classifier; inception: pytorch-fid's port;
# inception-tf: stylegan2-ada / clean-fid's TorchScript; dinov2: FD_DINOv2's ViT-L/14; clip / clip-l14: OpenAI CLIP
# ViT-B/32 / ViT-L/14 image embeddings; *-random: the same architectures with random weights (tests of the path)
EXTRACTORS = ("auto", "inception", "classifier", "inception-tf", "dinov2", "clip", "clip-l14", "inception-random",
              "dinov2-random", "clip-random")
# the result keys' suffix per feature space other than the FID Inception's (fid_clf, fid_dinov2, kid_clip, ...),
# and with VGG-16's precision / recall (precision_vgg16)
FEATURE_SPACE_SUFFIXES = ("_clf", "_dinov2", "_clip")
SPACE_SUFFIXES = (*FEATURE_SPACE_SUFFIXES, "_vgg16")
# the features of precision / recall: the extractor's (StudioGAN's choice), or VGG-16 fc2 (pr50k3's)
PR_FEATURES = ("extractor", "vgg16", "vgg16-random")
# the host dtype of the kept features (float16: half the memory; effect in bench/results/.../knn.json)
KEPT_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_FID_FAMILY = ("fid", "intra_fid", "cfid")
IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng seed for the IS shuffle
# the metrics that need classes on both sides
_NEEDS_LABELS = ("intra_fid", "cfid", "ra", "gan_train", "gan_test", "avg_conf", "intra_kid", "intra_pr")

__all__ = ["evaluate", "Samples", "METRICS", "EXTRACTORS", "FEATURE_SPACE_SUFFIXES", "PR_FEATURES", "KEPT_DTYPES",
           "EvalError", "data_hash", "parse_metrics", "test_accuracy"]


class Metrics(dict):
    """The result's metrics: a dict whose missing key says where the value is (fid -> fid_clf when the
    evaluation ran in the classifier's feature space)."""

    def __missing__(self, key):
        for sfx in FEATURE_SPACE_SUFFIXES:
            for alt in (f"{key}{sfx}", f"{key.removesuffix('_mean')}{sfx}_mean", f"{key}{sfx}_mean"):
                if alt in self:
                    raise KeyError(f"{key!r}: this evaluation ran in another feature space than the FID Inception's "
                                   f"(see 'feature_space'), so the value is under {alt!r}")
        raise KeyError(f"{key!r} is not among the computed metrics: {', '.join(self)}")


_LOWER_IS_BETTER = ("fid", "intra_fid", "cfid", "kid", "intra_kid", "fd")


def _base_key(key: str) -> str:
    """A result key without its feature-space suffix and _mean / _std: fid_dinov2 -> fid, is_clf_mean -> is."""
    for sfx in SPACE_SUFFIXES:
        key = key.split(sfx)[0]
    return key.removesuffix("_mean").removesuffix("_std")


def higher_is_better(key: str) -> bool:
    """The direction of a result key (fid_clf, is_clf_mean, ra, precision_vgg16, fid_dinov2, c_acc, ...):
    distances (FID, Intra-FID, cFID, KID, FD) are better lower, every score and accuracy higher."""
    base = _base_key(key)
    return base not in _LOWER_IS_BETTER and not base.startswith("fd_")


def metric_of(key: str) -> str | None:
    """The evaluate metric (fid, is, pr, ...) a result key comes from; c_acc: the model's classifier."""
    base = _base_key(key)
    if base in METRICS or base == "c_acc":
        return base
    return {"precision": "pr", "recall": "pr", "density": "dc", "coverage": "dc", "intra_precision": "intra_pr",
            "intra_recall": "intra_pr"}.get(base)


def parse_metrics(metrics) -> list[str]:
    ms = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in ms if m not in METRICS]
    if bad or not ms:
        raise EvalError(f"unknown metric(s) {bad or ms}; choose from {', '.join(METRICS)}")
    return ms


def data_hash(ds) -> str:
    """A hash of what the data set holds: file names, sizes and mtimes (file-backed) or pixels."""
    h = hashlib.sha256()
    if ds.in_memory:
        h.update(np.ascontiguousarray(ds.images).tobytes())
    else:
        from ..data.datasets import file_signature
        for f in ds.files:
            h.update(f"{f}\0{file_signature(f)}\n".encode())
        if ds.boxes is not None:
            h.update(np.ascontiguousarray(ds.boxes).tobytes())
    h.update(np.ascontiguousarray(ds.labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _random_vgg16():
    from ..metrics.vgg16 import VGG16Features
    return VGG16Features(pretrained=False)


def _vgg16(kind: str, device):
    """The P/R feature network of ``pr_features`` (vgg16: the registry weights; vgg16-random: tests)."""
    from ..metrics.vgg16 import VGG16Features
    if kind == "vgg16-random":
        return _random_vgg16().to(device)
    try:
        return VGG16Features(pretrained=True).to(device)
    except WeightsError as e:
        raise EvalError(f"pr_features=vgg16 needs the VGG-16 weights: {e}") from None


@functools.lru_cache(maxsize=4)
def _random_inception(mode: str, input_size: int = 299) -> FIDInceptionV3:
    """The random-weight FID Inception, seeded: the same weights (and cache key) in every call; built once
    a process (frozen, so sharing it is safe). ``input_size``: see FIDInceptionV3 (the tests use 75)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FIDInceptionV3(pretrained=False, resize=mode, input_size=input_size)


@functools.lru_cache(maxsize=2)
def _random_extractor(kind: str):
    from ..metrics.extractors import CLIPFeatures, DINOv2Features
    if kind == "dinov2-random":
        return DINOv2Features(pretrained=False, arch="vits14")
    return CLIPFeatures(pretrained=False)


_EXTRACTOR_MEMO: dict = {}  # (kind, resize, device, weights file signature) -> the extractor, frozen


def _kept(kind: str, weights: str, device, resize: str, build):
    """The extractor of `kind` built once a process per device, resize mode and weights file (its size and
    mtime: a replaced file builds anew): a trainer's periodic evaluations reuse it. Extractors are frozen
    (eval, no grad), so sharing one is safe."""
    from ..weights import REGISTRY
    path = weights_dir() / REGISTRY[weights].file
    sig = (path.stat().st_size, path.stat().st_mtime_ns) if path.is_file() else None
    key = (kind, resize, str(torch.device(device)), sig)
    if key not in _EXTRACTOR_MEMO:
        net = build().to(device)  # raises WeightsError for a missing / wrong file (nothing kept)
        for k in [k for k in _EXTRACTOR_MEMO if k[:3] == key[:3]]:
            del _EXTRACTOR_MEMO[k]  # the extractor of a replaced file
        _EXTRACTOR_MEMO[key] = net
    return _EXTRACTOR_MEMO[key]


def _other_extractor(kind: str, device):
    """The inception-tf / dinov2 / clip extractors (weights from the registry; *-random: built once a process,
    DINOv2 at its small ViT-S/14 size to keep the tests cheap)."""
    from ..metrics.extractors import CLIPFeatures, DINOv2Features, InceptionTF
    if kind.endswith("-random"):
        return _random_extractor(kind).to(device)
    try:
        if kind == "inception-tf":
            return _kept(kind, "inception-tf", device, "", InceptionTF)
        if kind == "dinov2":
            return _kept(kind, "dinov2-vitl14", device, "", DINOv2Features)
        arch = "vit-l14" if kind == "clip-l14" else "vit-b32"
        return _kept(kind, f"clip-{arch}-openai", device, "", lambda: CLIPFeatures(arch=arch))
    except WeightsError as e:
        raise EvalError(f"--extractor {kind} needs its weights: {e}") from None


def _extractor(kind: str, device, resize: str | None = None):
    """(extractor or None for the classifier, note): ``resize`` is the Inception's input resize mode
    (None: legacy_pytorch); asking for one with the classifier extractor is an error."""
    if kind not in EXTRACTORS:
        raise EvalError(f"unknown extractor {kind!r}; choose from {', '.join(EXTRACTORS)}")
    if resize is not None and resize not in RESIZE_MODES:
        raise EvalError(f"unknown resize mode {resize!r}; choose from {', '.join(RESIZE_MODES)}")
    mode = resize or "legacy_pytorch"
    if kind == "classifier":
        if resize is not None:
            raise EvalError(f"resize {resize!r} is the Inception's input resize; the classifier extractor runs at the "
                            "data resolution")
        return None, None
    if kind in ("inception-tf", "dinov2", "clip", "clip-l14", "dinov2-random", "clip-random"):
        if resize is not None:
            raise EvalError(f"resize {resize!r} is the pytorch-fid Inception's input resize; the {kind} extractor "
                            "resizes its own way (see the result's extractor_resize)")
        return _other_extractor(kind, device), (
            f"random-weight {kind.removesuffix('-random')} (a test of the code path; the numbers mean nothing)"
            if kind.endswith("-random") else None)
    def inception():
        return _kept("inception", "inception-fid", device, mode, lambda: FIDInceptionV3(pretrained=True, resize=mode))
    if kind == "inception":
        return inception(), None
    if kind == "inception-random":
        return (_random_inception(mode).to(device),
                "random-weight Inception (a test of the code path; the numbers mean nothing)")
    try:  # auto
        return inception(), None
    except WeightsError as e:
        if resize is not None:
            raise EvalError(f"resize {resize!r} needs the FID Inception, whose weights are unavailable ({e})") from None
        note = f"FID Inception weights unavailable ({e}); the metrics use the classifier's feature space (_clf)"
        log.warning("%s", note)
        return None, note


def _match_channels(batches, channels: int, data: str):
    """The sample batches brought to the real images' channel count where that loses nothing (gray
    repeated to RGB, or RGB whose channels are equal to gray): the classifier takes only that. Checked
    as they stream, so no batch is generated twice. Colour samples against a grayscale reference are
    converted to gray (ITU-R 601 luma, as PIL's convert("L")) with one warning; any other mismatch is an
    error naming both sides."""
    warned = False
    for x, y in batches:
        if x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and channels == 1:
            if not bool((x[:, :1] == x[:, 1:]).all()):
                if not warned:
                    log.warning("the generated images are RGB but %s is grayscale: they are converted to gray "
                                "(luma 0.299 R + 0.587 G + 0.114 B) for the classifier", data)
                    warned = True
                x = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            else:
                x = x[:, :1]
        elif x.shape[1] != channels:
            raise EvalError(f"the generated images have {x.shape[1]} channel(s) but the reference {data} has "
                            f"{channels}")
        yield x, y


SHIPPED_DIR = Path(__file__).parent / "classifiers"


@functools.cache
def _shipped_manifest() -> dict:
    import json
    try:
        with open(SHIPPED_DIR / "manifest.json") as f:
            return json.load(f)["files"]
    except FileNotFoundError:
        return {}


def shipped_classifier(name: str) -> Path | None:
    """The classifier file of that name shipped with the package (the built-in digits at the sizes, seeds and
    epochs that the default run and evaluate() use), checked against the sha256 of its manifest; None where
    none is shipped. A shipped file that fails its check is an error, not a silent retraining."""
    entry = _shipped_manifest().get(name)
    if entry is None:
        return None
    path = SHIPPED_DIR / name
    if not path.is_file() or sha256_file(path) != entry["sha256"]:
        raise EvalError(f"the shipped classifier {path} is missing or does not match its sha256 "
                        f"{entry['sha256'][:12]}... in {SHIPPED_DIR / 'manifest.json'}: reinstall ssgan_fast")
    return path


def get_classifier(spec: str, size: int, ds, device, epochs: int = 30, seed: int = 0, path=None, train: bool = True,
                   batch: int = 64, max_bad_fraction: float = 0.01, arch: str = "small"):
    """The RA / GAN-test classifier of a data set: loaded from `path`, from the weights folder (keyed by
    the data set's hash, the resolution, epochs, seed and architecture) or from the ones shipped with the
    package (shipped_classifier), else trained on the real training split (streamed; one decode pass per
    epoch) and saved in the weights folder. (model, path, sha256)."""
    if path is None:
        key = f"{ds.name.split(':')[0]}-{data_hash(ds)}-{size}-s{seed}-e{epochs}" + ("" if arch == "small" else
                                                                                    f"-{arch}")
        path = weights_dir() / f"classifier-{key}.pt"
        if not path.is_file():  # the package ships the built-in digits' common ones (tools/ship_classifiers.py)
            path = shipped_classifier(path.name) or path
    path = Path(path)
    if not path.is_file():
        if not train:
            raise EvalError(f"classifier file {path} does not exist (train one with --train-classifier)")
        lab = np.nonzero(np.asarray(ds.labels) >= 0)[0]
        if len(lab) < 2 or ds.num_classes < 2:
            raise EvalError(f"{spec}: training the RA classifier needs >= 2 labeled images of >= 2 classes")
        log.warning("training the RA classifier (%s) on %s: %d images, %d epochs - once for this data set, "
                    "resolution and seed; cached in %s", arch, ds.name, len(lab), epochs, path)
        rng = np.random.default_rng(seed)
        t_start = time.perf_counter()

        def report(e, seconds):  # the first epoch gives the estimate; then every quarter of the epochs
            done = e + 1
            if done == 1 or done == epochs or done % max(1, epochs // 4) == 0:
                left = (time.perf_counter() - t_start) / done * (epochs - done)
                log.warning("RA classifier: epoch %d / %d (%.1f s an epoch), about %.0f s left", done, epochs,
                            seconds, left)

        def epoch(_):
            for x, y in stream(ds, rng.permutation(lab), batch, device, max_bad_fraction=max_bad_fraction,
                               what="classifier training"):
                if x.shape[0] >= 2:
                    yield x, y
        model = train_classifier_batches(epoch, ds.num_classes, ds.channels, size, max(1, len(lab) // batch), epochs,
                                         seed=seed, device=device, arch=arch, on_epoch=report)
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"config": model.config(), "state_dict": model.state_dict()}, tmp)
            tmp.replace(path)
        except (OSError, RuntimeError) as e:  # torch.save reports a full disk as RuntimeError
            tmp.unlink(missing_ok=True)
            log.warning("the trained RA classifier is not cached (%s: %s); it is used from memory", path,
                        str(e).splitlines()[0] if str(e) else type(e).__name__)
            return model.to(device).eval().requires_grad_(False), None, None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = classifier_from_config(blob["config"])
        model.load_state_dict(blob["state_dict"])
    except Exception as e:  # noqa: BLE001
        raise EvalError(f"classifier file {path} is damaged or not a classifier ({type(e).__name__}: {e})") from None
    return model.to(device).eval().requires_grad_(False), str(path), sha256_file(path)


@torch.no_grad()
def test_accuracy(predict: Callable[[torch.Tensor], torch.Tensor], ds, device, batch: int = 100,
                  max_bad_fraction: float = 0.01) -> float:
    """% of a (test) data set's labeled images that `predict` (images -> classes) gets right,
    streamed from its files."""
    hits = n = 0
    for x, y in stream(ds, np.nonzero(np.asarray(ds.labels) >= 0)[0], batch, device,
                       max_bad_fraction=max_bad_fraction, what="test accuracy"):
        hits += int((predict(x).to(y.device) == y).sum())
        n += int(y.shape[0])
    if n == 0:
        raise EvalError(f"{ds.name}: the test split has no readable labeled image")
    return 100.0 * hits / n


def open_test(spec: str, size: int):
    """The data set's own test split, or None (with the reason) where it has none or it is empty."""
    try:
        test = open_dataset(spec, "test", size)
    except DataError as e:
        return None, str(e)
    if len(test) == 0:
        return None, f"{spec}: the test split is empty"
    return test, None


def _kept_metrics(metrics, ref, got, nc: int, suffix: str, out: dict):
    """KID / Intra-KID, precision / recall (k = 3), density / coverage (k = 5) and per-class precision /
    recall from the kept features of the one pass (the reference's from the cache)."""
    M = out["metrics"]
    rf, rl, ff, fl = ref["features"], ref["labels"], got.features, got.labels
    if "kid" in metrics:
        k = kid(rf, ff)
        M[f"kid{suffix}_mean"], M[f"kid{suffix}_std"] = k["mean"], k["std"]
        out["kid"] = {"subsets": k["subsets"], "subset_size": k["subset_size"], "seed": KID_SEED, "degree": 3,
                      "kernel": "polynomial (x.y / dim + 1)^3"}
    if "intra_kid" in metrics:
        M[f"intra_kid{suffix}"], per = intra_kid(rf, rl, ff, fl, nc)
        out["intra_kid_per_class"] = {str(c): {"mean": v["mean"], "std": v["std"], "subset_size": v["subset_size"]}
                                      for c, v in per.items()}
    if "pr" in metrics or "dc" in metrics:
        o = manifold_metrics(rf, ff, k_pr=K_PR if "pr" in metrics else None, k_dc=K_DC if "dc" in metrics else None)
        for name in ("precision", "recall", "density", "coverage"):
            if name in o:
                M[name + suffix] = o[name]
    if "intra_pr" in metrics:
        per, skipped = {}, []
        for c in range(nc):
            r, f = rf[rl == c], ff[fl == c]
            if r.shape[0] <= K_PR or f.shape[0] <= K_PR:
                skipped.append(c)
                continue
            o = manifold_metrics(r, f, k_pr=K_PR, k_dc=None)
            per[str(c)] = {"precision": o["precision"], "recall": o["recall"]}
        if not per:
            raise EvalError(f"intra_pr: no class has more than {K_PR} real and generated samples")
        if skipped:
            log.warning("intra_pr: skipping classes with <= %d real or generated samples: %s", K_PR, skipped)
        M["intra_precision" + suffix] = float(np.mean([v["precision"] for v in per.values()]))
        M["intra_recall" + suffix] = float(np.mean([v["recall"] for v in per.values()]))
        out["intra_pr_per_class"] = per
    n_r, n_f, dim = rf.shape[0], ff.shape[0], rf.shape[1]
    host = max(kid_memory_bytes(n_r, n_f, dim, KID_SUBSET_SIZE),
               manifold_memory_bytes(n_r, n_f, dim, K_DC, feature_bytes=rf.element_size()))
    out["kept_features"] = {"dtype": str(rf.dtype).removeprefix("torch."), "n_real": n_r, "n_fake": n_f, "dim": dim,
                            "k_pr": K_PR, "k_dc": K_DC,
                            "inside": "d < r (prdc)", "host_bytes": host}


def _probe_size(fn, seed: int) -> int:
    """The resolution a generator callable gives (one image, under a fixed seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            x = fn(torch.zeros(1, dtype=torch.int64))
    if not torch.is_tensor(x) or x.dim() != 4:
        raise EvalError(f"the generator callable must return images [B, C, H, W], got {getattr(x, 'shape', type(x))}")
    return int(x.shape[-1])


def _sides(fake, real, size, batch: int, per_class: int, seed: int):
    """(Samples or StatsSide, RealSide, resolution): the generated side first (its resolution is the
    default), a generator callable last (it needs the real side's class count)."""
    gen = callable(fake) and not isinstance(fake, (str, Path, Samples, StatsSide))
    fs = None if gen else fake_side(fake, size, batch)
    if size is None and isinstance(fs, Samples):
        size = fs.size
    if size is None and gen:
        size = _probe_size(fake, seed)
    rs = real_side(real, size)
    if size is None and rs.ds is not None:
        size = rs.ds.size
    if gen:
        fs = fake_side(fake, size, batch, num_classes=rs.ds.num_classes if rs.ds is not None else 0,
                       per_class=per_class, seed=seed)
    return fs, rs, size


def _reference(real, extr, size: int, batch: int, device, max_bad_fraction: float, use_cache: bool, keep,
               rank: int = 0, world: int = 1):
    """The real side's statistics (pooled and per class) and, with ``keep``, its features: one pass,
    cached under the data set's hash, resolution, load rule and extractor identity. Over `world` ranks:
    each streams its share of the images and the shares are merged; rank 0 reads and writes the cache."""
    key = {"data": real.name, "hash": data_hash(real), "split": "train", "size": size, "resize": RESIZE_RULE,
           "extractor": extr.ident, "num_classes": real.num_classes, "v": 2}
    if keep is not None:
        key["features"] = str(keep).removeprefix("torch.")

    def reference():
        lo, hi = dist_share(len(real), batch, rank, world)
        idx = None if world == 1 else np.arange(lo, hi)
        c = collect(stream(real, idx, batch, device, max_bad_fraction=max_bad_fraction, what="reference statistics"),
                    extr, real.num_classes, device=device, keep_features=keep)
        if world > 1:
            merge(c, keep=keep is not None)
        return {"all": c.stats, "class": c.cstats, "features": c.features, "labels": c.labels}
    if world == 1:
        return cached(key, reference, device=device, use_cache=use_cache)
    found = lookup(key) if rank == 0 and use_cache else None
    got = broadcast(None if found is None else portable(found))
    if got is not None:
        return from_portable(got, device)
    stats = reference()
    if rank == 0 and use_cache:
        store(key, stats, device)
    return stats


def _checked(st: StatsSide, extr_ident: str | None, dim: int | None) -> StatsSide:
    try:
        check_fid_stats(st.path, st.extractor, st.mu.shape[0], extr_ident, dim)
    except StatsFileError as e:
        raise EvalError(str(e)) from None
    return st


def _stats_info(st: StatsSide) -> dict:
    d = {"path": st.path, "extractor": st.extractor, "n": st.n}
    if st.extractor is None:
        d["note"] = "no extractor recorded (a pytorch-fid file): taken as the extractor in use"
    return d


def _stats_only(fs, rs: RealSide, metrics, size, extractor: str, resize, classifier, batch: int, device,
                max_bad_fraction: float, use_cache: bool, t_all: float, rank: int = 0, world: int = 1) -> dict:
    """FID where one side (or both) is a statistics file: the other side's statistics from one pass (over
    `world` ranks: each its share, merged; every rank computes the distance from the same sums)."""
    bad = [m for m in metrics if m != "fid"]
    if bad:
        raise EvalError(f"a side given as FID statistics gives only fid; {bad} need images on both sides")
    out = {"real": rs.what, "fake": fs.path if isinstance(fs, StatsSide) else fs.what, "size": size, "metrics": {},
           "skipped": {}, "timing": {}}
    if isinstance(fs, StatsSide) and rs.stats is not None:  # two files: no extractor runs
        if fs.mu.shape != rs.stats.mu.shape:
            raise EvalError(f"the statistics files hold {rs.stats.mu.shape[0]}- and {fs.mu.shape[0]}-dimensional "
                            "features (different extractors?)")
        _checked(fs, rs.stats.extractor, None)
        out.update(extractor=rs.stats.extractor or fs.extractor, real_stats=_stats_info(rs.stats),
                   fake_stats=_stats_info(fs))
        out["metrics"]["fid"] = frechet_distance(rs.stats.mu, rs.stats.sigma, fs.mu, fs.sigma)
        out["seconds"] = time.perf_counter() - t_all
        return out
    extr, note = _extractor(extractor, device, resize)
    suffix = getattr(extr, "suffix", "")
    if extr is None:
        if classifier is None:
            raise EvalError("FID against a statistics file in the classifier's feature space needs that classifier "
                            "(--classifier FILE); or use the Inception extractor")
        extr, out["classifier"], out["classifier_sha256"] = get_classifier(rs.what, size, rs.ds, device,
                                                                           path=classifier, train=False)
        suffix = "_clf"
    out["extractor"], out["extractor_resize"] = extr.ident, getattr(extr, "resize", "none")
    if note:
        out["extractor_note"] = note
    t0 = time.perf_counter()
    if isinstance(fs, StatsSide):
        fake = _checked(fs, extr.ident, extr.dim)
        ref = _reference(rs.ds, extr, size, batch, device, max_bad_fraction, use_cache, None, rank, world)["all"]
        mu_r, sig_r = ref.mean(), ref.cov()
        mu_f, sig_f = fake.mu.to(mu_r.device), fake.sigma.to(mu_r.device)
        out.update(data=rs.ds.name, num_real=len(rs.ds), fake_stats=_stats_info(fake), num_samples=fake.n)
    else:
        st = _checked(rs.stats, extr.ident, extr.dim)
        got = collect(fs.share(rank, world)[1], extr, None, total=len(fs), device=device)
        if world > 1:
            merge(got)
        mu_f, sig_f = got.stats.mean(), got.stats.cov()
        mu_r, sig_r = st.mu.to(mu_f.device), st.sigma.to(mu_f.device)
        out.update(real_stats=_stats_info(st), num_samples=len(fs), num_real=st.n)
    out["timing"]["features_s"] = time.perf_counter() - t0
    out["metrics"]["fid" + suffix] = frechet_distance(mu_r, sig_r, mu_f, sig_f)
    out["seconds"] = time.perf_counter() - t_all
    return out


IS_MIN_PER_SPLIT = 100  # below this many samples per split the Inception Score's splits are noise


def small_sample_warnings(metrics, n: int, dim: int, is_splits: int) -> list[str]:
    """What the sample count makes unreliable: FID (and Intra-FID / cFID) below the feature dimension (a
    rank-deficient covariance; FID is biased upward, and strongly), the IS below IS_MIN_PER_SPLIT a split."""
    out = []
    fams = [m for m in ("fid", "intra_fid", "cfid") if m in metrics]
    if fams and n < dim:
        out.append(f"{', '.join(fams)} on {n} samples, fewer than the {dim} feature dimensions: the covariance is "
                   "rank-deficient and the distance biased upward; compare only values computed on the same number "
                   "of samples (published FIDs use 50 000)")
    if "is" in metrics and is_splits and n / is_splits < IS_MIN_PER_SPLIT:
        out.append(f"is on {n} samples in {is_splits} splits ({n // is_splits} a split, under "
                   f"{IS_MIN_PER_SPLIT}): the score and its std are noise at this size (published IS use 50 000)")
    return out


def evaluate(fake, real="digits", size: int | None = None, metrics=("fid",), extractor: str = "auto",
             classifier: str | None = None, train_classifier_: bool = True, classifier_epochs: int = 30,
             splits: int = 10, batch: int = 100, device="cpu", seed: int = 0, use_cache: bool = True,
             max_bad_fraction: float = 0.01, strict: bool = True, classifier_arch: str = "small",
             real_stats=None, save_real_stats=None, resize: str | None = None, per_class: int = 100,
             pr_features: str = "extractor", kept_dtype: str = "float32", distributed: bool = True) -> dict:
    """Metrics of the generated side ``fake`` against the reference ``real`` (each in any form of
    ssgan_fast.evaluation.sides: a data set spec, folder, .npz of images or statistics, images, a loader;
    ``fake`` also Samples or a generator callable fn(labels) -> images, ``per_class`` images a class) at
    ``size`` px (default: the generated images' own). ``resize``: the Inception's input resize
    (legacy_pytorch, the default, or clean-fid's clean). ``classifier_arch`` (small | resnet18) is the
    architecture of the classifiers trained here: the RA / GAN-test one on the real data and GAN-train's on
    the samples. ``real_stats``: a FID statistics file (pytorch-fid's .npz: mu, sigma) that FID is computed
    against instead of the data set's statistics; ``save_real_stats``: write the data set's statistics there
    in that format. ``pr_features``: the features of precision / recall (pr, intra_pr): the extractor's
    (default) or VGG-16 fc2 (vgg16, as stylegan2-ada's pr50k3; keys with suffix _vgg16), in a second pass
    of both sides through that network. ``kept_dtype``: the host dtype of the features the k-NN metrics and
    KID keep (float32; float16 halves the memory). ``distributed``: under torch.distributed with more than
    one process (torchrun), every rank takes its share of both sides and the shares are merged
    (ssgan_fast.evaluation.distributed; every rank must call, and every rank gets the result). Returns
    {"metrics": {...}, "timing": {...}, protocol fields}."""
    try:
        check_classifier_arch(classifier_arch)
    except ValueError as e:
        raise EvalError(str(e)) from None
    metrics = parse_metrics(metrics)
    if pr_features not in PR_FEATURES:
        raise EvalError(f"unknown pr_features {pr_features!r}; choose from {', '.join(PR_FEATURES)}")
    if kept_dtype not in KEPT_DTYPES:
        raise EvalError(f"unknown kept_dtype {kept_dtype!r}; choose from {', '.join(KEPT_DTYPES)}")
    keep_dt = KEPT_DTYPES[kept_dtype]
    vgg_ms = [m for m in metrics if m in ("pr", "intra_pr")] if pr_features != "extractor" else []
    device = torch.device(device)
    t_all = time.perf_counter()
    samples, rs, size = _sides(fake, real, size, batch, per_class, seed)
    if isinstance(samples, StatsSide) or rs.stats is not None:
        if real_stats is not None or save_real_stats is not None:
            raise EvalError("real_stats / save_real_stats go with a real data set, not with a statistics-file side")
        rank, world = rank_world() if distributed else (0, 1)
        return _stats_only(samples, rs, metrics, size, extractor, resize, classifier, batch, device,
                           max_bad_fraction, use_cache, t_all, rank, world)
    real = rs.ds
    nc = real.num_classes
    y = samples.labels
    if len(samples) == 0:
        raise EvalError("no samples to evaluate")
    if samples.labeled and nc and (int(y.min()) < 0 or int(y.max()) >= nc):
        raise EvalError(f"sample labels span [{int(y.min())}, {int(y.max())}] but {rs.what} has {nc} classes")
    labeled = samples.labeled and nc > 0
    need = [m for m in metrics if m in _NEEDS_LABELS]
    if need and not labeled:
        raise EvalError(f"{', '.join(need)} need classes on both sides: the real side {rs.what} has {nc} classes and "
                        f"the samples are {'labeled' if samples.labeled else 'unlabeled'} (use fid, kid, is, pr, dc)")
    if rs.spec is not None:
        test, no_test = open_test(rs.spec, size)
    else:
        test, no_test = None, f"the real side ({rs.what}) is not a data set spec with a test split"
    out = {"data": real.name, "real": rs.what, "fake": samples.what, "data_hash": data_hash(real), "size": size,
           "resize": RESIZE_RULE, "num_samples": len(samples), "num_real": len(real), "metrics": Metrics(),
           "skipped": {}, "timing": {}}
    extr, note = _extractor(extractor, device, resize)
    if "is" in metrics and extr is not None and extr.num_logits is None:
        raise EvalError(f"is needs class logits, which the {extr.kind} feature space has none of: use --extractor "
                        "inception or inception-tf for the Inception Score, or leave is out")
    need_clf = extr is None or any(m in metrics for m in ("ra", "gan_test", "avg_conf"))
    if need_clf and nc < 2 and classifier is None:
        raise EvalError(f"the classifier (the feature space without Inception weights, and RA / GAN-test) trains on "
                        f"the real side's labels, but {rs.what} has {nc} classes: use --extractor inception")
    t0 = time.perf_counter()
    clf = None
    rank, world = rank_world() if distributed else (0, 1)
    if world > 1:
        out["distributed"] = {"world_size": world, "share": "contiguous whole batches per rank, merged"}
    if need_clf:
        if rank > 0:  # rank 0 trains (and caches) the classifier where none is cached; the others then load it
            dist_barrier()
        clf, out["classifier"], out["classifier_sha256"] = get_classifier(
            rs.what, size, real, device, classifier_epochs, seed, classifier, train_classifier_,
            max_bad_fraction=max_bad_fraction, arch=classifier_arch)
        out["classifier_arch"] = clf.config().get("arch", "small")
        if rank == 0 and world > 1:
            dist_barrier()
    out["timing"]["classifier_s"] = time.perf_counter() - t0
    clf_space = extr is None
    extr = extr if extr is not None else clf
    out["extractor"], out["extractor_kind"] = extr.ident, "classifier" if clf_space else extr.kind
    out["feature_space"] = ("the digits / data set classifier's features: keys end in _clf and are not comparable "
                            "with published FID / IS" if clf_space else extr.space)
    out["extractor_resize"] = "none (the classifier runs at the data resolution)" if clf_space else extr.resize
    if note:
        out["extractor_note"] = note
    suffix = "_clf" if clf_space else extr.suffix
    t0 = time.perf_counter()
    fid_family = [m for m in metrics if m in _FID_FAMILY]
    main_kept = [m for m in metrics if m in _KEPT and m not in vgg_ms]
    keep = keep_dt if main_kept else None
    file_stats = None
    if real_stats is not None:
        try:
            file_stats = load_fid_stats(real_stats, extr.ident, extr.dim)
        except StatsFileError as e:
            raise EvalError(str(e)) from None
        out["real_stats"] = {"path": str(Path(real_stats).resolve()), "extractor": file_stats["extractor"],
                             "n": file_stats["n"]}
        if file_stats["extractor"] is None:
            out["real_stats"]["note"] = "no extractor recorded (a pytorch-fid file): taken as FID Inception pool3"
    need_ref = [m for m in fid_family if not (m == "fid" and file_stats is not None)]
    ref = None
    if need_ref or keep is not None or save_real_stats is not None:
        ref = _reference(real, extr, size, batch, device, max_bad_fraction, use_cache, keep, rank, world)
        if save_real_stats is not None and rank == 0:
            out["saved_real_stats"] = str(save_fid_stats(save_real_stats, ref["all"], extr.ident))
    out["timing"]["real_features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ra_clf = clf if any(m in metrics for m in ("ra", "gan_test", "avg_conf")) else None
    is_splits = min(splits, len(samples)) if "is" in metrics else 0
    start, mine = samples.share(rank, world)
    fake_b = _match_channels(mine, real.channels, rs.what) if clf is not None else mine
    # generated samples arrive class by class: the IS splits are cut from a seeded shuffle
    got = collect(fake_b, extr, nc if labeled else None, total=len(samples), is_splits=is_splits, classifier=ra_clf,
                  device=device, is_shuffle_seed=IS_SHUFFLE_SEED, keep_features=keep, is_start=start)
    if world > 1:
        merge(got, total=len(samples), keep=keep is not None)
    out["timing"]["fake_features_s"] = time.perf_counter() - t0
    if vgg_ms:  # precision / recall on VGG-16 fc2 features: both sides through that network once
        t0 = time.perf_counter()
        vgg = _vgg16(pr_features, device)
        ref_v = _reference(real, vgg, size, batch, device, max_bad_fraction, use_cache, keep_dt, rank, world)
        got_v = collect(samples.share(rank, world)[1], vgg, nc if labeled else None, total=len(samples),
                        device=device, keep_features=keep_dt)
        if world > 1:
            merge(got_v, keep=True)
        out["timing"]["vgg16_s"] = time.perf_counter() - t0
    def finish():
        return _finish(out, metrics, samples, nc, labeled, extr, ra_clf, file_stats, ref, got, is_splits, keep,
                       main_kept, suffix, (ref_v, got_v, vgg) if vgg_ms else None, test, no_test, strict,
                       classifier_epochs, seed, device, batch, max_bad_fraction, classifier_arch, t_all)
    if world == 1:
        return finish()
    # the metrics from the merged statistics: rank 0 computes, every rank gets the result (or the error)
    if rank > 0:
        res = broadcast(None)
        if isinstance(res, tuple):  # rank 0's error, as (type name, message)
            raise (EvalError if res[0] == "EvalError" else RuntimeError)(f"rank 0: {res[1]}")
        return res
    try:
        res = finish()
    except Exception as e:
        broadcast((type(e).__name__, str(e)))
        raise
    return broadcast(res)


def _finish(out, metrics, samples, nc, labeled, extr, ra_clf, file_stats, ref, got, is_splits, keep, main_kept,
            suffix, vgg_side, test, no_test, strict, classifier_epochs, seed, device, batch, max_bad_fraction,
            classifier_arch, t_all) -> dict:
    """evaluate()'s metrics from the collected statistics of both sides (rank 0 alone under torchrun)."""
    M = out["metrics"]
    out["warnings"] = small_sample_warnings(metrics, len(samples), extr.dim, is_splits)
    for w in out["warnings"]:
        log.warning("%s", w)
    t0 = time.perf_counter()
    if "fid" in metrics and file_stats is not None:
        M["fid" + suffix] = frechet_distance(file_stats["mu"].to(got.stats.device), file_stats["sigma"].to(
            got.stats.device), got.stats.mean(), got.stats.cov())
    elif "fid" in metrics:
        M["fid" + suffix] = fid(ref["all"], got.stats)
    if "intra_fid" in metrics:
        M["intra_fid" + suffix], per = intra_fid(ref["class"], got.cstats)
        out["intra_fid_per_class"] = {str(k): v for k, v in per.items()}
    if "cfid" in metrics:
        M["cfid" + suffix] = cfid(ref["class"], got.cstats)
    if "is" in metrics:
        M[f"is{suffix}_mean"], M[f"is{suffix}_std"] = got.is_acc.compute()
        out["is_splits"], out["is_shuffle_seed"] = is_splits, IS_SHUFFLE_SEED
    if "ra" in metrics:
        M["ra"] = 100.0 * got.accuracy
    if "gan_test" in metrics:
        M["gan_test"] = 100.0 * got.accuracy  # the classifier trained on real data, on generated images
    if "avg_conf" in metrics:
        M["avg_conf"] = 100.0 * got.confidence
    if keep is not None:
        _kept_metrics(main_kept, ref, got, nc, suffix, out)
    out["timing"]["statistics_s"] = time.perf_counter() - t0
    if vgg_side is not None:  # precision / recall on VGG-16 fc2 features (collected with the other features)
        ref_v, got_v, vgg = vgg_side
        vgg_ms = [m for m in metrics if m in ("pr", "intra_pr")]
        side = {"metrics": M}
        _kept_metrics(vgg_ms, ref_v, got_v, nc, "_vgg16", side)
        side.pop("metrics")
        out["pr_vgg16"] = {"extractor": vgg.ident, "resize": "torch bilinear to 224, ImageNet mean / std", **side}
    if ra_clf is not None and test is not None:
        out["classifier_real_test_accuracy"] = test_accuracy(lambda x: ra_clf(x)["logits"].argmax(1), test, device,
                                                             batch, max_bad_fraction)
    if "gan_train" in metrics:
        if test is None:
            if strict:
                raise EvalError(f"gan_train needs a held-out real test split: {no_test}")
            out["skipped"]["gan_train"] = no_test
        else:
            t0 = time.perf_counter()
            fx, fy = samples.tensors()
            m = train_classifier(fx, fy, nc, epochs=classifier_epochs, seed=seed, device=device, arch=classifier_arch)
            out["gan_train_classifier_arch"] = classifier_arch
            M["gan_train"] = test_accuracy(lambda x: m(x)["logits"].argmax(1), test, device, batch, max_bad_fraction)
            out["timing"]["gan_train_s"] = time.perf_counter() - t0
    out["test_split"] = test.name if test is not None else None
    out["seconds"] = time.perf_counter() - t_all
    return out

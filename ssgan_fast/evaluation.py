"""Evaluation of generated samples against a real data set given by its spec: the library
function behind ``python -m ssgan_fast.evaluate`` and the trainer's periodic and final metrics.

More: docs/modules.md, section ssgan_fast.evaluation.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import DataError, images_to_tensor, open_dataset, stream
from .data.datasets import RESIZE_RULE
from .metrics import (
    FIDInceptionV3,
    WeightsError,
    cfid,
    collect,
    fid,
    intra_fid,
    train_classifier,
    train_classifier_batches,
)
from .metrics.cache import cached
from .metrics.classifier import check_classifier_arch, classifier_from_config
from .metrics.kid import KID_SEED, KID_SUBSET_SIZE, intra_kid, kid, kid_memory_bytes
from .metrics.manifold import manifold_memory_bytes, manifold_metrics
from .metrics.stats_io import StatsFileError, load_fid_stats, save_fid_stats
from .ops import frechet_distance
from .weights import sha256_file, weights_dir

log = logging.getLogger("ssgan_fast")

METRICS = ("fid", "intra_fid", "cfid", "is", "ra", "gan_train", "gan_test", "avg_conf", "kid", "intra_kid", "pr",
           "intra_pr", "dc")
# the metrics that need the features themselves (kept on the host, float32), not only their moments
_KEPT = ("kid", "intra_kid", "pr", "intra_pr", "dc")
K_PR, K_DC = 3, 5  # Kynkaenniemi et al. (pr50k3), Naeem et al.
EXTRACTORS = ("auto", "inception", "classifier", "inception-random")
_FID_FAMILY = ("fid", "intra_fid", "cfid")
IS_SHUFFLE_SEED = 2020  # torch-fidelity's default rng seed for the IS shuffle

__all__ = ["evaluate", "Samples", "METRICS", "EXTRACTORS", "EvalError", "data_hash", "parse_metrics",
           "test_accuracy"]


class EvalError(ValueError):
    """Bad evaluation input (unknown metrics, label range, sample shapes, no test split)."""


def parse_metrics(metrics) -> list[str]:
    ms = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    bad = [m for m in ms if m not in METRICS]
    if bad or not ms:
        raise EvalError(f"unknown metric(s) {bad or ms}; choose from {', '.join(METRICS)}")
    return ms


@dataclass
class Samples:
    """Generated samples: int64 labels [N] (the classes they were generated for) and a callable
    that yields (images [B, C, H, W] in [-1, 1], labels [B]) batches in label order."""
    labels: torch.Tensor
    batches: Callable[[], Iterable]

    @classmethod
    def from_arrays(cls, images, labels, batch: int = 100) -> Samples:
        """uint8 NHWC images (or a float [-1, 1] NCHW tensor) with int labels."""
        x = images_to_tensor(images) if not (torch.is_tensor(images) and images.is_floating_point()) else images
        y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if x.shape[0] != y.shape[0]:
            raise EvalError(f"{x.shape[0]} samples but {y.shape[0]} labels")
        if x.shape[0] == 0:
            raise EvalError("no samples to evaluate")
        return cls(y, lambda: ((x[i:i + batch], y[i:i + batch]) for i in range(0, x.shape[0], batch)))

    def __len__(self):
        return int(self.labels.shape[0])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*[(x.float().cpu(), y.cpu()) for x, y in self.batches()], strict=False)
        return torch.cat(xs), torch.cat(ys)


def data_hash(ds) -> str:
    """A hash of what the data set holds: file names, sizes and mtimes (file-backed) or pixels."""
    h = hashlib.sha256()
    if ds.in_memory:
        h.update(np.ascontiguousarray(ds.images).tobytes())
    else:
        for f in ds.files:
            st = Path(f).stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        if ds.boxes is not None:
            h.update(np.ascontiguousarray(ds.boxes).tobytes())
    h.update(np.ascontiguousarray(ds.labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def _extractor(kind: str, device):
    if kind not in EXTRACTORS:
        raise EvalError(f"unknown extractor {kind!r}; choose from {', '.join(EXTRACTORS)}")
    if kind == "inception":
        return FIDInceptionV3(pretrained=True).to(device), None
    if kind == "inception-random":  # seeded: the same weights (and cache key) in every call
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = FIDInceptionV3(pretrained=False)
        return net.to(device), "random-weight Inception (a test of the code path; the numbers mean nothing)"
    if kind == "auto":
        try:
            return FIDInceptionV3(pretrained=True).to(device), None
        except WeightsError as e:
            note = f"FID Inception weights unavailable ({e}); the metrics use the classifier's feature space (_clf)"
            log.warning("%s", note)
            return None, note
    return None, None


def _same_channels(batches, channels: int, data: str):
    """The sample batches, checked to have the real images' channel count (the classifier extractor
    takes only that; checked as they stream, so no batch is generated twice)."""
    for x, y in batches:
        if x.shape[1] != channels:
            raise EvalError(f"samples have {x.shape[1]} channel(s) but {data} has {channels}")
        yield x, y


def get_classifier(spec: str, size: int, ds, device, epochs: int = 30, seed: int = 0, path=None, train: bool = True,
                   batch: int = 64, max_bad_fraction: float = 0.01, arch: str = "small"):
    """The RA / GAN-test classifier of a data set: loaded from `path` or from the weights folder
    (keyed by the data set's hash, the resolution, epochs, seed and architecture), else trained on the
    real training split (streamed; one decode pass per epoch) and saved there. (model, path, sha256)."""
    if path is None:
        key = f"{ds.name.split(':')[0]}-{data_hash(ds)}-{size}-s{seed}-e{epochs}" + ("" if arch == "small" else
                                                                                    f"-{arch}")
        path = weights_dir() / f"classifier-{key}.pt"
    path = Path(path)
    if not path.is_file():
        if not train:
            raise EvalError(f"classifier file {path} does not exist (train one with --train-classifier)")
        lab = np.nonzero(np.asarray(ds.labels) >= 0)[0]
        if len(lab) < 2 or ds.num_classes < 2:
            raise EvalError(f"{spec}: training the RA classifier needs >= 2 labeled images of >= 2 classes")
        log.info("training the RA classifier (%s) on %s (%d images, %d epochs)", arch, ds.name, len(lab), epochs)
        rng = np.random.default_rng(seed)

        def epoch(_):
            for x, y in stream(ds, rng.permutation(lab), batch, device, max_bad_fraction=max_bad_fraction,
                               what="classifier training"):
                if x.shape[0] >= 2:
                    yield x, y
        model = train_classifier_batches(epoch, ds.num_classes, ds.channels, size, max(1, len(lab) // batch), epochs,
                                         seed=seed, device=device, arch=arch)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"config": model.config(), "state_dict": model.state_dict()}, tmp)
        tmp.replace(path)
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
    host = max(kid_memory_bytes(n_r, n_f, dim, KID_SUBSET_SIZE), manifold_memory_bytes(n_r, n_f, dim, K_DC))
    out["kept_features"] = {"dtype": "float32", "n_real": n_r, "n_fake": n_f, "dim": dim, "k_pr": K_PR, "k_dc": K_DC,
                            "inside": "d < r (prdc)", "host_bytes": host}


def evaluate(samples: Samples, data: str, size: int, metrics=("fid",), extractor: str = "auto",
             classifier: str | None = None, train_classifier_: bool = True, classifier_epochs: int = 30,
             splits: int = 10, batch: int = 100, device="cpu", seed: int = 0, use_cache: bool = True,
             max_bad_fraction: float = 0.01, strict: bool = True, classifier_arch: str = "small",
             real_stats=None, save_real_stats=None) -> dict:
    """Metrics of `samples` against the real data set `data` at `size` px (see the module docstring).
    ``classifier_arch`` (small | resnet18) is the architecture of the classifiers trained here: the RA /
    GAN-test one on the real data and GAN-train's on the samples. ``real_stats``: a FID statistics file
    (pytorch-fid's .npz: mu, sigma) that FID is computed against instead of the data set's statistics;
    ``save_real_stats``: write the data set's statistics there in that format. Returns {"metrics": {...},
    "timing": {...}, protocol fields}."""
    try:
        check_classifier_arch(classifier_arch)
    except ValueError as e:
        raise EvalError(str(e)) from None
    metrics = parse_metrics(metrics)
    device = torch.device(device)
    t_all = time.perf_counter()
    real = open_dataset(data, "train", size)
    if real.kind != "image":
        raise EvalError(f"{data} is not an image data set")
    nc = real.num_classes
    y = samples.labels
    if len(samples) == 0:
        raise EvalError("no samples to evaluate")
    if int(y.min()) < 0 or int(y.max()) >= nc:
        raise EvalError(f"sample labels span [{int(y.min())}, {int(y.max())}] but {data} has {nc} classes")
    test, no_test = open_test(data, size)
    out = {"data": real.name, "data_hash": data_hash(real), "size": size, "resize": RESIZE_RULE,
           "num_samples": len(samples), "num_real": len(real), "metrics": {}, "skipped": {}, "timing": {}}
    extr, note = _extractor(extractor, device)
    need_clf = extr is None or any(m in metrics for m in ("ra", "gan_test", "avg_conf"))
    t0 = time.perf_counter()
    clf = None
    if need_clf:
        clf, out["classifier"], out["classifier_sha256"] = get_classifier(
            data, size, real, device, classifier_epochs, seed, classifier, train_classifier_,
            max_bad_fraction=max_bad_fraction, arch=classifier_arch)
        out["classifier_arch"] = clf.config().get("arch", "small")
    out["timing"]["classifier_s"] = time.perf_counter() - t0
    clf_space = extr is None
    extr = extr if extr is not None else clf
    out["extractor"], out["extractor_kind"] = extr.ident, "classifier" if clf_space else "inception"
    if note:
        out["extractor_note"] = note
    suffix = "_clf" if clf_space else ""
    M = out["metrics"]
    t0 = time.perf_counter()
    fid_family = [m for m in metrics if m in _FID_FAMILY]
    keep = torch.float32 if any(m in metrics for m in _KEPT) else None
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
    if need_ref or keep is not None or save_real_stats is not None:
        key = {"data": real.name, "hash": out["data_hash"], "split": "train", "size": size, "resize": RESIZE_RULE,
               "extractor": extr.ident, "num_classes": nc, "v": 2}
        if keep is not None:
            key["features"] = "float32"

        def reference():
            c = collect(stream(real, None, batch, device, max_bad_fraction=max_bad_fraction,
                               what="reference statistics"), extr, nc, device=device, keep_features=keep)
            return {"all": c.stats, "class": c.cstats, "features": c.features, "labels": c.labels}
        ref = cached(key, reference, device=device, use_cache=use_cache)
        if save_real_stats is not None:
            out["saved_real_stats"] = str(save_fid_stats(save_real_stats, ref["all"], extr.ident))
    out["timing"]["real_features_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ra_clf = clf if any(m in metrics for m in ("ra", "gan_test", "avg_conf")) else None
    is_splits = min(splits, len(samples)) if "is" in metrics else 0
    fake = _same_channels(samples.batches(), real.channels, data) if clf_space else samples.batches()
    # generated samples arrive class by class: the IS splits are cut from a seeded shuffle
    got = collect(fake, extr, nc, total=len(samples), is_splits=is_splits, classifier=ra_clf, device=device,
                  is_shuffle_seed=IS_SHUFFLE_SEED, keep_features=keep)
    out["timing"]["fake_features_s"] = time.perf_counter() - t0
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
        _kept_metrics(metrics, ref, got, nc, suffix, out)
    out["timing"]["statistics_s"] = time.perf_counter() - t0
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

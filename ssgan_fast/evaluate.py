"""Evaluate generated samples against a real data set.

    python -m ssgan_fast.evaluate --samples samples.npz | --ckpt runs/NAME --data digits \\
        --metrics fid,intra_fid,cfid,is,ra,gan_train,gan_test,avg_conf [--extractor inception|classifier] \\
        [--classifier F.pt | --train-classifier] [--out metrics.json]

samples.npz holds ``images`` (uint8 [N, H, W, C]) and ``labels`` (int64 [N], the classes the images
were generated for), as written by ``python -m ssgan_fast.generate``. Real reference statistics
are computed once per (data set, extractor weights) and cached (``$SSGAN_FAST_CACHE``).
Extractors: ``inception`` (the FID Inception-v3, weights ``pt_inception-2015-12-05-6726825d.pth``
from ``$SSGAN_FAST_WEIGHTS``, never downloaded) or ``classifier`` (the RA classifier's 128-d
features: the FID feature space for data Inception does not fit, like 8x8 digits).
The RA / GAN-test classifier is trained on the real training split with ``--train-classifier``
(cached in ``$SSGAN_FAST_WEIGHTS`` with its sha256) or loaded with ``--classifier``.
Prints a table and writes JSON (``--out``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

METRICS = ("fid", "intra_fid", "cfid", "is", "ra", "gan_train", "gan_test", "avg_conf")
log = logging.getLogger("ssgan_fast")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ssgan_fast.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="npz with images (uint8 NHWC) and labels (int64)")
    src.add_argument("--ckpt", help="a run folder: samples are generated from its checkpoint (EMA generator)")
    p.add_argument("--per-class", type=int, default=100, help="samples per class with --ckpt (default 100)")
    p.add_argument("--data", default="digits",
                   help="real data set spec (see ssgan_fast.data): digits, cifar10:/path, cub200:/path, folder:/path, "
                        "npz:/file.npz, ... (default digits)")
    p.add_argument("--size", type=int, default=32, help="resolution of the built-in digits (default 32)")
    p.add_argument("--metrics", default="fid,intra_fid,cfid,is,ra",
                   help=f"comma-separated subset of {','.join(METRICS)} (default fid,intra_fid,cfid,is,ra)")
    p.add_argument("--extractor", choices=("inception", "classifier"), default="inception",
                   help="feature space of FID / Intra-FID / cFID / IS (default inception)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--classifier", default=None, help="RA / GAN-test classifier file (saved by --train-classifier)")
    g.add_argument("--train-classifier", action="store_true",
                   help="train the RA classifier on the real training split (cached in $SSGAN_FAST_WEIGHTS)")
    p.add_argument("--classifier-epochs", type=int, default=30)
    p.add_argument("--splits", type=int, default=10, help="Inception Score splits (default 10)")
    p.add_argument("--batch", type=int, default=100, help="extractor batch size (default 100)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached reference statistics")
    p.add_argument("--out", default=None, help="JSON file for the results")
    return p


def _batches(images: torch.Tensor, labels: torch.Tensor | None, batch: int):
    for i in range(0, images.shape[0], batch):
        yield images[i:i + batch], None if labels is None else labels[i:i + batch]


def _load_samples(path: str):
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: samples file {p} does not exist")
    with np.load(p) as z:
        if "images" not in z or "labels" not in z:
            raise SystemExit(f"error: {p} must hold arrays 'images' (uint8 [N, H, W, C]) and 'labels' (int64 [N]); "
                             f"it has {list(z.keys())}")
        imgs, labels = z["images"], z["labels"].astype(np.int64)
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or labels.shape != (imgs.shape[0],):
        raise SystemExit(f"error: {p}: images must be uint8 [N, H, W, C] and labels [N]; got {imgs.shape} {imgs.dtype}, "
                         f"{labels.shape}")
    if imgs.shape[0] == 0:
        raise SystemExit(f"error: {p} holds no samples")
    return imgs, labels


def _classifier(args, real, device):
    from .metrics import SmallClassifier, train_classifier
    from .metrics.weights import sha256_file, weights_dir
    from .data import images_to_tensor
    if args.classifier:
        path = Path(args.classifier)
    else:
        key = f"{real.name}-s{args.seed}-e{args.classifier_epochs}"
        path = weights_dir() / f"classifier-{key}.pt"
    if not path.is_file():
        if not args.train_classifier:
            raise SystemExit(f"error: classifier file {path} does not exist (train one with --train-classifier)")
        log.info("training the RA classifier on %s (%d images)", real.name, len(real))
        model = train_classifier(images_to_tensor(real.images), torch.from_numpy(real.labels), real.num_classes,
                                 epochs=args.classifier_epochs, seed=args.seed, device=device, progress=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"config": model.config(), "state_dict": model.state_dict()}, tmp)
        tmp.replace(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = SmallClassifier(**blob["config"])
    model.load_state_dict(blob["state_dict"])
    log.info("classifier %s (sha256 %s)", path, sha256_file(path))
    return model.to(device).eval().requires_grad_(False), str(path), sha256_file(path)


def evaluate(args) -> dict:
    from .data import DataError, images_to_tensor, load_arrays
    from .metrics import FIDInceptionV3, cfid, collect, evaluate_accuracy, fid, intra_fid, train_classifier
    from .metrics.cache import cached
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise SystemExit(f"error: unknown metric(s) {bad or metrics}; choose from {', '.join(METRICS)}")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if args.ckpt:
        from .generate import load_trainer
        tr = load_trainer(args.ckpt, args.device)
        imgs, labels = tr.generate(args.per_class)
        args.samples = str(Path(args.ckpt) / "generated.npz")
        np.savez(args.samples, images=imgs, labels=labels)
    else:
        imgs, labels = _load_samples(args.samples)
    real = load_arrays(args.data, "train", args.size)
    try:
        test = load_arrays(args.data, "test", args.size)
    except DataError:
        test = None  # no held-out split: gan_train needs one (checked below)
    nc = real.num_classes
    if labels.max() >= nc or labels.min() < 0:
        raise SystemExit(f"error: sample labels span [{labels.min()}, {labels.max()}] but {args.data} has {nc} classes")
    fake_x, fake_y = images_to_tensor(imgs), torch.from_numpy(labels)
    real_x, real_y = images_to_tensor(real.images), torch.from_numpy(real.labels)
    need_clf = args.extractor == "classifier" or any(m in metrics for m in ("ra", "gan_test", "avg_conf"))
    clf, clf_path, clf_sha = _classifier(args, real, device) if need_clf else (None, None, None)
    if args.extractor == "classifier":
        if fake_x.shape[1:] != real_x.shape[1:]:
            raise SystemExit(f"error: samples are {tuple(fake_x.shape[1:])} but the classifier expects "
                             f"{tuple(real_x.shape[1:])} (C, H, W)")
        extractor = clf
    else:
        extractor = FIDInceptionV3(pretrained=True).to(device)
    out = {"data": real.name, "samples": str(Path(args.samples).resolve()), "num_samples": int(len(labels)),
           "extractor": extractor.ident, "classifier": clf_path, "classifier_sha256": clf_sha, "metrics": {}}
    t0 = time.perf_counter()
    fid_family = [m for m in metrics if m in ("fid", "intra_fid", "cfid")]
    if fid_family:
        key = {"data": real.name, "extractor": extractor.ident, "num_classes": nc, "v": 1}
        ref = cached(key, lambda: {"all": (c := collect(_batches(real_x, real_y, args.batch), extractor, nc,
                                                          device=device)).stats, "class": c.cstats},
                     device=device, use_cache=not args.no_cache)
    ra_clf = clf if any(m in metrics for m in ("ra", "gan_test", "avg_conf")) else None
    got = collect(_batches(fake_x, fake_y, args.batch), extractor, nc, total=len(labels),
                  is_splits=args.splits if "is" in metrics else 0, classifier=ra_clf, device=device, progress=True)
    M = out["metrics"]
    if "fid" in metrics:
        M["fid"] = fid(ref["all"], got.stats)
    if "intra_fid" in metrics:
        M["intra_fid"], per = intra_fid(ref["class"], got.cstats)
        out["intra_fid_per_class"] = {str(k): v for k, v in per.items()}
    if "cfid" in metrics:
        M["cfid"] = cfid(ref["class"], got.cstats)
    if "is" in metrics:
        M["is_mean"], M["is_std"] = got.is_acc.compute()
    if "ra" in metrics:
        M["ra"] = 100.0 * got.accuracy
    if "gan_test" in metrics:
        M["gan_test"] = 100.0 * got.accuracy  # same classifier-trained-on-real on generated images
    if "avg_conf" in metrics:
        M["avg_conf"] = 100.0 * got.confidence  # mean probability of the asked-for class, in %
    if ra_clf is not None and test is not None:
        out["classifier_real_test_accuracy"] = 100.0 * evaluate_accuracy(ra_clf, images_to_tensor(test.images),
                                                                         torch.from_numpy(test.labels))
    if "gan_train" in metrics:
        if test is None:
            raise SystemExit(f"error: gan_train needs a held-out real test split; {args.data} has none")
        m = train_classifier(fake_x, fake_y, nc, epochs=args.classifier_epochs, seed=args.seed, device=device)
        M["gan_train"] = 100.0 * evaluate_accuracy(m, images_to_tensor(test.images), torch.from_numpy(test.labels))
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ._sys import tune_malloc
    tune_malloc()
    args = build_parser().parse_args(argv)
    try:
        out = evaluate(args)
    except Exception as e:  # missing weights and other user errors: one clear line
        from .metrics import WeightsError
        if isinstance(e, (WeightsError, FileNotFoundError, ValueError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise
    width = max(len(k) for k in out["metrics"])
    print(f"{'metric':{width}s}  value")
    for k, v in out["metrics"].items():
        print(f"{k:{width}s}  {v:.4f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate generated samples against a real data set (the library: ssgan_fast.evaluation).

    python -m ssgan_fast.evaluate --samples samples.npz | --ckpt runs/00001-NAME --data digits \
        --metrics fid,intra_fid,cfid,is,ra,gan_train,gan_test,avg_conf,kid,intra_kid,pr,intra_pr,dc \
        [--extractor auto|inception|classifier] [--classifier F.pt] [--real-stats S.npz] [--out metrics.json]

samples.npz holds ``images`` (uint8 [N, H, W, C]) and ``labels`` (int64 [N], the classes the images
were generated for), as written by ``python -m ssgan_fast.generate``; ``--ckpt`` generates them from
a run folder's (EMA) generator instead, without its data set, loader or graphs. The real side is
any data set spec, streamed from its files; its reference statistics are cached
(``$SSGAN_FAST_CACHE``) under a key of the file list, resolution, resize rule and split.
Extractors: ``inception`` (the FID Inception-v3, weights ``pt_inception-2015-12-05-6726825d.pth``
from ``$SSGAN_FAST_WEIGHTS``, never downloaded; missing weights are an error saying where to put
the file), ``classifier`` (a small CNN trained on the real training split; its metrics are named
``fid_clf``, ``intra_fid_clf``, ...: not FID) or ``auto`` (the default: Inception when its weights
are present, else the classifier, with the reason in the output). The RA / GAN-test classifier is
trained on the real training split when ``--classifier`` is not given (cached in
``$SSGAN_FAST_WEIGHTS`` with its sha256). KID / Intra-KID (``kid``, ``intra_kid``), precision / recall
(``pr``, per class ``intra_pr``; k = 3) and density / coverage (``dc``, k = 5) come from the same pass
over the images. ``--real-stats`` computes FID against a statistics file in pytorch-fid's format
(``--save-real-stats`` writes one). Prints a table and writes JSON (``--out``).
Bad input exits with code 2 and one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from .evaluation import EXTRACTORS, METRICS
from .metrics.classifier import CLASSIFIER_ARCHS

log = logging.getLogger("ssgan_fast")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ssgan_fast.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="npz with images (uint8 NHWC) and labels (int64)")
    src.add_argument("--ckpt", help="a run folder: samples are generated from its checkpoint (EMA generator)")
    p.add_argument("--per-class", type=int, default=100, help="samples per class with --ckpt (default 100)")
    p.add_argument("--data", default=None,
                   help="real data set spec (see ssgan_fast.data): digits, cifar10:/path, cub200:/path, folder:/path, "
                        "npz:/file.npz, ... (default: the run's data with --ckpt, else digits)")
    p.add_argument("--size", type=int, default=None,
                   help="resolution the real images are brought to (default: the samples' or the run's)")
    p.add_argument("--metrics", default="fid,intra_fid,cfid,is,ra",
                   help=f"comma-separated subset of {','.join(METRICS)} (default fid,intra_fid,cfid,is,ra)")
    p.add_argument("--extractor", choices=EXTRACTORS, default="auto",
                   help="feature space of FID / Intra-FID / cFID / IS (default auto: Inception if its weights are "
                        "present, else the classifier; inception-random: random weights, for tests)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--classifier", default=None, help="RA / GAN-test classifier file (default: trained and cached)")
    g.add_argument("--train-classifier", action="store_true",
                   help="(the default) train the RA classifier on the real training split when none is cached")
    p.add_argument("--classifier-epochs", type=int, default=30)
    p.add_argument("--classifier-arch", choices=CLASSIFIER_ARCHS, default="small",
                   help="architecture of the classifiers trained here (RA / GAN-test on the real data, GAN-train on "
                        "the samples): small CNN, or resnet18 (the AAM paper's GAN-train / GAN-test classifier)")
    p.add_argument("--splits", type=int, default=10, help="Inception Score splits (default 10)")
    p.add_argument("--batch", type=int, default=100, help="extractor batch size (default 100)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-bad-fraction", type=float, default=0.01, help="unreadable real images tolerated")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached reference statistics")
    p.add_argument("--real-stats", default=None,
                   help="FID against this statistics file (pytorch-fid's .npz with mu and sigma, e.g. from "
                        "`python -m pytorch_fid --save-stats`, or one written by --save-real-stats) instead of "
                        "the data set's statistics; checked against the extractor")
    p.add_argument("--save-real-stats", default=None,
                   help="write the real data set's FID statistics to this .npz (pytorch-fid's format)")
    p.add_argument("--out", default=None, help="JSON file for the results")
    return p


def _load_samples(path: str):
    from .evaluation import EvalError
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"samples file {p} does not exist")
    try:
        with np.load(p) as z:
            if "images" not in z or "labels" not in z:
                raise EvalError(f"{p} must hold arrays 'images' (uint8 [N, H, W, C]) and 'labels' (int64 [N]); it has "
                                f"{list(z.keys())}")
            imgs, labels = z["images"], z["labels"].astype(np.int64)
    except (OSError, ValueError) as e:
        if isinstance(e, EvalError):
            raise
        raise EvalError(f"{p} is not a readable .npz ({e})") from None
    if imgs.dtype != np.uint8 or imgs.ndim != 4 or labels.shape != (imgs.shape[0],):
        raise EvalError(f"{p}: images must be uint8 [N, H, W, C] and labels [N]; got {imgs.shape} {imgs.dtype}, "
                        f"{labels.shape}")
    if imgs.shape[0] == 0:
        raise EvalError(f"{p} holds no samples")
    return imgs, labels


def run_cli(args) -> dict:
    """Parsed arguments -> evaluation result (raises on bad input; main() turns that into exit 2)."""
    from .evaluation import Samples, evaluate
    torch.manual_seed(args.seed)
    if args.ckpt:
        from .engine.run import load_run, samples_of
        run = load_run(args.ckpt, args.device)
        samples = samples_of(run.model, run.generator(), run.info["num_classes"], args.per_class, run.device,
                             args.batch)
        size = args.size or run.info["size"]
        data = args.data or run.cfg.data
        source = str(Path(args.ckpt).resolve())
    else:
        imgs, labels = _load_samples(args.samples)
        samples = Samples.from_arrays(imgs, labels, args.batch)
        size = args.size or imgs.shape[1]
        data = args.data or "digits"
        source = str(Path(args.samples).resolve())
    out = evaluate(samples, data, size, args.metrics, extractor=args.extractor, classifier=args.classifier,
                   classifier_epochs=args.classifier_epochs,
                   classifier_arch=args.classifier_arch, splits=args.splits, batch=args.batch, device=args.device,
                   seed=args.seed, use_cache=not args.no_cache, max_bad_fraction=args.max_bad_fraction,
                   real_stats=args.real_stats, save_real_stats=args.save_real_stats)
    out["samples"] = source
    return out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ._sys import tune_malloc
    tune_malloc()
    args = build_parser().parse_args(argv)
    from .engine.run import USER_ERRORS
    try:
        out = run_cli(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)  # missing weights and other user errors: one clear line
        return 2
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

"""Evaluate generated samples against a reference (the library: ssgan_fast.evaluation).

    python -m ssgan_fast.evaluate --fake SIDE [--real SIDE] \
        --metrics fid,intra_fid,cfid,is,ra,gan_train,gan_test,avg_conf,kid,intra_kid,pr,intra_pr,dc \
        [--extractor auto|inception|inception-tf|dinov2|clip|clip-l14|classifier] \
        [--resize legacy_pytorch|clean] [--classifier F.pt] \
        [--real-stats S.npz] [--save-real-stats S.npz] [--out metrics.json]

Each SIDE is one of: a run folder (images generated from its (EMA) generator, ``--per-class`` a class,
without its data set, loader or graphs); a folder of images (one sub-folder per class: labeled; else
unlabeled); an ``.npz`` of ``images`` (uint8 [N, H, W, C]) with optional ``labels`` (int [N]), as
``python -m ssgan_fast.generate`` writes; an ``.npz`` of FID statistics (``mu``, ``sigma``: pytorch-fid's
format; then only fid); or a data set spec (``digits``, ``cifar10:/path``, ``cub200:/path``, ...; see
ssgan_fast.data). ``--samples`` / ``--ckpt`` are the older names of ``--fake``, ``--data`` of ``--real``
(default: the run's data with a run folder, else digits). Unlabeled sides give fid, kid, is, pr and dc.
A data set side is streamed from its files; its reference statistics are cached (``$SSGAN_FAST_CACHE``)
under a key of the file list, resolution, load rule, extractor and resize mode.
Extractors: ``inception`` (the FID Inception-v3, weights ``pt_inception-2015-12-05-6726825d.pth``
from ``$SSGAN_FAST_WEIGHTS``, never downloaded; missing weights are an error saying where to put
the file), ``classifier`` (a small CNN trained on the real training split; its metrics are named
``fid_clf``, ``intra_fid_clf``, ...: not FID) or ``auto`` (the default: Inception when its weights
are present, else the classifier, with the reason in the output). Spaces of published numbers:
``inception-tf`` (stylegan2-ada / clean-fid's TorchScript Inception, ``inception-2015-12-05.pt``; keys fid, is,
...), ``dinov2`` (FD_DINOv2: DINOv2 ViT-L/14 CLS features, ``dinov2_vitl14_pretrain.pth``; keys fid_dinov2,
kid_dinov2, ...), ``clip`` / ``clip-l14`` (OpenAI CLIP ViT-B/32 / ViT-L/14 image embeddings, ``ViT-B-32.pt`` /
``ViT-L-14.pt``; keys fid_clip, ...); DINOv2 and CLIP have no class logits, so no ``is``. ``--resize`` is the
Inception's input resize: ``legacy_pytorch`` (pytorch-fid's bilinear; the default) or clean-fid's
``clean`` (PIL bicubic).
The RA / GAN-test classifier is trained on the real training split when ``--classifier`` is not given
(cached in ``$SSGAN_FAST_WEIGHTS`` with its sha256). KID / Intra-KID (``kid``, ``intra_kid``), precision /
recall (``pr``, per class ``intra_pr``; k = 3) and density / coverage (``dc``, k = 5) come from the same
pass over the images; ``--pr-features vgg16`` computes precision / recall on VGG-16 fc2 features instead
(stylegan2-ada's pr50k3), and ``--kept-dtype float16`` halves the kept features' memory. ``--real-stats``
computes FID against a statistics file while the real data set
gives the other metrics (``--save-real-stats`` writes the data set's). The result names the extractor,
the resize mode and both sides' counts. Prints a table and writes JSON (``--out``).
Bad input exits with code 2 and one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from .evaluation import EXTRACTORS, KEPT_DTYPES, METRICS, PR_FEATURES
from .metrics.classifier import CLASSIFIER_ARCHS
from .metrics.inception import RESIZE_MODES

log = logging.getLogger("ssgan_fast")


def build_parser() -> argparse.ArgumentParser:
    from ._cli import Parser, count, natural, unit
    p = Parser(prog="python -m ssgan_fast.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fake", help="the generated side: a run folder, an image folder, an .npz of images or of FID "
                                    "statistics, or a data set spec")
    src.add_argument("--samples", help="(older name of --fake) npz with images (uint8 NHWC) and labels (int64)")
    src.add_argument("--ckpt", help="(older name of --fake) a run folder: samples from its checkpoint (EMA generator)")
    p.add_argument("--per-class", type=count, default=100, help="samples per class from a run folder (default 100)")
    p.add_argument("--real", "--data", dest="real", default=None,
                   help="the reference side, in the same forms as --fake (a data set spec: digits, cifar10:/path, "
                        "cub200:/path, folder:/path, npz:/file.npz, ...; default: the run's data with a run folder, "
                        "else digits)")
    p.add_argument("--size", type=count, default=None,
                   help="resolution the real images are brought to (default: the samples' or the run's)")
    p.add_argument("--metrics", default="fid,intra_fid,cfid,is,ra",
                   help=f"comma-separated subset of {','.join(METRICS)} (default fid,intra_fid,cfid,is,ra)")
    p.add_argument("--extractor", choices=EXTRACTORS, default="auto",
                   help="feature space of FID / Intra-FID / cFID / IS (default auto: Inception if its weights are "
                        "present, else the classifier; inception-tf: stylegan2-ada / clean-fid's TorchScript "
                        "Inception; dinov2: FD_DINOv2's ViT-L/14 (keys _dinov2); clip / clip-l14: CLIP ViT-B/32 / "
                        "ViT-L/14 (keys _clip); *-random: random weights, for tests)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--classifier", default=None, help="RA / GAN-test classifier file (default: trained and cached)")
    g.add_argument("--train-classifier", action="store_true",
                   help="(the default) train the RA classifier on the real training split when none is cached")
    p.add_argument("--classifier-epochs", type=count, default=30)
    p.add_argument("--classifier-arch", choices=CLASSIFIER_ARCHS, default="small",
                   help="architecture of the classifiers trained here (RA / GAN-test on the real data, GAN-train on "
                        "the samples): small CNN, or resnet18 (the AAM paper's GAN-train / GAN-test classifier)")
    p.add_argument("--resize", choices=RESIZE_MODES, default=None,
                   help="the Inception's input resize: legacy_pytorch (pytorch-fid's torch bilinear, the default) or "
                        "clean (clean-fid's PIL bicubic)")
    p.add_argument("--pr-features", choices=PR_FEATURES, default="extractor",
                   help="features of precision / recall: the extractor's (default, as StudioGAN) or vgg16 (VGG-16 "
                        "fc2 from the weights registry, as stylegan2-ada's pr50k3; keys precision_vgg16, ...)")
    p.add_argument("--kept-dtype", choices=tuple(KEPT_DTYPES), default="float32",
                   help="host dtype of the features KID and the k-NN metrics keep (float16 halves the memory)")
    p.add_argument("--splits", type=count, default=10, help="Inception Score splits (default 10)")
    p.add_argument("--batch", type=count, default=100, help="extractor batch size (default 100)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=natural, default=0)
    p.add_argument("--max-bad-fraction", type=unit, default=0.01, help="unreadable real images tolerated")
    p.add_argument("--no-cache", action="store_true", help="do not read or write cached reference statistics")
    p.add_argument("--real-stats", default=None,
                   help="FID against this statistics file (pytorch-fid's .npz with mu and sigma, e.g. from "
                        "`python -m pytorch_fid --save-stats`, or one written by --save-real-stats) instead of "
                        "the data set's statistics; checked against the extractor")
    p.add_argument("--save-real-stats", default=None,
                   help="write the real data set's FID statistics to this .npz (pytorch-fid's format)")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --save-real-stats file")
    return p


def _is_run(path) -> bool:
    """A run folder, or RUN:best (its ckpt/best.pt)."""
    if path is None:
        return False
    from .engine.run import split_run_spec
    d, _ = split_run_spec(path)
    return d.is_dir() and (d / "config.json").is_file()


def _run_samples(path: str, args):
    """A run folder's generated samples (EMA generator), its resolution and data spec."""
    from .engine.run import load_run, samples_of
    run = load_run(path, args.device)
    s = samples_of(run.model, run.generator(), run.info["num_classes"], args.per_class, run.device, args.batch)
    from .engine.run import split_run_spec
    d, best = split_run_spec(path)
    s.size, s.what = run.info["size"], str(d.resolve()) + (":best" if best else "")
    return s, run.info["size"], run.cfg.data


def run_cli(args) -> dict:
    """Parsed arguments -> evaluation result (raises on bad input; main() turns that into exit 2)."""
    from .evaluation import evaluate
    from .evaluation.sides import EvalError
    torch.manual_seed(args.seed)
    fake_arg = args.fake or args.samples or args.ckpt
    if args.ckpt and not _is_run(args.ckpt):
        raise EvalError(f"{args.ckpt} is not a run folder (no config.json)")
    if args.samples and not Path(args.samples).is_file():
        raise EvalError(f"samples file {args.samples} does not exist")
    size, default_real = args.size, "digits"
    if _is_run(fake_arg):
        fake, run_size, default_real = _run_samples(fake_arg, args)
        size = size or run_size
    else:
        fake = fake_arg
    real = args.real or default_real
    if _is_run(real):
        real = _run_samples(real, args)[0]
    out = evaluate(fake, real, size, args.metrics, extractor=args.extractor, classifier=args.classifier,
                   classifier_epochs=args.classifier_epochs,
                   classifier_arch=args.classifier_arch, splits=args.splits, batch=args.batch, device=args.device,
                   seed=args.seed, use_cache=not args.no_cache, max_bad_fraction=args.max_bad_fraction,
                   real_stats=args.real_stats, save_real_stats=args.save_real_stats, resize=args.resize,
                   pr_features=args.pr_features, kept_dtype=args.kept_dtype)
    out["samples"] = out["fake"]
    return out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ._sys import tune_malloc
    tune_malloc()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .engine.run import USER_ERRORS, check_output, check_start_folders, torchrun_group
    with torchrun_group(args.device) as g:  # under torchrun every rank takes a share; rank 0 prints and writes
        if g.world > 1:
            args.device = g.device
        try:
            check_start_folders(None, evaluation=not args.no_cache)
            if args.out:  # checked before the (long) evaluation, not after it (on every rank: none must go on alone)
                check_output(args.out, "file", args.overwrite)
            if args.save_real_stats:
                check_output(args.save_real_stats, "file", args.overwrite, "--save-real-stats")
            out = run_cli(args)
        except USER_ERRORS as e:
            try:  # missing weights and other user errors: one clear line
                parser.fail(e)
            except SystemExit as stop:
                return stop.code
        if g.rank != 0:
            return 0
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

"""Generate samples from a trained run.

    python -m ssgan_fast.generate --ckpt runs/sphericgan-digits --per-class 100 --out samples.npz [--png grid.png]

Writes ``images`` (uint8 [N, H, W, C]) and ``labels`` (int64 [N]) - for 2-D data ``points``
(float32 [N, 2]) instead of images. Uses the EMA generator when the run kept one (``--no-ema``: the
raw generator).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger("ssgan_fast")


def load_trainer(run_dir: str, device: str | None = None):
    from .engine.trainer import TrainConfig, Trainer
    d = Path(run_dir)
    if not (d / "config.json").is_file() or not (d / "ckpt" / "last.pt").is_file():
        raise FileNotFoundError(f"{d} is not a run folder with a checkpoint (config.json, ckpt/last.pt)")
    over = {"progress": False, **({"device": device} if device else {})}
    return Trainer(TrainConfig.from_run(d, **over), resume=str(d))


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(prog="python -m ssgan_fast.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="run folder (with ckpt/last.pt)")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--png", default=None, help="also save a grid (one row per class, at most 10 per row)")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)
    if args.per_class < 1:
        p.exit(2, "error: --per-class must be >= 1\n")
    try:
        tr = load_trainer(args.ckpt, args.device)
    except (FileNotFoundError, ValueError) as e:
        p.exit(2, f"error: {e}\n")
    imgs, labels = tr.generate(args.per_class, use_ema=not args.no_ema, seed=args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if tr.ds.kind == "points":
        np.savez(args.out, points=imgs, labels=labels)
        if args.png:
            tr.sample_grid(Path(args.png))
        log.info("wrote %d points to %s", len(labels), args.out)
        return 0
    np.savez(args.out, images=imgs, labels=labels)
    if args.png:
        import torch
        import torchvision.utils as vu
        k = min(args.per_class, 10)
        sel = np.concatenate([np.nonzero(labels == c)[0][:k] for c in np.unique(labels)])
        x = torch.from_numpy(imgs[sel]).permute(0, 3, 1, 2).float() / 255
        vu.save_image(x, args.png, nrow=k)
    log.info("wrote %d samples to %s", len(labels), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

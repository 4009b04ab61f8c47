"""Reproduce the papers' toy experiments.

    python -m ssgan_fast.experiments ring2d [--seeds 3] [--steps 1500] [--variance 0.1] [--out runs/ring2d]

ring2d (MED-GAN Sec. 5.2, Table 1, Figure 3): the Triple-GAN-style baseline, + L_recg, and
+ L_recg + L_ctrs (2-D data has no mask embedding), trained on ring2d (8 Gaussians, 16 labeled +
256 unlabeled points per mode) over several seeds; prints modes / % HQ / reverse KL (mean ± std,
ssgan_fast.metrics.toy) next to the paper's values, writes results.json and a PNG with the
density of each row's samples (Figure 3).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

PAPER_TABLE1 = {"baseline": (5.3, 58.9, 0.184), "+recg": (7.8, 87.2, 0.123), "+recg+ctrs": (8.0, 96.7, 0.081)}
ROWS = {"baseline": [], "+recg": ["model.recg=true"], "+recg+ctrs": ["model.recg=true", "model.region_reg=true"]}


def ring2d(args) -> dict:
    from .data import open_dataset
    from .generate import load_trainer
    from .metrics.toy import mode_metrics, ring_centres
    from .train import main as train_main
    out = Path(args.out)
    sigma = float(np.sqrt(args.variance))
    results, densities = {}, {}
    real = open_dataset(f"ring2d:{args.variance}").points
    for row, sets in ROWS.items():
        runs = []
        for seed in range(args.seeds):
            name = f"{row}-s{seed}".replace("+", "p")
            t0 = time.perf_counter()
            argv = ["--model", "triplegan", "--data", f"ring2d:{args.variance}", "--steps", str(args.steps), "--seed",
                    str(seed), "--out", str(out), "--name", name, "--no-progress", "--no-final-eval", "--set",
                    "train.ckpt_every=0", "--set", "train.sample_every=0", "--device", args.device]
            for s in sets:
                argv += ["--set", s]
            if train_main(argv) != 0:
                raise RuntimeError(f"training {name} failed")
            tr = load_trainer(str(out / name), args.device)
            pts, _ = tr.generate(2500 // 8, seed=1000 + seed)
            m = mode_metrics(pts, ring_centres(), sigma)
            m["seconds"] = time.perf_counter() - t0
            runs.append(m)
            if seed == 0:
                densities[row] = pts
        agg = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
               for k in ("modes", "hq_percent", "reverse_kl", "seconds")}
        results[row] = {"runs": runs, "mean_std": agg, "paper": PAPER_TABLE1[row]}
    _figure(real, densities, out / "figure3.png")
    (out / "results.json").write_text(json.dumps({"variance": args.variance, "steps": args.steps, "seeds": args.seeds,
                                                   "rows": results}, indent=1))
    print(f"{'row':12s} {'modes':>12s} {'% HQ':>14s} {'reverse KL':>16s}   paper (modes, % HQ, rKL)   min/run")
    for row, r in results.items():
        a = r["mean_std"]
        print(f"{row:12s} {a['modes'][0]:5.1f} ± {a['modes'][1]:3.1f} {a['hq_percent'][0]:7.1f} ± {a['hq_percent'][1]:4.1f} "
              f"{a['reverse_kl'][0]:8.3f} ± {a['reverse_kl'][1]:5.3f}   {r['paper']}   {a['seconds'][0] / 60:.1f}")
    print(f"wrote {out / 'results.json'} and {out / 'figure3.png'}")
    return results


def _figure(real, densities, path):
    """Ground truth + one density panel per row (log counts on a 128 x 128 grid), side by side."""
    import torch
    import torchvision.utils as vu
    panels = []
    lo, hi = real.min(0) - 0.5, real.max(0) + 0.5
    for pts in [real] + list(densities.values()):
        ij = np.round((pts - lo) / (hi - lo) * 127).astype(int)
        ok = ((ij >= 0) & (ij < 128)).all(1)
        img = np.zeros((128, 128))
        np.add.at(img, (127 - ij[ok, 1], ij[ok, 0]), 1)
        img = np.log1p(img)
        panels.append(torch.from_numpy(img / max(img.max(), 1e-9)).float()[None])
    path.parent.mkdir(parents=True, exist_ok=True)
    vu.save_image(torch.stack(panels), path, nrow=len(panels), padding=4, pad_value=1.0)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    p = argparse.ArgumentParser(prog="python -m ssgan_fast.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="which", required=True)
    r = sub.add_parser("ring2d", help="MED-GAN Table 1 / Figure 3")
    r.add_argument("--seeds", type=int, default=3)
    r.add_argument("--steps", type=int, default=1500)
    r.add_argument("--variance", type=float, default=0.1, help="mode variance (the paper states 0.1)")
    r.add_argument("--out", default="runs/ring2d")
    r.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        p.exit(2, "error: --seeds and --steps must be >= 1\n")
    ring2d(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

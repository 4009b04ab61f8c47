"""Reproduce the papers' toy experiments.

    python -m ssgan_fast.experiments ring2d [--seeds 3] [--steps 1500] [--variance 0.1] [--out runs/ring2d]

ring2d (MED-GAN Sec. 5.2, Table 1, Figure 3): the Triple-GAN-style baseline, + L_recg, and
+ L_recg + L_ctrs (2-D data has no mask embedding), trained on ring2d (8 Gaussians, 16 labeled +
256 unlabeled points per mode) over several seeds; prints modes / % HQ / reverse KL (mean ± std,
ssgan_fast.metrics.toy) next to the paper's values, writes results.json and a PNG with the
density of each row's samples (Figure 3).

    python -m ssgan_fast.experiments cvae-ring [--steps 20000] [--lr 5e-4] [--seed 0] [--out runs/cvae-ring]

cvae-ring (CVAE-GAN Sec. 4, Figure 4): a ring of radius 2 centred at (100, 100); G and D are MLPs with
hidden layers 32-64-64 (ReLU), z ~ N(0, I_8), RMSProp at a fixed learning rate, batch 64. Rows: the
traditional GAN (D Eq. 1, G -log D(G(z))), WGAN (critic clipped to +-0.01, 5 critic steps per G step)
and the mean feature matching GAN (D Eq. 1, G Eq. 2 on the input of D's last FC layer, real and fake
centres as moving averages of the batch means). The paper trains 2M iterations at 5e-5; the default
here compresses that to --steps 20000 at --lr 5e-4 (RMSProp moves each weight about lr per step).
Scores (ssgan_fast.metrics.toy.ring_metrics) at several iterations: % of points on the ring, %
of the ring's angle sectors covered, mean distance to the ring in radial std; results.json and
figure4.png (one row per model, one panel per iteration, real points blue, generated red, window
(100, 100) +- 5).
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


def _mlp(sizes):
    from torch import nn
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers), nn.Linear(sizes[-2], sizes[-1])


def _train_ring(kind: str, real, steps: int, lr: float, snaps, seed: int, n_eval: int = 2000):
    """Train one row of Figure 4; returns {step: generated points [n_eval, 2]} at the `snaps` steps."""
    import torch
    import torch.nn.functional as F
    torch.manual_seed(seed)
    g_body, g_out = _mlp([8, 32, 64, 64, 2])
    d_body, d_out = _mlp([2, 32, 64, 64, 1])
    G = torch.nn.Sequential(g_body, g_out)
    opt_g = torch.optim.RMSprop(G.parameters(), lr=lr)
    opt_d = torch.optim.RMSprop(list(d_body.parameters()) + list(d_out.parameters()), lr=lr)
    real = torch.as_tensor(real, dtype=torch.float32)
    z_eval = torch.randn(n_eval, 8, generator=torch.Generator().manual_seed(10_000 + seed))
    B, mom = 64, 0.9
    c_real = c_fake = None
    n_critic = 5 if kind == "wgan" else 1
    out = {}
    for step in range(1, steps + 1):
        for _ in range(n_critic):
            x = real[torch.randint(0, len(real), (B,))]
            with torch.no_grad():
                xf = G(torch.randn(B, 8))
            dr, df = d_out(d_body(x))[:, 0], d_out(d_body(xf))[:, 0]
            loss_d = df.mean() - dr.mean() if kind == "wgan" else F.softplus(-dr).mean() + F.softplus(df).mean()  # Eq. 1
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            if kind == "wgan":
                with torch.no_grad():
                    for p in list(d_body.parameters()) + list(d_out.parameters()):
                        p.clamp_(-0.01, 0.01)
        xf = G(torch.randn(B, 8))
        if kind == "fm":  # Eq. 2: 1/2 ||E f_D(x) - E f_D(G(z))||^2, centres as moving averages
            with torch.no_grad():
                fr = d_body(real[torch.randint(0, len(real), (B,))]).mean(0)
                c_real = fr if c_real is None else mom * c_real + (1 - mom) * fr
            ff = d_body(xf).mean(0)
            cf = ff if c_fake is None else mom * c_fake + (1 - mom) * ff
            loss_g = 0.5 * (c_real - cf).pow(2).sum()
            c_fake = cf.detach()
        elif kind == "wgan":
            loss_g = -d_out(d_body(xf)).mean()
        else:
            loss_g = F.softplus(-d_out(d_body(xf))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step in snaps:
            with torch.no_grad():
                out[step] = G(z_eval).numpy()
    return out


RING_ROWS = {"gan": "traditional GAN", "wgan": "WGAN (clipping)", "fm": "mean feature matching GAN"}


def cvae_ring(args) -> dict:
    from .data import open_dataset
    from .metrics.toy import ring_metrics
    out = Path(args.out)
    real = open_dataset("ring2d-cvae").points
    snaps = sorted({max(1, args.steps * k // 10) for k in (1, 2, 5, 10)})
    results, panels = {}, {}
    for kind in RING_ROWS:
        t0 = time.perf_counter()
        pts = _train_ring(kind, real, args.steps, args.lr, set(snaps), args.seed)
        results[kind] = {str(s): ring_metrics(pts[s]) for s in snaps}
        results[kind]["seconds"] = time.perf_counter() - t0
        panels[kind] = [pts[s] for s in snaps]
    _ring_figure(real, panels, out / "figure4.png")
    (out / "results.json").write_text(json.dumps({"steps": args.steps, "lr": args.lr, "seed": args.seed,
                                                   "snapshots": snaps, "rows": results}, indent=1))
    print(f"{'model':28s} " + " ".join(f"{'it ' + str(s):>22s}" for s in snaps) + "   (on ring % / sectors % / distance)")
    for kind, name in RING_ROWS.items():
        cells = [results[kind][str(s)] for s in snaps]
        print(f"{name:28s} " + " ".join(f"{c['on_ring_percent']:6.1f} {c['coverage_percent']:6.1f} {c['distance']:8.1f}"
                                       for c in cells) + f"   {results[kind]['seconds']:.0f} s")
    print(f"wrote {out / 'results.json'} and {out / 'figure4.png'}")
    return results


def _pixels(pts, lo, hi, res: int):
    """(row, col) pixel indices of the finite points inside the window [lo, hi) of a res x res image
    (y up)."""
    ij = np.round((np.asarray(pts, dtype=np.float64) - lo) / (hi - lo) * (res - 1))
    ok = np.isfinite(ij).all(1) & ((ij >= 0) & (ij < res)).all(1)
    ij = ij[ok].astype(int)
    return res - 1 - ij[:, 1], ij[:, 0]


def _ring_figure(real, panels, path, res: int = 96):
    """Rows = models, columns = iterations; real points blue, generated red, window (100, 100) +- 5."""
    import torch
    import torchvision.utils as vu
    lo, hi = 95.0, 105.0
    tiles = []
    for row in panels.values():
        for pts in row:
            img = np.ones((3, res, res), dtype=np.float32)
            for p, colour in ((real, (0.3, 0.45, 1.0)), (pts, (0.9, 0.1, 0.1))):
                rows, cols = _pixels(p, lo, hi, res)
                for c in range(3):
                    img[c, rows, cols] = colour[c]
            tiles.append(torch.from_numpy(img))
    path.parent.mkdir(parents=True, exist_ok=True)
    vu.save_image(torch.stack(tiles), path, nrow=len(next(iter(panels.values()))), padding=3, pad_value=0.5)


def _figure(real, densities, path):
    """Ground truth + one density panel per row (log counts on a 128 x 128 grid), side by side."""
    import torch
    import torchvision.utils as vu
    panels = []
    lo, hi = real.min(0) - 0.5, real.max(0) + 0.5
    for pts in [real] + list(densities.values()):
        img = np.zeros((128, 128))
        np.add.at(img, _pixels(pts, lo, hi, 128), 1)
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
    c = sub.add_parser("cvae-ring", help="CVAE-GAN Sec. 4 / Figure 4")
    c.add_argument("--steps", type=int, default=20000)
    c.add_argument("--lr", type=float, default=5e-4, help="RMSProp learning rate (the paper: 5e-5 over 2M iterations)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="runs/cvae-ring")
    args = p.parse_args(argv)
    if args.which == "cvae-ring":
        if args.steps < 1 or not args.lr > 0:
            p.exit(2, "error: --steps must be >= 1 and --lr > 0\n")
        cvae_ring(args)
        return 0
    if args.seeds < 1 or args.steps < 1:
        p.exit(2, "error: --seeds and --steps must be >= 1\n")
    ring2d(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

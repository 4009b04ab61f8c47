"""Reproduce the papers' toy experiments.

    python -m ssgan_fast.experiments ring2d [--seeds 5] [--steps 3000] [--variance 0.1] [--rows R1,R2] [--set K=V]
                                            [--out runs/ring2d]
    python -m ssgan_fast.experiments cvae-ring [--steps 20000] [--lr 5e-4] [--seed 0] [--out runs/cvae-ring]
    python -m ssgan_fast.experiments backends [--model sphericgan] [--seeds 8] [--steps N] [--set K=V]
                                              [--out runs/backends]
    python -m ssgan_fast.experiments claims [--models aam-acgan,medgan,...] [--seeds 5] [--quick] [--jobs 2]
                                            [--out runs/claims]

ring2d: MED-GAN Sec. 5.2 (Table 1, Figure 3); cvae-ring: CVAE-GAN Sec. 4 (Figure 4); backends: the fused
ops against the reference ops on digits; claims: each paper's claim, method against its own baseline, on
digits over paired seeds. `python -m ssgan_fast.experiments <command> --help` says
what each trains, scores and writes.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

RING2D_DOC = """\
    python -m ssgan_fast.experiments ring2d [--seeds 5] [--steps 3000] [--variance 0.1] [--rows R1,R2] [--set K=V]
                                            [--out runs/ring2d]

ring2d (MED-GAN Sec. 5.2, Table 1, Figure 3): the Triple-GAN-style baseline, + L_recg, and
+ L_recg + L_ctrs (2-D data has no mask embedding), trained on ring2d (8 Gaussians, 16 labeled +
256 unlabeled points per mode) over several seeds; prints modes / % HQ / reverse KL (mean ± std,
ssgan_fast.metrics.toy) next to the paper's values, the % of samples that land in the mode of
the class they were generated for (class accuracy) and their spread around the modes (neither is in
the paper), writes results.json and a PNG with the density of each row's samples (Figure 3).
"""

CVAE_RING_DOC = """\
    python -m ssgan_fast.experiments cvae-ring [--steps 20000] [--lr 5e-4] [--seed 0] [--out runs/cvae-ring]

cvae-ring (CVAE-GAN Sec. 4, Figure 4): a ring of radius 2 centred at (100, 100); the registered models
cvaegan-fig4-gan / -wgan / -fm (ssgan_fast/models/fig4.py: the traditional GAN, WGAN with clipping,
the mean feature matching GAN), trained through the engine with batch 64 (--steps counts G iterations;
the WGAN takes 5 critic steps each). The paper trains 2M iterations at 5e-5; the default here
compresses that to --steps 20000 at --lr 5e-4 (RMSProp moves each weight about lr per step).
Scores (ssgan_fast.metrics.toy.ring_metrics) at several iterations: % of points on the ring, %
of the ring's angle sectors covered, mean distance to the ring in radial std; results.json and
figure4.png (one row per model, one panel per iteration, real points blue, generated red, window
(100, 100) +- 5).
"""

BACKENDS_DOC = """\
    python -m ssgan_fast.experiments backends [--model sphericgan] [--seeds 8] [--steps N] [--set K=V]
                                              [--out runs/backends]

backends (fused ops vs the reference ops on digits): trains --model on the built-in digits once per seed
with the automatic (fused) backend and once with SSGAN_FAST_BACKEND=ref, each in its own process, and
compares the final metrics.json values pair by pair (same seed, same data split): mean and std of the
paired difference, and two-sided paired t and Wilcoxon signed-rank p-values (scipy.stats). A small
p-value says the end points differ by more than seed-to-seed noise explains; results.json holds every run.
Finished runs are reused when the command is repeated with the same settings (a larger --seeds only
trains the new seeds; an interrupted sweep resumes at the run it was in).
With --trace STEPS it instead follows seed 0 step by step: the fused run against the reference run and
against a fused run with one generator weight moved by one ulp - if the two gaps grow alike, the
backends differ by rounding only and the end points part because the game is chaotic (trace.json).
"""

PAPER_TABLE1 = {"baseline": (5.3, 58.9, 0.184), "+recg": (7.8, 87.2, 0.123), "+recg+ctrs": (8.0, 96.7, 0.081)}
ROWS = {"baseline": [], "+recg": ["model.recg=true"], "+recg+ctrs": ["model.recg=true", "model.region_reg=true"]}
# ring2d's printed table: (metric key, header, mean width, std width, decimals), in column order
TABLE1_COLUMNS = (("modes", "modes", 5, 3, 1), ("hq_percent", "% HQ", 7, 4, 1), ("reverse_kl", "reverse KL", 8, 5, 3),
                  ("hq_1sigma_percent", "% HQ 1 sigma", 7, 4, 1), ("class_acc_percent", "% class acc", 7, 4, 1),
                  ("spread", "spread", 6, 4, 2))


CLAIMS_DOC = """\
    python -m ssgan_fast.experiments claims [--models aam-acgan,medgan,...] [--seeds 5] [--quick | --all-arms]
                                            [--jobs 2] [--threads 1] [--steps N] [--out runs/claims]

claims (each paper's claim against its own baseline, on the built-in digits): trains every arm of each
claim (ssgan_fast.claims.CLAIMS: AAM vs softmax in ACGAN and StarGAN, MED-GAN vs Triple-GAN, CVAE-GAN's
S7 rows, SphericGAN's Table 1 rows, LCP-GAN's Table 2 rows that run without weights) with the model's
digits preset on paired seeds, --jobs processes at a time with --threads OpenMP threads each, and scores
each run with the paper's own metrics (its final evaluation, in the digits classifier's feature space)
and the weights-free digits scores. Writes claims.json (every run, and per arm against the baseline:
mean ± sd, the paired difference, paired t and Wilcoxon p-values, a verdict at p < 0.05), one PNG per
claim (the metrics per seed, both arms) and one sample grid per claim (seed 0, the same noise for every
arm), and prints the table. The default set (the papers' rows) takes under 2 hours on 2 cores; --all-arms
adds the diagnostic arms (AAM's other loss scale, MED-GAN with Triple-GAN's settings). --quick: 2 seeds
of the claims marked quick (AAM-ACGAN, MED-GAN), about 10 minutes on 2 cores. Finished runs are reused
when the command is repeated. Each run's CPU seconds are recorded (they do not grow with other load).
"""


def ring2d(args) -> dict:
    from .data import open_dataset
    from .engine.run import generate, load_run
    from .metrics.toy import mode_metrics, ring_centres
    from .train import main as train_main
    out = Path(args.out)
    sigma = float(np.sqrt(args.variance))
    results, densities = {}, {}
    ds = open_dataset(f"ring2d:{args.variance}")
    real = ds.points
    true_mode = np.repeat(np.arange(8), len(real) // 8)  # ring2d is drawn mode by mode (unlabeled points too)
    data_row = mode_metrics(real, ring_centres(), sigma, labels=true_mode)  # the yardstick for the rows
    for row in args.rows.split(","):
        sets = ROWS[row]
        runs = []
        for seed in range(args.seeds):
            name = f"{row}-s{seed}".replace("+", "p")
            t0 = time.perf_counter()
            argv = ["--model", "triplegan", "--data", f"ring2d:{args.variance}", "--steps", str(args.steps), "--seed",
                    str(seed), "--out", str(out), "--name", name, "--no-progress", "--no-final-eval", "--set",
                    "train.ckpt_every=0", "--set", "train.sample_every=0", "--device", args.device]
            for s in [*args.set, *sets]:
                argv += ["--set", s]
            if train_main(argv) != 0:
                raise RuntimeError(f"training {name} failed")
            run = load_run(str(out / name), args.device)
            pts, labels = generate(run.model, run.generator(), run.info["num_classes"], 2500 // 8, 1000 + seed,
                                   run.device, run.info["kind"])
            m = mode_metrics(pts, ring_centres(), sigma, labels=labels)
            m["seconds"] = time.perf_counter() - t0
            runs.append(m)
            if seed == 0:
                densities[row] = pts
        agg = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
               for k in [c[0] for c in TABLE1_COLUMNS] + ["seconds"]}
        results[row] = {"runs": runs, "mean_std": agg, "paper": PAPER_TABLE1[row]}
    _figure(real, densities, out / "figure3.png")
    (out / "results.json").write_text(json.dumps({"variance": args.variance, "steps": args.steps, "seeds": args.seeds,
                                                   "set": args.set, "rows": results, "data": data_row}, indent=1))
    cell = lambda v, w, p: f"{v:{w}d}" if isinstance(v, int) else f"{v:{w}.{p}f}"  # noqa: E731
    print(f"{'row':12s} " + " ".join(f"{h:>{w + 3 + sw}s}" for _, h, w, sw, _ in TABLE1_COLUMNS) +
          "   paper (modes, % HQ, rKL)   min/run")
    for row, r in results.items():
        a = r["mean_std"]
        cells = " ".join(f"{a[k][0]:{w}.{p}f} ± {a[k][1]:{sw}.{p}f}" for k, _, w, sw, p in TABLE1_COLUMNS)
        print(f"{row:12s} {cells}   {r['paper']}   {a['seconds'][0] / 60:.1f}")
    print(f"{'(data)':12s} " + " ".join(cell(data_row[k], w, p) + " " * (3 + sw) for k, _, w, sw, p in TABLE1_COLUMNS) +
          f"   (the {len(real)} training points themselves)")
    print(f"wrote {out / 'results.json'} and {out / 'figure3.png'}")
    return results


BACKEND_METRICS = ("fid", "fid_clf", "intra_fid", "intra_fid_clf", "cfid", "cfid_clf", "is_mean", "is_clf_mean", "ra",
                   "c_acc")


def _set_backend(env, ref: bool) -> None:
    """Point `env` (os.environ or a copy for a subprocess) at the reference ops, or at the automatic pick."""
    env.pop("SSGAN_FAST_BACKEND", None)
    if ref:
        env["SSGAN_FAST_BACKEND"] = "ref"


def _done_before(run: Path, spec: dict) -> dict | None:
    """The experiment.json record of a finished run of exactly `spec` (spec["cmd"]: `-m ssgan_fast.train ...`)
    in `run` whose model settings are still what that command resolves to, else None."""
    try:
        old = json.loads((run / "experiment.json").read_text())
    except (OSError, ValueError):
        return None
    if {k: old.get(k) for k in spec} != spec or not (run / "metrics.json").is_file():
        return None
    from .claims import _same_settings  # and the command still resolves to the run's settings (presets change)
    return old if _same_settings(run, spec["cmd"][2:]) else None


def backends(args) -> dict:
    import os
    import subprocess

    from scipy import stats
    out = Path(args.out)
    runs, steps = {"fused": [], "ref": []}, set()
    for seed in range(args.seeds):
        for which in runs:
            name = f"{args.model}-{which}-s{seed}"
            env = dict(os.environ)
            _set_backend(env, which == "ref")
            cmd = [sys.executable, "-m", "ssgan_fast.train", "--model", args.model, "--seed", str(seed),
                   "--out", str(out), "--name", name, "--no-progress", "--device", args.device]
            cmd += [] if args.steps is None else ["--steps", str(args.steps)]
            for kv in args.set:
                cmd += ["--set", kv]
            run, spec = out / name, {"cmd": cmd[1:], "backend": env.get("SSGAN_FAST_BACKEND", "auto")}
            old = _done_before(run, spec)
            if old:  # a finished run of exactly this command: reuse it (resumable)
                m = json.loads((run / "metrics.json").read_text())["metrics"]
                m["seconds"] = old["seconds"]
            else:
                if run.exists():  # a run of other settings: kept aside (never overwritten), retrained here
                    aside = run.with_name(f"{run.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
                    run.rename(aside)
                    print(f"{name}: earlier run with other settings moved to {aside}", flush=True)
                t0 = time.perf_counter()
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"training {name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
                m = json.loads((run / "metrics.json").read_text())["metrics"]
                m["seconds"] = time.perf_counter() - t0
                (run / "experiment.json").write_text(json.dumps({**spec, "seconds": m["seconds"]}))
            runs[which].append(m)
            steps.add(json.loads((run / "config.json").read_text())["train"]["steps"])
            print(f"{name}: " + "  ".join(f"{k} {m[k]:.2f}" for k in BACKEND_METRICS if k in m), flush=True)
    keys = [k for k in runs["fused"][0] if k != "seconds" and all(k in r for rs in runs.values() for r in rs)]
    table = {}
    for k in keys:
        f = np.array([r[k] for r in runs["fused"]])
        r = np.array([r[k] for r in runs["ref"]])
        d = r - f
        row = {}
        for name, v in (("fused", f), ("ref", r), ("diff", d)):
            row[f"{name}_mean"], row[f"{name}_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
        row["t_p"] = row["wilcoxon_p"] = None
        if len(d) > 1 and np.any(d != 0):
            row["t_p"] = float(stats.ttest_rel(r, f).pvalue)
            row["wilcoxon_p"] = float(stats.wilcoxon(r, f).pvalue)
        table[k] = row
    steps = steps.pop() if len(steps) == 1 else sorted(steps)
    result = {"model": args.model, "steps": steps, "seeds": args.seeds, "runs": runs, "paired": table}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
    print(f"{'metric':10s} {'fused':>15s} {'ref':>15s} {'ref - fused':>15s} {'t p':>7s} {'wilcoxon p':>10s}")
    for k, row in table.items():
        print(f"{k:10s} {row['fused_mean']:7.2f} ± {row['fused_std']:5.2f} "
              f"{row['ref_mean']:7.2f} ± {row['ref_std']:5.2f} "
              f"{row['diff_mean']:7.2f} ± {row['diff_std']:5.2f} {fmt(row['t_p']):>7s} {fmt(row['wilcoxon_p']):>10s}")
    print(f"({args.seeds} seeds, {steps} steps, mean ± std over seeds; wrote {out / 'results.json'})")
    return result


def backend_trace(args) -> dict:
    """Seed 0, --trace steps, three arms in this process: the fused backend, SSGAN_FAST_BACKEND=ref, and
    the fused backend with one weight of G moved by one ulp (the control: how fast a rounding-sized
    difference grows in this training game). Per step: the largest relative gap of any logged loss
    to the fused arm; at the end: the relative distance of all parameters to the fused arm's."""
    import os

    import torch

    from .engine.trainer import Trainer
    from .train import build_parser, resolve
    arms, old = {}, os.environ.pop("SSGAN_FAST_BACKEND", None)
    try:
        for arm in ("fused", "ref", "fused+1ulp"):
            _set_backend(os.environ, arm == "ref")
            argv = ["--model", args.model, "--steps", str(args.trace), "--seed", "0",
                    "--out", str(Path(args.out) / "trace"), "--name", arm.replace("+", "p"), "--no-progress",
                    "--device", args.device, "--no-ema", "--set", "train.log_every=1", "--set", "train.ckpt_every=0",
                    "--set", "train.sample_every=0"]
            for kv in args.set:
                argv += ["--set", kv]
            tr = Trainer(resolve(build_parser().parse_args(argv)))
            if arm == "fused+1ulp":
                g = getattr(tr.model, tr.model.generator_modules()[-1])
                with torch.no_grad():
                    w = next(p for p in g.parameters() if p.is_floating_point()).view(-1)
                    w[0] = torch.nextafter(w[0], w[0] + 1)
            tr.fit()
            losses = [json.loads(line) for line in (tr.run_dir / "losses.jsonl").read_text().splitlines()]
            params = torch.cat([p.detach().double().flatten().cpu() for p in tr.model.parameters()])
            arms[arm] = ({r["step"]: r for r in losses if "step" in r}, params)
    finally:
        os.environ.pop("SSGAN_FAST_BACKEND", None)
        if old is not None:
            os.environ["SSGAN_FAST_BACKEND"] = old

    def gap(a, b):
        keys = [k for k in a if k != "step" and k in b and isinstance(a[k], float)]
        return max(abs(a[k] - b[k]) / (abs(a[k]) + 1e-6) for k in keys)

    base = arms["fused"][0]
    steps = sorted(base)
    show = sorted({s for s in steps if s < 4 or s in (5, 10, 20, 50, 100, 200, 500, 1000)} | {steps[-1]})
    rows = {s: {arm: gap(base[s], arms[arm][0][s]) for arm in ("ref", "fused+1ulp")} for s in steps}
    pn = arms["fused"][1].norm()
    final = {arm: float((arms[arm][1] - arms["fused"][1]).norm() / pn) for arm in ("ref", "fused+1ulp")}
    print(f"{'step':>6s} {'ref vs fused':>14s} {'1 ulp vs fused':>15s}   (largest relative gap of a logged loss)")
    for s in show:
        print(f"{s:6d} {rows[s]['ref']:14.2e} {rows[s]['fused+1ulp']:15.2e}")
    print(f"parameters after {args.trace} steps, relative distance to the fused run: ref {final['ref']:.3e}, "
          f"1 ulp {final['fused+1ulp']:.3e}")
    result = {"model": args.model, "steps": args.trace, "gaps": {str(s): rows[s] for s in steps},
              "param_distance": final}
    (Path(args.out) / "trace.json").write_text(json.dumps(result, indent=1))
    return result


def digits_run_scores(run_dir, per_class: int = 100, use_ema: bool = True, device: str = "cpu") -> dict:
    """The weights-free digits scores (ssgan_fast.metrics.digits) of a run trained on the built-in digits:
    recognition and spread of per_class samples of each class (EVAL_SEED noise, the EMA generator where
    kept). A translation model (AAM-StarGAN) is scored on what it does: every held-out test digit
    translated into every domain, recognised as the target domain, and the spread per target - the
    "translation" entry, which then also gives the top-level recognition / spread."""
    import torch

    from .data import open_dataset
    from .engine.run import EVAL_SEED, generate, load_run, to_uint8
    from .metrics.digits import digits_scores
    run = load_run(run_dir, device, use_ema=use_ema)
    if not run.cfg.data.startswith("digits"):
        raise ValueError(f"{run_dir} trained on {run.cfg.data!r}: the digits scores need the built-in digits")
    mods = run.generator(use_ema)
    out = {"step": run.step, "ema": bool(use_ema and run.ema)}
    if hasattr(run.model, "translate"):
        ds = open_dataset("digits", split="test", size=run.cfg.size)
        x = torch.from_numpy(ds.images).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(run.device)
        G = mods.get("G")
        imgs, labels = [], []
        with torch.no_grad():
            for t in range(run.info["num_classes"]):
                imgs.append(to_uint8(torch.cat([run.model.translate(x[i:i + 256], t, G=G)
                                                for i in range(0, len(x), 256)])))
                labels.append(np.full(len(x), t))
        tr = digits_scores(np.concatenate(imgs), np.concatenate(labels))
        tr["sources"] = int(len(x))
        out["translation"] = tr
        out.update({k: tr[k] for k in ("recognition_percent", "spread_ratio", "fd_pixels", "svm_real_test_percent")})
        return out
    imgs, labels = generate(run.model, mods, run.info["num_classes"], per_class, EVAL_SEED, run.device,
                            run.info["kind"])
    out.update(digits_scores(imgs, labels))
    return out


RING_ROWS = {"gan": "traditional GAN", "wgan": "WGAN (clipping)", "fm": "mean feature matching GAN"}


def _train_ring(kind: str, out: Path, steps: list[int], lr: float, seed: int, device: str, n_eval: int = 2000):
    """Train one row of Figure 4 (the registered model cvaegan-fig4-<kind>) through the engine, resuming
    from one snapshot to the next; returns {G iteration: generated points [n_eval, 2]}."""
    from .engine.run import generate, load_run
    from .models import get_model
    from .train import main as train_main
    model = f"cvaegan-fig4-{kind}"
    n_critic = get_model(model).Config().n_critic  # one engine step is one D step
    name, pts = f"{kind}-s{seed}", {}
    for i, s in enumerate(steps):
        if i == 0:
            argv = ["--model", model, "--data", "ring2d-cvae", "--steps", str(s * n_critic), "--seed", str(seed),
                    "--out", str(out), "--name", name, "--batch", "32", "--label-fraction", "0.5", "--no-ema",
                    "--device", device, "--no-progress", "--no-final-eval", "--set", f"model.lr={lr}",
                    "--set", "train.ckpt_every=0", "--set", "train.sample_every=0"]
        else:
            argv = ["--resume", str(out / name), "--steps", str(s * n_critic), "--no-progress", "--no-final-eval"]
        if train_main(argv) != 0:
            raise RuntimeError(f"training {model} ({name}) failed")
        run = load_run(str(out / name), device)
        pts[s] = generate(run.model, run.generator(use_ema=False), 1, n_eval, 10_000 + seed, run.device, "points")[0]
    return pts


def cvae_ring(args) -> dict:
    from .data import open_dataset
    from .metrics.toy import ring_metrics
    out = Path(args.out)
    real = open_dataset("ring2d-cvae").points
    snaps = sorted({max(1, args.steps * k // 10) for k in (1, 2, 5, 10)})
    results, panels = {}, {}
    for kind in RING_ROWS:
        t0 = time.perf_counter()
        pts = _train_ring(kind, out, snaps, args.lr, args.seed, args.device)
        results[kind] = {str(s): ring_metrics(pts[s]) for s in snaps}
        results[kind]["seconds"] = time.perf_counter() - t0
        panels[kind] = [pts[s] for s in snaps]
    _ring_figure(real, panels, out / "figure4.png")
    (out / "results.json").write_text(json.dumps({"steps": args.steps, "lr": args.lr, "seed": args.seed,
                                                   "snapshots": snaps, "rows": results}, indent=1))
    heads = " ".join(f"{'it ' + str(s):>22s}" for s in snaps)
    print(f"{'model':28s} {heads}   (on ring % / sectors % / distance)")
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
    from ._cli import Parser, count, natural, positive
    p = Parser(prog="python -m ssgan_fast.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="which", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    r = sub.add_parser("ring2d", help="MED-GAN Table 1 / Figure 3", description=RING2D_DOC, formatter_class=raw)
    r.add_argument("--seeds", type=count, default=5)
    r.add_argument("--steps", type=count, default=3000)
    r.add_argument("--variance", type=positive, default=0.1, help="mode variance (the paper states 0.1)")
    r.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {', '.join(ROWS)}")
    r.add_argument("--out", default="runs/ring2d")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="passed on to every row's training run before the row's own switches")
    r.add_argument("--device", default="cpu")
    c = sub.add_parser("cvae-ring", help="CVAE-GAN Sec. 4 / Figure 4", description=CVAE_RING_DOC, formatter_class=raw)
    c.add_argument("--steps", type=count, default=20000)
    c.add_argument("--lr", type=positive, default=5e-4,
                   help="RMSProp learning rate (the paper: 5e-5 over 2M iterations)")
    c.add_argument("--seed", type=natural, default=0)
    c.add_argument("--out", default="runs/cvae-ring")
    c.add_argument("--device", default="cpu")
    b = sub.add_parser("backends", help="fused vs reference ops on digits, paired over seeds", description=BACKENDS_DOC,
                       formatter_class=raw)
    from .models import MODELS
    b.add_argument("--model", default="sphericgan", choices=sorted(MODELS))
    b.add_argument("--seeds", type=count, default=8)
    b.add_argument("--steps", type=count, default=None,
                   help="training steps of each run (default: the model's digits preset)")
    b.add_argument("--out", default="runs/backends")
    b.add_argument("--trace", type=natural, default=0, metavar="STEPS",
                   help="instead: trace seed 0 step by step against the reference and a 1-ulp perturbed run")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed on to every training run")
    b.add_argument("--device", default="cpu")
    from .claims import CLAIMS
    q = sub.add_parser("claims", help="each paper's claim against its own baseline, paired seeds",
                       description=CLAIMS_DOC, formatter_class=raw)
    q.add_argument("--models", default=",".join(CLAIMS), help=f"comma-separated subset of {', '.join(CLAIMS)}")
    q.add_argument("--seeds", type=count, default=None, help="paired seeds per arm (default 5; 2 with --quick)")
    q.add_argument("--quick", action="store_true", help="2 seeds of the quick claims (about 10 minutes)")
    q.add_argument("--all-arms", action="store_true",
                   help="also the arms beyond the paper's rows (diagnostics: AAM's other loss scale, MED-GAN "
                        "with Triple-GAN's settings)")
    q.add_argument("--jobs", type=count, default=2, help="training processes at a time")
    q.add_argument("--threads", type=count, default=1, help="OpenMP threads of each training process")
    q.add_argument("--steps", type=count, default=None, help="steps of every run (default: each model's digits preset)")
    q.add_argument("--out", default="runs/claims")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="passed on to every training run, before each arm's own switches")
    q.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.which == "claims":
        from .claims import run_claims
        names = [n for n in args.models.split(",") if n]
        bad = [n for n in names if n not in CLAIMS]
        if bad or not names:
            p.exit(2, f"error: unknown --models {', '.join(bad) or '(none)'}; choose from {', '.join(CLAIMS)}\n")
        if args.quick:
            names = [n for n in names if CLAIMS[n].quick]
        seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
        if seeds < 1 or args.jobs < 1 or args.threads < 1 or (args.steps is not None and args.steps < 1):
            p.exit(2, "error: --seeds, --jobs, --threads and --steps must be >= 1\n")
        if not names:
            p.exit(2, "error: none of --models is in the --quick subset\n")
        if args.quick and args.all_arms:
            p.exit(2, "error: --quick and --all-arms exclude each other\n")
        run_claims(names, seeds, Path(args.out), args.jobs, args.threads, args.quick, args.steps, args.device,
                   args.set, args.all_arms)
        return 0
    if args.which == "backends":
        if args.seeds < 1 or (args.steps is not None and args.steps < 1) or args.trace < 0:
            p.exit(2, "error: --seeds and --steps must be >= 1, --trace >= 0\n")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        backend_trace(args) if args.trace else backends(args)
        return 0
    if args.which == "cvae-ring":
        if args.steps < 1 or not args.lr > 0:
            p.exit(2, "error: --steps must be >= 1 and --lr > 0\n")
        cvae_ring(args)
        return 0
    if args.seeds < 1 or args.steps < 1:
        p.exit(2, "error: --seeds and --steps must be >= 1\n")
    bad = [r for r in args.rows.split(",") if r not in ROWS]
    if bad:
        p.exit(2, f"error: unknown --rows {', '.join(bad)}; choose from {', '.join(ROWS)}\n")
    ring2d(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

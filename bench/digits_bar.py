"""Every model's digits preset against the bar of the default run, over seeds and thread counts.

    python bench/digits_bar.py [--models sphericgan,medgan,...] [--seeds 5] [--threads 2] [--jobs 1]
                               [--out runs/digits_bar] [--json bench/results/.../digits_bar.json]
    python bench/digits_bar.py --table A.json [B.json ...]    # the markdown table of finished sweeps

Each run is the user's command, `python -m ssgan_fast.train --model M --seed S` (training and its final
evaluation; only --out / --name added), in its own process with OMP_NUM_THREADS=--threads, --jobs at a
time; the wall time is the whole command. Each run is then scored weights-free on 1 000 samples
(ssgan_fast.experiments.digits_run_scores: SVM recognition, within-class spread ratio, fd_pixels;
AAM-StarGAN: its translations of the held-out test digits into every domain). The bar: median over
seeds recognition >= 95 % and spread >= 0.7, the worst seed >= 0.9 x both, every run <= 5 minutes
(judge time on runs with --jobs 1 only: parallel runs share the cores). Finished runs are reused; the
JSON is rewritten after every run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ssgan_fast.experiments import digits_run_scores

MODELS = ("sphericgan", "lcpgan", "medgan", "triplegan", "cvaegan", "aam-acgan", "aam-stargan")
BAR = {"recognition_percent": 95.0, "spread_ratio": 0.7}


def run_one(model: str, seed: int, threads: int, out: Path) -> dict:
    name = f"{model}-s{seed}-t{threads}"
    run = out / name
    done = run / "bar.json"
    if done.is_file():
        return json.loads(done.read_text())
    if run.exists():
        run.rename(run.with_name(f"{name}.unfinished-{time.strftime('%Y%m%d-%H%M%S')}"))
    cmd = [sys.executable, "-m", "ssgan_fast.train", "--model", model, "--seed", str(seed), "--out", str(out),
           "--name", name, "--no-progress"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS=str(threads)), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    s = digits_run_scores(run)
    row = {"model": model, "seed": seed, "threads": threads, "wall_s": wall, "steps": s["step"],
           **{k: s[k] for k in ("recognition_percent", "spread_ratio", "fd_pixels")},
           "metrics": json.loads((run / "metrics.json").read_text())["metrics"]}
    done.write_text(json.dumps(row))
    return row


def summary(rows: list) -> dict:
    out = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        for th in sorted({r["threads"] for r in rows if r["model"] == model}):
            rs = [r for r in rows if r["model"] == model and r["threads"] == th]
            s = {"seeds": [r["seed"] for r in rs], "wall_max_s": max(r["wall_s"] for r in rs)}
            ok = True
            for k, bar in BAR.items():
                vals = [r[k] for r in rs]
                s[k] = {"median": statistics.median(vals), "worst": min(vals), "all": vals}
                ok &= s[k]["median"] >= bar and s[k]["worst"] >= 0.9 * bar
            s["fd_pixels_median"] = statistics.median(r["fd_pixels"] for r in rs)
            s["meets_bar"] = bool(ok)
            out[f"{model}/{th}t"] = s
    return out


def markdown(paths: list) -> str:
    """One table from the JSONs of several sweeps (e.g. 1 and 2 threads): per model and thread count the
    median and worst seed of each score, the slowest run, and the verdict."""
    summ = {}
    for p in paths:
        summ.update(json.loads(Path(p).read_text())["summary"])
    lines = ["| model | threads | seeds | recognised % median (worst) | spread median (worst) | FD pixels median "
             "| slowest run s | bar |", "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for key in sorted(k for k in summ if k.split("/")[0] == model):
            s = summ[key]
            r, sp = s["recognition_percent"], s["spread_ratio"]
            lines.append(f"| `{model}` | {key.split('/')[1][:-1]} | {len(s['seeds'])} | {r['median']:.1f} "
                         f"({r['worst']:.1f}) | {sp['median']:.2f} ({sp['worst']:.2f}) | {s['fd_pixels_median']:.0f} "
                         f"| {s['wall_max_s']:.0f} | {'meets' if s['meets_bar'] else 'misses'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:  # digits_bar.py --table A.json [B.json ...]: print the markdown table
        print(markdown(argv[1:]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="runs/digits_bar")
    p.add_argument("--json", default=None, help="also write the rows and the summary here")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(m, s) for m in a.models.split(",") for s in range(a.seeds)]
    rows = []

    def work(t):
        r = run_one(t[0], t[1], a.threads, out)
        print(f"{r['model']} seed {r['seed']} ({r['threads']} threads): recognised {r['recognition_percent']:.1f} %, "
              f"spread {r['spread_ratio']:.2f}, fd_pixels {r['fd_pixels']:.0f}, {r['wall_s']:.0f} s", flush=True)
        rows.append(r)
        if a.json:
            Path(a.json).write_text(json.dumps({"jobs": a.jobs, "rows": rows, "summary": summary(rows)}, indent=1))
        return r

    with ThreadPoolExecutor(a.jobs) as ex:
        list(ex.map(work, tasks))
    for k, s in summary(rows).items():
        print(f"{k:18s} recognition median {s['recognition_percent']['median']:5.1f} worst "
              f"{s['recognition_percent']['worst']:5.1f} | spread median {s['spread_ratio']['median']:.2f} worst "
              f"{s['spread_ratio']['worst']:.2f} | fd_pixels {s['fd_pixels_median']:.0f} | max "
              f"{s['wall_max_s']:.0f} s | {'meets' if s['meets_bar'] else 'MISSES'} the bar")
    return 0


if __name__ == "__main__":
    sys.exit(main())

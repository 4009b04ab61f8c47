"""Digits runs scored weights-free (ssgan_fast.metrics.digits): recognition by an independent SVM and the
within-class spread ratio, on 1 000 samples (100 per class) of each run's generator (EMA where kept, unless
--no-ema). AAM-StarGAN runs are scored on their translations of the held-out test digits into every domain
(ssgan_fast.experiments.digits_run_scores).

    python bench/digits_quality.py --runs runs/00001-sphericgan-digits [...] [--out results.json]
"""
import argparse
import json
import sys
from pathlib import Path

from ssgan_fast.experiments import digits_run_scores


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--out")
    p.add_argument("--no-ema", action="store_true", help="score the trained generator, not its EMA copy")
    a = p.parse_args(argv)
    rows = {}
    for r in a.runs:
        s = digits_run_scores(r, a.per_class, use_ema=not a.no_ema)
        rows[r] = s
        what = "translations" if "translation" in s else "samples"
        print(f"{r}: recognised {s['recognition_percent']:.1f} %, spread ratio {s['spread_ratio']:.2f}, "
              f"fd_pixels {s['fd_pixels']:.1f} "
              f"({what}; SVM on real test digits {s['svm_real_test_percent']:.1f} %)", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

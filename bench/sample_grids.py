"""Sample grids a person can judge, from digits runs: one row per noise draw (the evaluation seed), one
column per class, magnified; AAM-StarGAN: one row per held-out test digit, the source first, then its
translation into each domain (ssgan_fast.claims.run_grid).

    python bench/sample_grids.py --runs runs/00001-sphericgan-digits [...] --out docs/samples [--rows 8]

Each run's grid goes to OUT/<model>-digits.png (an existing file is replaced: these are generated figures).
"""
import argparse
import json
import sys
from pathlib import Path

import torchvision.utils as vu

from ssgan_fast.claims import run_grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--upscale", type=int, default=3)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for r in a.runs:
        model = json.loads((Path(r) / "config.json").read_text())["train"]["model"]
        imgs, cols = run_grid(r, a.rows, a.upscale)
        path = out / f"{model}-digits.png"
        vu.save_image(imgs, path, nrow=cols, padding=2, pad_value=0.5)
        print(f"{r} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every preset's losses over N CPU steps, bit for bit: the check that a restructuring changed no behaviour.

    python tools/loss_fingerprint.py --out /tmp/before.json            # at the old commit
    python tools/loss_fingerprint.py --out /tmp/after.json --against /tmp/before.json

Each case trains through the CLI (python -m ssgan_fast.train, one subprocess, fresh folder) with
train.log_every=1 and records every logged loss as float.hex. --against exits 1 naming the first
case / step / loss that differs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# (case name, extra CLI arguments): every preset on the digits, the 2-D paths, LCP-GAN's second base
CASES = [
    ("sphericgan", ["--model", "sphericgan"]),
    ("cvaegan", ["--model", "cvaegan"]),
    ("lcpgan", ["--model", "lcpgan"]),
    ("lcpgan-stylegan2", ["--model", "lcpgan", "--set", "model.base=stylegan2"]),
    ("medgan", ["--model", "medgan"]),
    ("triplegan", ["--model", "triplegan"]),
    ("aam-acgan", ["--model", "aam-acgan"]),
    ("aam-stargan", ["--model", "aam-stargan"]),
    ("medgan-ring2d", ["--model", "medgan", "--data", "ring2d"]),
    ("triplegan-ring2d", ["--model", "triplegan", "--data", "ring2d"]),
]


def run_case(args: list[str], steps: int, tree: str | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "ssgan_fast.train", *args, "--steps", str(steps), "--out", out,
               "--name", "run", "--no-final-eval", "--no-progress", "--batch", "16",
               "--set", "train.log_every=1", "--set", "train.sample_every=0", "--set", "train.ckpt_every=0"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        if tree:
            env["PYTHONPATH"] = tree
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree or None)
        if r.returncode:
            raise SystemExit(f"{' '.join(args)} failed (rc {r.returncode}):\n{r.stderr[-3000:]}")
        rows = [json.loads(line) for line in (Path(out) / "run" / "losses.jsonl").read_text().splitlines()]
    return [{k: (float(v).hex() if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--tree", help="run the package of this source tree (PYTHONPATH + cwd)")
    p.add_argument("--against", help="a fingerprint JSON to compare with")
    p.add_argument("--only", nargs="*", help="case names")
    a = p.parse_args(argv)
    res = {}
    for name, args in CASES:
        if a.only and name not in a.only:
            continue
        res[name] = run_case(args, a.steps, a.tree)
        print(f"{name}: {len(res[name])} steps, last {res[name][-1]}", flush=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    if not a.against:
        return 0
    ref = json.loads(Path(a.against).read_text())
    bad = 0
    for name, rows in res.items():
        if name not in ref:
            print(f"{name}: not in {a.against}")
            bad += 1
            continue
        for r0, r1 in zip(ref[name], rows, strict=False):
            if r0 != r1:
                diff = {k: (r0.get(k), r1.get(k)) for k in set(r0) | set(r1) if r0.get(k) != r1.get(k)}
                print(f"{name} step {r1.get('step')}: differs {diff}")
                bad += 1
                break
        else:
            if len(ref[name]) != len(rows):
                print(f"{name}: {len(ref[name])} vs {len(rows)} steps")
                bad += 1
    print("bit-identical" if not bad else f"{bad} case(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

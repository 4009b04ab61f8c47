"""Compare two sets of benchmark JSONs (bench/run.py --out DIR), e.g. before / after a change, run
alternately on the same machine: per record (op, backend, shape, dtype, pass) the median over the
repetitions of each side, and the ratio after / before.

    python bench/compare.py --before DIR1 [DIR2 ...] --after DIR1 [DIR2 ...] [--backends cpp,triton,cuda]
        [--out compare.json]

Files are matched by op family; the renamed stats / frechet files count as feature_stats.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ALIASES = {"stats": "feature_stats", "frechet": "feature_stats"}


def _records(dirs: list[str]) -> dict:
    """{record key: [seconds per repetition]}"""
    out: dict = {}
    for d in dirs:
        for f in sorted(Path(d).glob("*.json")):
            for r in json.loads(f.read_text())["records"]:
                op = r["op"]
                if "median_ms" in r:
                    key, t = (op, r["backend"], r["shape_str"], r["dtype"], r.get("pass", "")), r["median_ms"] / 1e3
                elif "seconds" in r:
                    key, t = (op, r["backend"], r["shape_str"], r["dtype"], ""), r["seconds"]
                else:
                    continue
                out.setdefault(key, []).append(t)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", nargs="+", required=True)
    p.add_argument("--after", nargs="+", required=True)
    p.add_argument("--backends", default="cpp,triton,cuda,torch.linalg")
    p.add_argument("--out")
    a = p.parse_args(argv)
    keep = set(a.backends.split(","))
    before, after = _records(a.before), _records(a.after)
    rows = []
    for key in sorted(set(before) & set(after)):
        if key[1] not in keep:
            continue
        b, n = statistics.median(before[key]), statistics.median(after[key])
        rows.append({"op": key[0], "backend": key[1], "shape": key[2], "dtype": key[3], "pass": key[4],
                     "before_s": b, "after_s": n, "ratio": n / b, "reps": [len(before[key]), len(after[key])]})
    for r in rows:
        print(f"{r['op']:22s} {r['backend']:8s} {r['shape']:24s} {r['dtype']:9s} {r['pass']:8s} "
              f"{r['before_s'] * 1e3:10.4f} ms {r['after_s'] * 1e3:10.4f} ms  x{r['ratio']:.3f}")
    ratios = [r["ratio"] for r in rows]
    if ratios:
        print(f"{len(rows)} records: median after/before {statistics.median(ratios):.3f}, "
              f"min {min(ratios):.3f}, max {max(ratios):.3f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Summarise committed benchmark JSON: the fwd+bwd speed-ups of one backend at every shape.

    python bench/summary.py bench/results/<device>/ [--backend cpp] [--pass fwd+bwd]
"""
import argparse
import glob
import json
import os

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("folder")
ap.add_argument("--backend", default=None, help="default: every non-baseline backend")
ap.add_argument("--pass", dest="pass_", default="fwd+bwd")
args = ap.parse_args()
print(f"| op | backend | shape | dtype | {args.pass_} ms | x eager | x torch.compile | saved for bwd (MB) vs eager |")
print("|---|---|---|---|---|---|---|---|")
for path in sorted(glob.glob(os.path.join(args.folder, "*.json"))):
    recs = [r for r in json.load(open(path))["records"] if "pass" in r]  # frechet / stats / loader: own layouts
    eager = {(r["op"], r["shape_str"], r["dtype"]): r for r in recs
             if r["backend"] == "eager" and r["pass"] == args.pass_}
    for r in recs:
        if r["pass"] != args.pass_ or r["backend"] in ("eager", "compile"):
            continue
        if args.backend and r["backend"] != args.backend:
            continue
        e = eager.get((r["op"], r["shape_str"], r["dtype"]))
        sc = "-" if r["speedup_vs_compile"] is None else f"{r['speedup_vs_compile']:.2f}"
        mb = "-" if r["saved_bytes"] is None else f"{r['saved_bytes'] / 2**20:.2f} vs {e['saved_bytes'] / 2**20:.2f}"
        print(f"| {r['op']} | {r['backend']} | {r['shape_str']} | {r['dtype']} | {r['median_ms']:.3f} | "
              f"{r['speedup_vs_eager']:.2f} | {sc} | {mb} |")

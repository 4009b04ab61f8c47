"""Run every op family's microbenchmark (bench/ops/<family>.py with a run(args)): JSON under
bench/results/<device>/ and a printed table. The families are the files in bench/ops/; none is listed here.

    python bench/run.py [--device cpu|cuda] [--quick] [--no-compile] [--out DIR | --out PREFIX]

--out DIR (an existing folder) writes DIR/<op>.json, --out PREFIX writes PREFIX.<op>.json.
"""
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import parse_args, print_table, write_records  # noqa: E402

# families that print their own summaries instead of the common table
OWN_SUMMARY = ("cosine_logits", "feature_stats", "knn")


def families():
    """(name, module) of every bench/ops/<family>.py that defines run(args), in name order."""
    out = []
    for fn in sorted(os.listdir(os.path.join(HERE, "ops"))):
        if not fn.endswith(".py") or fn.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"bench_ops_{fn[:-3]}", os.path.join(HERE, "ops", fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if hasattr(mod, "run"):
            out.append((fn[:-3], mod))
    return out


if __name__ == "__main__":
    args = parse_args(__doc__)
    for name, mod in families():
        recs = mod.run(args)
        if name not in OWN_SUMMARY:
            print_table(recs)
        out = None if args.out is None else (os.path.join(args.out, f"{name}.json") if os.path.isdir(args.out)
                                             else f"{args.out}.{name}.json")
        print("wrote", write_records(recs, name, args.device, out))

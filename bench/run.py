"""Run every op microbenchmark: JSON under bench/results/<device>/ and a printed table.

    python bench/run.py [--device cpu|cuda] [--quick] [--no-compile] [--out DIR | --out PREFIX]

--out DIR (an existing folder) writes DIR/<op>.json, --out PREFIX writes PREFIX.<op>.json.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aam  # noqa: E402
import cutmix  # noqa: E402
import feature_stats  # noqa: E402
import prototype  # noqa: E402
from common import parse_args, print_table, write_records  # noqa: E402

if __name__ == "__main__":
    args = parse_args(__doc__)
    for name, mod, table in (("prototype", prototype, True), ("aam", aam, True), ("cutmix", cutmix, True),
                             ("feature_stats", feature_stats, False)):
        recs = mod.run(args)
        if table:
            print_table(recs)
        out = None if args.out is None else (os.path.join(args.out, f"{name}.json") if os.path.isdir(args.out)
                                             else f"{args.out}.{name}.json")
        print("wrote", write_records(recs, name, args.device, out))

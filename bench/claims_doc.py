"""docs/claims.md from a finished claims sweep (`python -m ssgan_fast.experiments claims --out DIR`): the
result JSON and the figures are copied into the repository, the tables are generated from the JSON
(ssgan_fast.claims.markdown_table), and the text before the tables (the reading of the results) is
kept from the existing page between its first line and the line `<!-- tables -->`.

    python bench/claims_doc.py --claims runs/claims [--doc docs/claims.md] [--json bench/results/...]
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from ssgan_fast.claims import markdown_table

MARK = "<!-- tables -->"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--claims", required=True, help="the sweep's --out folder (claims.json, claim-*.png)")
    p.add_argument("--doc", default="docs/claims.md")
    p.add_argument("--json", default="bench/results/cpu-x86_64/claims.json")
    p.add_argument("--figures", default="docs/figures/claims")
    p.add_argument("--results", nargs="+", default=None,
                   help="the sweeps' result files to merge (default: CLAIMS/claims.json); each claim keeps the seed "
                        "count of its sweep")
    a = p.parse_args(argv)
    src = Path(a.claims)
    result = None
    for path in a.results or [src / "claims.json"]:
        part = json.loads(Path(path).read_text())
        for c in part["claims"].values():
            c.setdefault("seeds", part["seeds"])
        if result is None:
            result = part
        else:
            result["claims"].update(part["claims"])
            result["wall_s"] = result.get("wall_s", 0) + part.get("wall_s", 0)
    result["seeds"] = {n: c["seeds"] for n, c in result["claims"].items()}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=1))
    figs = Path(a.figures)
    figs.mkdir(parents=True, exist_ok=True)
    doc = Path(a.doc)
    rel = Path("figures/claims") if doc.parent == figs.parent.parent else figs
    parts = []
    for name in result["claims"]:
        for png in (f"claim-{name}.png", f"claim-{name}-samples.png"):
            if (src / png).is_file():
                shutil.copy(src / png, figs / png)
        table = markdown_table({**result, "claims": {name: result["claims"][name]}})
        parts.append(f"{table}\n![{name}: per seed]({rel}/claim-{name}.png)\n\n"
                     f"![{name}: samples of seed 0, one block of rows per arm]({rel}/claim-{name}-samples.png)\n")
    head = doc.read_text().split(MARK)[0] if doc.is_file() and MARK in doc.read_text() else "# Claims\n\n"
    doc.write_text(head + MARK + "\n\n" + "\n".join(parts))
    print(f"wrote {doc}, {a.json}, {figs}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

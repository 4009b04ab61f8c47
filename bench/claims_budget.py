"""What the claims set costs, and whether a fresh sweep reproduces the committed numbers: reads each run's
experiment.json (its CPU seconds, recorded by `python -m ssgan_fast.experiments claims`) and metrics under
a sweep folder, sums the CPU seconds per claim for the default set (the papers' rows) and for every arm
that ran, projects the wall time at --jobs runs at a time on idle cores (CPU seconds / jobs: one thread
per run), and compares every finished run's metrics with the committed claims.json (same seed, arm and
command: 1-thread training is deterministic, so they must be equal).

    python bench/claims_budget.py --sweep runs/claims-budget [more sweeps]
                                  [--against bench/results/cpu-x86_64/claims.json]
                                  [--out bench/results/cpu-x86_64/claims_budget.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from ssgan_fast.claims import CLAIMS, _tag, claim_arms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", nargs="+", required=True,
                   help="sweep folders (a run is taken from the first that has it)")
    p.add_argument("--against", default="bench/results/cpu-x86_64/claims.json")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    sweeps = [Path(x) for x in a.sweep]
    ref = json.loads(Path(a.against).read_text())["claims"]
    out = {"sweeps": [str(x) for x in sweeps], "seeds": a.seeds, "jobs": a.jobs, "claims": {},
           "reproduced": {"equal": 0, "differ": []}}
    total_default = total_all = 0.0
    for name, c in CLAIMS.items():
        rows = {}
        for arm in c.arms:
            cpu = []
            for seed in range(a.seeds):
                run = next((sw / name / f"{_tag(arm)}-s{seed}" for sw in sweeps
                            if (sw / name / f"{_tag(arm)}-s{seed}" / "experiment.json").is_file()), sweeps[0] / "-")
                try:
                    exp = json.loads((run / "experiment.json").read_text())
                    got = json.loads((run / "metrics.json").read_text())["metrics"]
                except OSError:
                    continue
                cpu.append(exp["cpu_s"])
                want = ref.get(name, {}).get("runs", {}).get(arm)
                if want and seed < len(want):
                    keys = [k for k in c.metrics if k in got and k in want[seed]]
                    bad = {k: (want[seed][k], got[k]) for k in keys if want[seed][k] != got[k]}
                    if bad:
                        out["reproduced"]["differ"].append({"claim": name, "arm": arm, "seed": seed, "values": bad})
                    else:
                        out["reproduced"]["equal"] += 1
            if not cpu:
                continue
            mean = statistics.fmean(cpu)
            rows[arm] = {"runs": len(cpu), "cpu_s": cpu, "cpu_s_mean": mean, "projected_cpu_s": mean * a.seeds,
                         "default_set": arm in claim_arms(name)}
            total_all += mean * a.seeds
            if arm in claim_arms(name):
                total_default += mean * a.seeds
        out["claims"][name] = rows
    missing = [(n, arm) for n, c in CLAIMS.items() for arm in claim_arms(n) if arm not in out["claims"].get(n, {})]
    out["default_set"] = {"projected_cpu_s": total_default, "projected_wall_h": total_default / a.jobs / 3600,
                          "arms_without_a_finished_run": missing}
    out["all_arms_that_ran"] = {"projected_cpu_s": total_all, "projected_wall_h": total_all / a.jobs / 3600}
    print(json.dumps({k: v for k, v in out.items() if k != "claims"}, indent=1))
    for n, rows in out["claims"].items():
        for arm, r in rows.items():
            print(f"{n:12s} {arm:30s} runs {r['runs']}  cpu {r['cpu_s_mean']:6.0f} s  x{a.seeds} = "
                  f"{r['projected_cpu_s']:6.0f}{'' if r['default_set'] else '  (--all-arms only)'}")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

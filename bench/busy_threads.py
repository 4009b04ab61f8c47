"""A busy machine: the default run (SphericGAN on the digits, the README's main job, cut to --steps N with
no final evaluation so that the training loop dominates) alone, and two copies of it at once, under each
CPU threading candidate:

- default: torch's own choice (as many intra-op threads as cores; OpenMP's default wait policy, which
  spins between parallel regions);
- passive: OMP_WAIT_POLICY=PASSIVE in the environment before torch loads (idle OpenMP threads sleep);
- 1 thread: OMP_NUM_THREADS=1.

(torch's inter-op pool, torch.set_num_interop_threads, is not measured here.)

Each configuration: wall time of the command alone, then of each of two copies started together
(the slower copy's time), and the ratio pair / alone. Run it alone on the machine.

    python bench/busy_threads.py [--steps 200] [--out bench/results/cpu-x86_64/busy_threads.json]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CANDIDATES = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


def launch(env: dict, steps: int, out: str, name: str, extra: list):
    cmd = [sys.executable, "-m", "ssgan_fast.train", "--steps", str(steps), "--no-final-eval", "--no-progress",
           "--out", out, "--name", name, *extra]
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    e.update(env)
    return subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed(procs, limit: float = float("inf")) -> list:
    """Each process's wall time; past `limit` seconds the rest are killed and recorded as None."""
    t0 = time.perf_counter()
    out = [None] * len(procs)
    while any(o is None for o in out):
        if time.perf_counter() - t0 > limit:
            for i, p in enumerate(procs):
                if out[i] is None:
                    p.kill()
                    p.wait()
            return out
        for i, p in enumerate(procs):
            if out[i] is None and p.poll() is not None:
                if p.returncode != 0:
                    raise RuntimeError(p.stderr.read()[-2000:])
                out[i] = time.perf_counter() - t0
        time.sleep(0.05)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--only", default=None, help="comma-separated candidate names")
    ap.add_argument("--extra", default="", help="extra train flags (space-separated)")
    ap.add_argument("--limit", type=float, default=6.0, help="kill a pair after this many times the time alone")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    extra = a.extra.split()
    rows = {}
    names = a.only.split(",") if a.only else list(CANDIDATES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            env = CANDIDATES[name]
            alone = timed([launch(env, a.steps, tmp, f"{name}-alone".replace(" ", "_"), extra)])[0]
            limit = a.limit * alone
            pair = timed([launch(env, a.steps, tmp, f"{name}-pair{i}".replace(" ", "_"), extra) for i in range(2)],
                         limit)
            worst = max(p if p is not None else limit for p in pair)
            rows[name] = {"env": env, "alone_s": alone, "pair_s": pair, "ratio": worst / alone,
                          "cut_at_limit": any(p is None for p in pair)}
            shown = " / ".join("killed" if p is None else f"{p:6.1f}" for p in pair)
            print(f"{name:10s} alone {alone:6.1f} s   pair {shown} s   ratio {'>=' if None in pair else ''}"
                  f"{worst / alone:5.2f}", flush=True)
    rec = {"steps": a.steps, "extra": extra, "cpus": os.cpu_count(), "machine": platform.machine(), "rows": rows}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rec, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Op family knn: precision / recall (k = 3) and density / coverage (k = 5) of ssgan_fast.metrics.manifold
(the knn_smallest / knn_radius_count kernels) vs the `prdc` package on the same features, and ours alone
at 50 000 x 2048 (prdc's N x N matrices do not fit there).

Features: non-negative 2048-D (pool3-like) on a 64-D manifold, real and generated drawn from slightly
different distributions, float32, seeded (see features()). Imports are outside the timed part. Each
measurement runs in its own process, so that its peak resident memory (ru_maxrss, features included)
is its own. prdc computes P/R/D/C at one k per call, so "prdc" is
two calls (k = 3 for P/R, k = 5 for D/C); "prdc k5" / "ours k5" is the one-k comparison (P/R/D/C all at
k = 5); "ours fp16" rounds the features to float16 first (the memory option) and records the effect on
the values. Target (2-core CPU): ours >= 5x faster than prdc at 10 000 x 2048, same values.

    python bench/ops/knn.py [--quick] [--out bench/results/<device>/knn.json]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def features(n, dim, seed):
    """Non-negative features on a 64-D manifold (ReLU of a random linear map of a latent, plus noise):
    real latents N(0, 1), generated ones N(0.1, 1.15^2) - nearby but different distributions, so that
    P/R/D/C land inside (0, 1)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, dim, generator=g) / 8

    def side(shift, scale):
        z = torch.randn(n, 64, generator=g) * scale + shift
        return (z @ w + 0.1 * torch.randn(n, dim, generator=g) + 0.2).clamp_min(0)
    return side(0.0, 1.0), side(0.1, 1.15)


def one(name, n, dim):
    """Runs in a subprocess: {seconds, peak_rss_mb, values} of one implementation."""
    import torch
    real, fake = features(n, dim, 0)
    if name.startswith("prdc"):  # imports outside the timed part
        import contextlib
        import io

        from prdc import compute_prdc
    else:
        from ssgan_fast.metrics.manifold import manifold_metrics
    t0 = time.perf_counter()
    if name.startswith("prdc"):
        r, f = real.numpy(), fake.numpy()
        with contextlib.redirect_stdout(io.StringIO()):
            if name == "prdc":
                a, b = compute_prdc(r, f, 3), compute_prdc(r, f, 5)
                vals = dict(precision=a["precision"], recall=a["recall"], density=b["density"], coverage=b["coverage"])
            else:
                vals = compute_prdc(r, f, 5)
        vals = {k: float(v) for k, v in vals.items()}
    else:
        k_pr = 5 if name == "ours k5" else 3
        out = manifold_metrics(real, fake, k_pr=k_pr, k_dc=5,
                               feature_dtype=torch.float16 if name == "ours fp16" else None)
        vals = {k: out[k] for k in ("precision", "recall", "density", "coverage")}
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": sec, "peak_rss_mb": peak, "values": vals}


def run_one(name, n, dim):
    out = subprocess.run([sys.executable, __file__, "--one", name, str(n), str(dim)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{name} at {n} x {dim} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(quick: bool) -> dict:
    """The comparison with prdc (and the fp16 / k = 5 variants) at 2 000 (quick) or 10 000 x 2048."""
    import torch
    dim, n = 2048, 2000 if quick else 10_000
    rec = {"device": f"cpu-{platform.machine()}-{torch.get_num_threads()}threads", "torch": torch.__version__,
           "dim": dim, "n": n, "rows": {},
           "features": "float32, ReLU(z W + noise) on a 64-D latent, real z ~ N(0, 1), generated N(0.1, 1.15^2)"}
    for name in ("ours", "prdc", "ours k5", "prdc k5", "ours fp16"):
        rec["rows"][name] = r = run_one(name, n, dim)
        print(f"{name:8s} {n} x {dim}: {r['seconds']:7.2f} s, peak RSS {r['peak_rss_mb']:7.0f} MB, "
              + ", ".join(f"{k} {v:.4f}" for k, v in r["values"].items()), flush=True)
    rows = rec["rows"]
    rec["fp16 features: max value difference vs float32"] = max(
        abs(rows["ours fp16"]["values"][k] - rows["ours"]["values"][k]) for k in rows["ours"]["values"])
    for a_, b_ in (("ours", "prdc"), ("ours k5", "prdc k5")):
        rec[f"speedup {a_} vs {b_}"] = rows[b_]["seconds"] / rows[a_]["seconds"]
        rec[f"max value difference {a_} vs {b_}"] = max(abs(rows[a_]["values"][k] - rows[b_]["values"][k])
                                                        for k in rows[a_]["values"])
        print(f"speed-up {a_} vs {b_}: {rec[f'speedup {a_} vs {b_}']:.2f}x, max |value difference| "
              f"{rec[f'max value difference {a_} vs {b_}']:.2e}")
    if not quick:
        rec["rows"]["ours 50000"] = r = run_one("ours", 50_000, dim)
        print(f"ours 50000 x {dim}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(the two feature sets alone: {2 * 50_000 * dim * 4 / 2**20:.0f} MB)")
    return rec


def run(args):
    """bench/run.py's entry: the CPU comparison with prdc (the peer runs on the CPU only)."""
    if args.device != "cpu":
        print("knn: the comparison with prdc runs on the CPU only; skipped for --device", args.device)
        return []
    return [measure(args.quick)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 000 x 2048 and no 50 000 run")
    p.add_argument("--out")
    p.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one[0], int(a.one[1]), int(a.one[2]))))
        return 0
    rec = measure(a.quick)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(rec, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

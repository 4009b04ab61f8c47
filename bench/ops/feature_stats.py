"""Op family feature_stats: FeatureStats.update (feature_stats_moments kernel) vs per-class torch loops,
and frechet_distance vs scipy's sqrtm (pytorch-fid's formula), in one run.

FeatureStats.update, one pass over N x dim features; baselines (float64 accumulators in all cases):
  loop-fp64: for c: xc = x[labels == c].double(); n += len; s += xc.sum(0); xtx += xc.T @ xc
  loop-fp32: the same with float32 products (xc.T @ xc in float32, unshifted: numerically unsafe
             for large-mean features, listed for speed only)
The unconditional case compares with x.double().T @ x.double(). "% GEMM" relates the time to a
float32 torch.mm of the full X^T X at the same size (TF32 off) on the same device.
Target: 50 000 x 2048 with 200 classes >= 1.5x the per-class loop on CPU; >= 70 % of the GEMM
throughput on a GPU.

frechet_distance (Cholesky + eigvalsh, float64): covariances of N = 2 * dim Gaussian samples with a
random mixing (well conditioned); records the relative difference of the two values too. Target
(CPU, dim 2048): >= 5x faster than scipy, same value to 1e-6 relative; on a GPU <= 0.3 s.

    python bench/ops/feature_stats.py [--device cpu|cuda] [--quick]
"""
import gc
import os
import sys

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/common.py
from common import backend_env, best_of, device_name, parse_args, write_records  # noqa: E402

from ssgan_fast.ops import FeatureStats, frechet_distance  # noqa: E402


def loop(x, y, C, dt, acc):
    n, s, xtx = acc
    for c in range(C):
        xc = x[y == c].to(dt)
        n[c] += xc.shape[0]
        s[c] += xc.sum(0, dtype=torch.float64)
        xtx[c] += xc.t() @ xc
    return n


def run_update(args):
    dev, records = args.device, []
    torch.backends.cuda.matmul.allow_tf32 = False
    N, D, C = (5000, 512, 20) if args.quick else (50000, 2048, 200)
    reps = 3 if args.quick else 2
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(N, D, generator=g) * 2).to(dev)  # Inception-like: non-negative, mean ~1
    y = torch.randint(0, C, (N,), generator=g).to(dev)
    t_mm = best_of(lambda: x.t() @ x, dev, 3)[0]
    backends = ["cpp"] if dev == "cpu" else ["triton", "cuda"]
    for classes in (C, None):
        # accumulators are allocated and touched once, outside the timing (first-touch page faults
        # of 6.7 GB of float64 X^T X cost more than the update itself on some machines)
        cases = {}
        st = FeatureStats(D, classes, device=dev)
        st.xtx.fill_(0)
        for b in backends:
            def ours(b=b, st=st, classes=classes):
                with backend_env(b):
                    st.update(x, y if classes else None)
            cases[b] = ours
        if classes:
            f64 = dict(dtype=torch.float64, device=dev)
            acc = (torch.zeros(C, **f64), torch.zeros(C, D, **f64), torch.zeros(C, D, D, **f64).fill_(0))
            cases["loop-fp64"] = lambda acc=acc: loop(x, y, C, torch.float64, acc)
            cases["loop-fp32"] = lambda acc=acc: loop(x, y, C, torch.float32, acc)
        else:
            cases["torch-fp64"] = lambda: x.double().t() @ x.double()
        times = {}
        for name, fn in cases.items():
            times[name] = best_of(fn, dev, reps)[0]
        del st, cases
        gc.collect()
        base = times["loop-fp64" if classes else "torch-fp64"]
        for name, t in times.items():
            rec = {"op": "feature_stats_update", "backend": name, "shape": {"N": N, "D": D, "C": classes or 1},
                   "shape_str": f"N{N}xD{D}xC{classes or 1}", "dtype": "float32", "device": device_name(dev),
                   "seconds": t, "speedup_vs_loop_fp64" if classes else "speedup_vs_torch_fp64": base / t,
                   "pct_of_fp32_gemm": 100.0 * t_mm / t, "gemm_fp32_seconds": t_mm}
            print(f"{rec['shape_str']:22s} {name:10s} {t:8.3f} s   x{base / t:5.2f} vs "
                  f"{'loop-fp64' if classes else 'torch-fp64'}"
                  f"   {rec['pct_of_fp32_gemm']:5.1f} % of a float32 X^T X GEMM ({t_mm:.3f} s)")
            records.append(rec)
    return records


def scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1.dot(s2))
    covmean = covmean[0] if isinstance(covmean, tuple) else covmean
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def run_frechet(args):
    records = []
    rng = np.random.default_rng(0)
    for D in ([64, 512] if args.quick else [64, 512, 2048]):
        a = rng.standard_normal((2 * D, D)) @ (rng.standard_normal((D, D)) / np.sqrt(D) + np.eye(D))
        b = rng.standard_normal((2 * D, D)) * 1.2 + 0.1
        mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        t = [torch.from_numpy(v).to(args.device) for v in (mu1, s1, mu2, s2)]
        reps = 2 if D >= 2048 else 5
        ts, want = best_of(lambda m1=mu1, c1=s1, m2=mu2, c2=s2: scipy_fid(m1, c1, m2, c2), args.device, reps)
        frechet_distance(*t)  # warm-up (LAPACK / cuSOLVER initialisation)
        to, got = best_of(lambda t=t: frechet_distance(*t), args.device, reps)
        rec = {"op": "frechet_distance", "backend": "torch.linalg", "shape": {"D": D}, "shape_str": f"D{D}",
               "dtype": "float64", "device": device_name(args.device), "seconds": to, "scipy_seconds": ts,
               "speedup_vs_scipy": ts / to, "value": got, "scipy_value": want, "rel_diff": abs(got - want) / abs(want)}
        print(f"frechet D={D:5d}: ours {to:8.3f} s  scipy sqrtm {ts:8.3f} s  x{ts / to:6.2f}  "
              f"value {got:.8f} vs {want:.8f} (rel diff {rec['rel_diff']:.1e})")
        records.append(rec)
    return records


def run(args):
    return run_update(args) + run_frechet(args)


if __name__ == "__main__":
    args = parse_args(__doc__)
    print("wrote", write_records(run(args), "feature_stats", args.device, args.out))

"""Shared benchmark machinery: timing, baselines (torch eager / torch.compile of the reference),
memory, roofline, JSON records and the printed table.

One record per (op, backend, shape, dtype, pass) with: device name, median / p10 / p90 ms,
GB/s and TFLOP/s, % of roofline (known GPUs only), speed-up vs eager and vs torch.compile,
and the bytes each implementation keeps alive for backward (saved tensors beyond the inputs;
device-independent),
plus peak device memory of fwd+bwd on CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import contextmanager

import torch

from ssgan_fast._sys import tune_malloc

# the entry points' process setting (ssgan_fast.train / evaluate do the same): see tune_malloc
tune_malloc()

# every benchmarked shape compiles its own graph (dynamic=False): allow more than the default 8
for _k in ("recompile_limit", "cache_size_limit"):
    if hasattr(torch._dynamo.config, _k):
        setattr(torch._dynamo.config, _k, 256)

# Peak numbers for % of roofline: (memory GB/s, dense fp32 TFLOP/s, tf32/bf16 tensor TFLOP/s).
ROUNDS = 3

PEAKS = {
    "H100": (3350.0, 67.0, 495.0),
    "H200": (4800.0, 67.0, 495.0),
}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"


def device_dir(device: str) -> str:
    name = device_name(device)
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-")


@contextmanager
def backend_env(name: str | None):
    old = os.environ.get("SSGAN_FAST_BACKEND")
    if name is None:
        os.environ.pop("SSGAN_FAST_BACKEND", None)
    else:
        os.environ["SSGAN_FAST_BACKEND"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SSGAN_FAST_BACKEND", None)
        else:
            os.environ["SSGAN_FAST_BACKEND"] = old


def time_fn(fn, device: str, min_time: float = 0.2, max_iters: int = 200) -> tuple[float, float, float]:
    """(median, p10, p90) in ms of fn() after warm-up."""
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        import triton.testing
        med, p10, p90 = triton.testing.do_bench(fn, quantiles=[0.5, 0.1, 0.9], warmup=25, rep=100)
        return med, p10, p90
    times = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < max_iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    def q(f):
        return times[min(len(times) - 1, int(f * len(times)))]
    return statistics.median(times), q(0.1), q(0.9)


def best_of(fn, device: str, reps: int):
    """(best wall-clock seconds of `reps` calls, the last result): for cases too slow for time_fn."""
    best, out = float("inf"), None
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def saved_bytes(fn, inputs=()) -> int:
    """Bytes of the tensors autograd keeps for backward while fn() runs (unique storages), not
    counting the inputs' own storages (every implementation keeps those alive anyway)."""
    seen = {}
    skip = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            seen[key] = t.untyped_storage().nbytes()
        except Exception:
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return int(sum(v for k, v in seen.items() if k not in skip))


def peak_cuda_bytes(fn) -> int | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated() - base)


def passes(forward, inputs):
    """fwd, bwd (backward of a retained graph) and fwd+bwd closures for a scalar-producing forward."""
    def fwd():
        with torch.no_grad():
            return forward(*inputs)

    def fwdbwd():
        for t in inputs:
            if isinstance(t, torch.Tensor) and t.grad is not None:
                t.grad = None
        forward(*inputs).backward()

    state = {}

    def bwd():
        if "out" not in state:
            state["out"] = forward(*inputs)
        state["out"].backward(retain_graph=True)

    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwdbwd}


def roofline(device: str, ms: float, nbytes: float, flops: float, tensor_cores: bool):
    gbs = nbytes / ms / 1e6
    tflops = flops / ms / 1e9
    pct = None
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, (bw, f32, tc) in PEAKS.items():
            if key in name:
                t_min = max(nbytes / (bw * 1e9), flops / ((tc if tensor_cores else f32) * 1e12)) * 1e3
                pct = 100.0 * t_min / ms
    return gbs, tflops, pct


def parse_args(description: str):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer shapes (smoke run)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/<device>/<op>.json)")
    return ap.parse_args()


def cpu_model() -> str:
    """The host CPU's model name and vector ISA (results from one "cpu-x86_64-2threads" folder may come
    from different VMs: this says which)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                if name and flags:
                    break
    except OSError:
        pass
    isa = "avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "baseline"
    return f"{name} ({isa})"


def write_records(records, op_file: str, device: str, out: str | None):
    if out is None:
        d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", device_dir(device))
        os.makedirs(d, exist_ok=True)
        out = os.path.join(d, f"{op_file}.json")
    meta = {"torch": torch.__version__, "device": device_name(device), "date": time.strftime("%Y-%m-%d"),
            "threads": torch.get_num_threads(), "cpu": cpu_model()}
    try:
        import triton
        meta["triton"] = triton.__version__
    except Exception:
        pass
    with open(out, "w") as f:
        json.dump({"meta": meta, "records": records}, f, indent=1)
    return out


def print_table(records):
    hdr = (f"{'op':20s} {'backend':8s} {'shape':24s} {'dtype':9s} {'pass':8s} {'ms':>9s} {'x eager':>8s} "
           f"{'x compile':>9s} {'GB/s':>8s} {'TFLOP/s':>8s} {'%roof':>6s} {'saved MB':>9s}")
    print(hdr)
    print("-" * len(hdr))
    def fmt(v, f):
        return "-" if v is None else format(v, f)
    for r in records:
        print(f"{r['op']:20s} {r['backend']:8s} {r['shape_str']:24s} {r['dtype']:9s} {r['pass']:8s} "
              f"{r['median_ms']:9.4f} {fmt(r.get('speedup_vs_eager'), '8.2f')} "
              f"{fmt(r.get('speedup_vs_compile'), '9.2f')} "
              f"{fmt(r['gb_per_s'], '8.1f')} {fmt(r['tflop_per_s'], '8.3f')} {fmt(r['pct_roofline'], '6.1f')} "
              f"{fmt(None if r.get('saved_bytes') is None else r['saved_bytes'] / 2**20, '9.2f')}")


def bench_case(op: str, shape: dict, dtype, device: str, make_inputs, fused, reference, nbytes, flops,
               backends, use_compile: bool, tensor_cores: bool = False, extra=None, grad: bool = True):
    """Time every backend and the two baselines for one (op, shape, dtype); returns records."""
    inputs = make_inputs()
    shape_str = "x".join(f"{k}{v}" for k, v in shape.items())
    impls = {"eager": reference}
    if use_compile:
        impls["compile"] = torch.compile(reference, dynamic=False)
    for b in backends:
        impls[b] = fused
    timings, saved, peaks = {}, {}, {}
    closures = {}
    for name, fn in impls.items():
        env = "ref" if name in ("eager", "compile") else name
        with backend_env(env):
            ps = passes(fn, inputs)
            closures[name] = {"fwd": ps["fwd"]} if not grad else ps
            saved[name] = saved_bytes(lambda fn=fn: fn(*inputs), inputs) if grad else None
            peaks[name] = peak_cuda_bytes(ps["fwd+bwd"]) if grad and device == "cuda" else None
    # ROUNDS interleaved rounds over the implementations; per (impl, pass) the round with the
    # lowest median counts (drifting machine load hits every implementation alike).
    for _ in range(ROUNDS):
        for name, ps in closures.items():
            env = "ref" if name in ("eager", "compile") else name
            with backend_env(env):
                for p, f in ps.items():
                    t = time_fn(f, device)
                    if (name, p) not in timings or t[0] < timings[(name, p)][0]:
                        timings[(name, p)] = t
    timings = {name: {p: timings[(name, p)] for p in closures[name]} for name in closures}
    records = []
    for name in impls:
        for p, (med, p10, p90) in timings[name].items():
            pass_flops = flops * {"fwd": 1, "bwd": 3, "fwd+bwd": 4}[p]
            pass_bytes = nbytes[p] if isinstance(nbytes, dict) else nbytes
            gbs, tfl, pct = roofline(device, med, pass_bytes, pass_flops, tensor_cores)
            rec = {"op": op, "backend": name, "shape": shape, "shape_str": shape_str,
                   "dtype": str(dtype).replace("torch.", ""), "pass": p, "device": device_name(device),
                   "median_ms": med, "p10_ms": p10, "p90_ms": p90, "gb_per_s": gbs, "tflop_per_s": tfl,
                   "pct_roofline": pct, "speedup_vs_eager": timings["eager"][p][0] / med,
                   "speedup_vs_compile": timings["compile"][p][0] / med if "compile" in timings else None,
                   "saved_bytes": saved[name], "peak_fwdbwd_bytes": peaks[name]}
            if extra:
                rec.update(extra)
            records.append(rec)
    return records

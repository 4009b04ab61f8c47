"""Distributed evaluation against one process: `python -m ssgan_fast.evaluate` on a trained run's samples
against the digits, once as one process with 2 OpenMP threads and once under torchrun with 2 processes
of 1 thread each (gloo, CPU), and as rank 0 alone (one process, 1 thread: what a torchrun rank did before the
evaluation was shared), each with an empty statistics cache so that the real side's features are
extracted too. Reports each wall time (the command, from start to exit) and checks that both give the
same metrics (to float64 rounding). Run it alone on the machine.

    python bench/dist_eval.py --run RUN_DIR [--extractor inception-random] [--per-class 100] [--out F.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def once(cmd: list, env: dict) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.json")
        env = dict(env, SSGAN_FAST_CACHE=os.path.join(tmp, "cache"))
        t0 = time.perf_counter()
        subprocess.run(cmd + ["--out", out], env=env, check=True, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        with open(out) as f:
            return dt, json.load(f)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--extractor", default="inception-random")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--metrics", default="fid,kid,pr,is")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    args = ["--fake", a.run, "--metrics", a.metrics, "--extractor", a.extractor, "--per-class", str(a.per_class),
            "--device", "cpu"]
    one_t, one = once([sys.executable, "-m", "ssgan_fast.evaluate", *args], dict(os.environ, OMP_NUM_THREADS="2"))
    # rank 0 alone, as under torchrun before the evaluation was shared (torchrun gives each rank 1 thread)
    rank0_t, _ = once([sys.executable, "-m", "ssgan_fast.evaluate", *args], dict(os.environ, OMP_NUM_THREADS="1"))
    two_t, two = once([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                       "ssgan_fast.evaluate", *args], dict(os.environ, OMP_NUM_THREADS="1"))
    diff = {k: abs(two["metrics"][k] - v) / max(abs(v), 1e-12) for k, v in one["metrics"].items()}
    rec = {"run": a.run, "extractor": a.extractor, "samples": one["num_samples"], "real": one["num_real"],
           "one_process_2_threads_s": one_t, "one_process_1_thread_s (rank 0 alone)": rank0_t,
           "torchrun_2x1_thread_s": two_t, "speedup_vs_2_threads": one_t / two_t,
           "speedup_vs_rank0_alone": rank0_t / two_t,
           "max_relative_difference": max(diff.values()), "metrics": one["metrics"],
           "distributed": two.get("distributed")}
    print(json.dumps(rec, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rec, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

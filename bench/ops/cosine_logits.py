"""What each way of defining a cosine-logits op costs in eager mode, forward + backward, at the papers'
shapes (CPU: the cpp backend; --device cuda: the cuda backend): the decision behind keeping more than one
autograd form per op.

Three forms of the same host calls (identical kernels, identical results):
- cxx: the C++ autograd Function (csrc/cosine_logits/cosine_logits_autograd.cpp), the eager default of
  the cpp / cuda backends;
- function: the Python torch.autograd.Function (the Triton backend's eager form);
- custom_op: the torch.library custom op with its registered autograd, called eagerly (the form
  torch.compile traces).

For each op and shape: median microseconds of forward + backward per form, and each form's overhead
over cxx as a share of the op's time. Forms are timed interleaved (A B C A B C ...), so that drifts of
a shared machine hit all three alike.

    python bench/ops/cosine_logits.py [--rounds 7] [--out bench/results/<device>/op_forms_<threads>.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ssgan_fast.ops import cosine_logits as cl


def _m(n, d, device):
    return torch.randn(n, d, device=device, requires_grad=True)


def cases(backend: str = "cpp", device: str = "cpu"):
    """(op, shape, make inputs, the op's call wrapper): inputs on `device`, the op forced to `backend`."""
    out = []
    for B, D, K in [(64, 128, 10), (64, 512, 200), (256, 128, 10), (256, 512, 200)]:
        def make(B=B, D=D, K=K):
            x = _m(B, D, device)
            p = _m(K, D, device)
            return (x, p, None, 10.0, None, None, backend)
        out.append(("cosine_softmax", (B, D, K), make, cl.cosine_softmax_op))

        def make_cl(B=B, D=D, K=K):
            return (_m(B, D, device), _m(K, D, device), None, 10.0, 1.0,
                    backend)
        out.append(("clustering_loss", (B, D, K), make_cl, cl.clustering_loss_op))
    for B, D, C in [(64, 512, 10), (64, 512, 200), (256, 512, 10), (256, 512, 200)]:
        def make_ce(B=B, D=D, C=C):
            return (_m(B, D, device), _m(C, D, device),
                    torch.randint(0, C, (B,), device=device), 30.0, 0.5, "mean", True, backend, cl.default_chunk(B, C))
        out.append(("aam_cross_entropy", (B, D, C), make_ce, cl.aam_cross_entropy_op))

        def make_al(B=B, D=D, C=C):
            return (_m(B, D, device), _m(C, D, device),
                    torch.randint(0, C, (B,), device=device), 30.0, 0.5, backend)
        out.append(("aam_logits", (B, D, C), make_al, cl.aam_logits_op))
    return out


def forms(call):
    return {"cxx": lambda *a: call(*a), "function": lambda *a: call(*a, python_function=True),
            "custom_op": lambda *a: call.custom_op(*a)[0]}


def time_pass(fn, inputs, reps):
    x, w = inputs[0], inputs[1]
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        y = fn(*inputs)
        y.float().sum().backward()
        x.grad = w.grad = None
    sync()
    return (time.perf_counter() - t0) / reps * 1e6


def measure(rounds: int, device: str = "cpu") -> list:
    """One row per op and shape: median microseconds of each form, and the forms' overhead over cxx."""
    backend = "cpp" if device == "cpu" else "cuda"
    torch.manual_seed(0)
    rows = []
    for op, shape, make, call in cases(backend, device):
        inputs = make()
        fs = forms(call)
        ref = fs["cxx"](*inputs).detach()
        for fn in fs.values():  # the same value from every form (a check, not a timing)
            torch.testing.assert_close(fn(*inputs).detach(), ref)
        once = time_pass(fs["cxx"], inputs, 3)
        reps = max(5, int(20_000 / max(once, 1.0)))  # about 20 ms a sample
        samples = {k: [] for k in fs}
        for _ in range(rounds):
            for k, fn in fs.items():
                samples[k].append(time_pass(fn, inputs, reps))
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = {"op": op, "backend": backend, "shape": list(shape), "us": med,
               "overhead_vs_cxx_percent": {k: 100.0 * (med[k] - med["cxx"]) / med["cxx"]
                                           for k in ("function", "custom_op")},
               "overhead_vs_cxx_us": {k: med[k] - med["cxx"] for k in ("function", "custom_op")}}
        rows.append(row)
        print(f"{op:18s} {str(shape):16s} cxx {med['cxx']:8.1f} us  function {med['function']:8.1f}  custom_op "
              f"{med['custom_op']:8.1f}  (+{row['overhead_vs_cxx_percent']['custom_op']:.1f} %)", flush=True)
    return rows


def run(args):
    """bench/run.py's entry."""
    return measure(3 if args.quick else 7, args.device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = measure(args.rounds, args.device)
    rec = {"device": f"cpu-{platform.machine()}-{torch.get_num_threads()}threads" if args.device == "cpu"
           else torch.cuda.get_device_name(), "torch": torch.__version__, "rounds": args.rounds, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rec, indent=1))
        print("wrote", args.out)
    return rec


if __name__ == "__main__":
    main()

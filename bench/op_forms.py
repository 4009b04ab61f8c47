"""What each way of defining a cosine-logits op costs in eager mode, forward + backward, at the papers'
shapes (CPU, cpp backend): the decision behind keeping more than one autograd form per op.

Three forms of the same host calls (identical kernels, identical results):
- cxx: the C++ autograd Function (csrc/autograd.cpp), the eager default of the cpp / cuda backends;
- function: the Python torch.autograd.Function (the Triton backend's eager form);
- custom_op: the torch.library custom op with its registered autograd, called eagerly (the form
  torch.compile traces).

For each op and shape: median microseconds of forward + backward per form, and each form's overhead
over cxx as a share of the op's time. Forms are timed interleaved (A B C A B C ...), so that drifts of
a shared machine hit all three alike.

    python bench/op_forms.py [--rounds 7] [--out bench/results/<device>/op_forms.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ssgan_fast.ops import _cosine_logits as cl


def cases():
    """(op, shape, make inputs, the op's call wrapper and its positional inputs)."""
    out = []
    for B, D, K in [(64, 128, 10), (64, 512, 200), (256, 128, 10), (256, 512, 200)]:
        def make(B=B, D=D, K=K):
            x = torch.randn(B, D, requires_grad=True)
            p = torch.randn(K, D, requires_grad=True)
            return (x, p, None, 10.0, None, None, "cpp")
        out.append(("cosine_softmax", (B, D, K), make, cl.cosine_softmax_op))

        def make_cl(B=B, D=D, K=K):
            return (torch.randn(B, D, requires_grad=True), torch.randn(K, D, requires_grad=True), None, 10.0, 1.0,
                    "cpp")
        out.append(("clustering_loss", (B, D, K), make_cl, cl.clustering_loss_op))
    for B, D, C in [(64, 512, 10), (64, 512, 200), (256, 512, 10), (256, 512, 200)]:
        def make_ce(B=B, D=D, C=C):
            return (torch.randn(B, D, requires_grad=True), torch.randn(C, D, requires_grad=True),
                    torch.randint(0, C, (B,)), 30.0, 0.5, "mean", True, "cpp", cl.default_chunk(B, C))
        out.append(("aam_cross_entropy", (B, D, C), make_ce, cl.aam_cross_entropy_op))

        def make_al(B=B, D=D, C=C):
            return (torch.randn(B, D, requires_grad=True), torch.randn(C, D, requires_grad=True),
                    torch.randint(0, C, (B,)), 30.0, 0.5, "cpp")
        out.append(("aam_logits", (B, D, C), make_al, cl.aam_logits_op))
    return out


def forms(call):
    return {"cxx": lambda *a: call(*a), "function": lambda *a: call(*a, python_function=True),
            "custom_op": lambda *a: call.custom_op(*a)[0]}


def time_pass(fn, inputs, reps):
    x, w = inputs[0], inputs[1]
    t0 = time.perf_counter()
    for _ in range(reps):
        y = fn(*inputs)
        y.float().sum().backward()
        x.grad = w.grad = None
    return (time.perf_counter() - t0) / reps * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for op, shape, make, call in cases():
        inputs = make()
        fs = forms(call)
        ref = [t.detach() for t in (fs["cxx"](*inputs),)]
        for name, fn in fs.items():  # the same value from every form (a check, not a timing)
            torch.testing.assert_close(fn(*inputs).detach(), ref[0])
        once = time_pass(fs["cxx"], inputs, 3)
        reps = max(5, int(20_000 / max(once, 1.0)))  # about 20 ms a sample
        samples = {k: [] for k in fs}
        for _ in range(args.rounds):
            for k, fn in fs.items():
                samples[k].append(time_pass(fn, inputs, reps))
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = {"op": op, "shape": list(shape), "us": med,
               "overhead_vs_cxx_percent": {k: 100.0 * (med[k] - med["cxx"]) / med["cxx"] for k in ("function",
                                                                                                  "custom_op")},
               "overhead_vs_cxx_us": {k: med[k] - med["cxx"] for k in ("function", "custom_op")}}
        rows.append(row)
        print(f"{op:18s} {str(shape):16s} cxx {med['cxx']:8.1f} us  function {med['function']:8.1f}  custom_op "
              f"{med['custom_op']:8.1f}  (+{row['overhead_vs_cxx_percent']['custom_op']:.1f} %)", flush=True)
    rec = {"device": f"cpu-{platform.machine()}-{torch.get_num_threads()}threads", "torch": torch.__version__,
           "rounds": args.rounds, "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rec, indent=1))
        print("wrote", args.out)
    return rec


if __name__ == "__main__":
    main()

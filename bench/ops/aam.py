"""Microbenchmarks of op family 2: aam_cross_entropy and aam_logits.

Shapes: B 64-256, D 512, C 10-200 (the papers' class counts) and a face-recognition-sized
C = 10 000 - 100 000 for aam_cross_entropy, where the fused op keeps only lse [B] for backward
(`saved MB` column) instead of several [B, C] tensors. On CPU the 100 000-class case runs
with B = 64 only, and torch.compile baselines only at C <= 200 (compile time).

    python bench/ops/aam.py [--device cpu|cuda] [--quick] [--no-compile]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/common.py
from common import bench_case, parse_args, print_table, write_records  # noqa: E402

from ssgan_fast.ops import aam_cross_entropy, aam_logits  # noqa: E402
from ssgan_fast.ops import reference as R  # noqa: E402


def ce_shapes(quick, device):
    if quick:  # on a GPU also the face-recognition size of the memory / roofline targets
        return [(64, 512, 10), (256, 512, 200), (64, 512, 10_000)] + ([(256, 512, 100_000)] if device == "cuda" else [])
    big = [(256, 512, 10_000), (256, 512, 100_000)] if device == "cuda" else [(256, 512, 10_000), (64, 512, 100_000)]
    return [(B, 512, C) for B in (64, 256) for C in (10, 200)] + big


def run(args):
    dev, records = args.device, []
    backends = ["cpp"] if dev == "cpu" else ["triton", "cuda"]
    torch.manual_seed(0)
    for dtype in ([torch.float32] if dev == "cpu" else [torch.float32, torch.bfloat16]):
        el = torch.tensor([], dtype=dtype).element_size()
        for B, D, C in ce_shapes(args.quick, dev):
            def make(B=B, D=D, C=C, dtype=dtype):
                return (torch.randn(B, D, device=dev, dtype=dtype, requires_grad=True),
                        torch.randn(C, D, device=dev, dtype=dtype, requires_grad=True),
                        torch.randint(0, C, (B,), device=dev))

            use_compile = not args.no_compile and (dev == "cuda" or C <= 200)
            shape = {"B": B, "D": D, "C": C}
            # bytes: read x and W once per pass; flops: the B x C x D GEMM
            records += bench_case("aam_cross_entropy", shape, dtype, dev, make,
                                  lambda x, w, t: aam_cross_entropy(x, w, t, 30.0, 0.5),
                                  lambda x, w, t: R.aam_cross_entropy(x, w, t, 30.0, 0.5),
                                  (B * D + C * D) * el, 2.0 * B * C * D, backends, use_compile,
                                  tensor_cores=dtype != torch.float32)
            if C <= 200:
                def logits_fused(x, w, t):
                    return aam_logits(x, w, t, 30.0, 0.5).float().square().mean()

                def logits_ref(x, w, t):
                    return R.aam_logits(x, w, t, 30.0, 0.5).float().square().mean()

                records += bench_case("aam_logits", shape, dtype, dev, make, logits_fused, logits_ref,
                                      (B * D + C * D + B * C) * el, 2.0 * B * C * D, backends, use_compile)
    return records


if __name__ == "__main__":
    args = parse_args(__doc__)
    recs = run(args)
    print_table(recs)
    print("wrote", write_records(recs, "aam", args.device, args.out))

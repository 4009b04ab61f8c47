"""Microbenchmarks of op family 1: cosine_softmax, clustering_loss, prototype_ema_update.

Shapes from the papers: B 64-256, D 128-512, K 10-200 prototypes. The timed forward of
cosine_softmax is `(cosine_softmax(x, P, tau) * G).sum()` so that every pass ends in a scalar
(the same extra work for every implementation).

    python bench/ops/prototype.py [--device cpu|cuda] [--quick] [--no-compile]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/common.py
from common import bench_case, parse_args, print_table, write_records  # noqa: E402

from ssgan_fast.ops import clustering_loss, cosine_softmax, prototype_ema_update  # noqa: E402
from ssgan_fast.ops import reference as R  # noqa: E402


def shapes(quick):
    if quick:
        return [(64, 128, 10), (256, 512, 200)]
    return [(B, D, K) for B in (64, 256) for D in (128, 512) for K in (10, 200)]


def backends_for(device):
    return ["cpp"] if device == "cpu" else ["triton", "cuda"]


def run(args):
    dev, records = args.device, []
    torch.manual_seed(0)
    for dtype in ([torch.float32] if dev == "cpu" else [torch.float32, torch.bfloat16]):
        for B, D, K in shapes(args.quick):
            el = torch.tensor([], dtype=dtype).element_size()
            nbytes = (B * D + K * D + B * K) * el
            flops = 2.0 * B * K * D

            def make(B=B, D=D, K=K, dtype=dtype):
                return (torch.randn(B, D, device=dev, dtype=dtype, requires_grad=True),
                        torch.randn(K, D, device=dev, dtype=dtype, requires_grad=True),
                        torch.randn(B, K, device=dev, dtype=dtype))

            shape = {"B": B, "D": D, "K": K}
            common = dict(backends=backends_for(dev), use_compile=not args.no_compile)
            records += bench_case("cosine_softmax", shape, dtype, dev, make,
                                  lambda x, p, g: (cosine_softmax(x, p, 0.5) * g).sum(),
                                  lambda x, p, g: (R.cosine_softmax(x, p, 0.5) * g).sum(), nbytes, flops, **common)
            records += bench_case("clustering_loss", shape, dtype, dev, make,
                                  lambda x, p, g: clustering_loss(x, p, 0.5, 4.0),
                                  lambda x, p, g: R.clustering_loss(x, p, 0.5, 4.0), nbytes, flops, **common)

            def make_ema(B=B, D=D, K=K, dtype=dtype):
                return (torch.randn(K, D, device=dev, dtype=dtype), torch.randn(B, D, device=dev, dtype=dtype),
                        torch.softmax(torch.randn(B, K, device=dev), 1).to(dtype))

            records += bench_case("prototype_ema_update", shape, dtype, dev, make_ema,
                                  lambda p, f, w: prototype_ema_update(p, f, w, 0.01),
                                  lambda p, f, w: R.prototype_ema_update(p, f, w, 0.01),
                                  (B * D + 2 * K * D + B * K) * el, 2.0 * B * K * D, grad=False, **common)
    return records


if __name__ == "__main__":
    args = parse_args(__doc__)
    recs = run(args)
    print_table(recs)
    print("wrote", write_records(recs, "prototype", args.device, args.out))

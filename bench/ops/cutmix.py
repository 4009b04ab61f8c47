"""Microbenchmarks of op family 3: cutmix and mask_embed (MED-GAN Eq. 1-2).

Memory-bound ops: GB/s counts the minimum traffic of each pass (cutmix fwd: one of xa / xb per
element + the output + the mask; bwd: g in, ga and gb out; mask_embed fwd: feat + emb in, out;
bwd: g, feat, emb in, dfeat, demb out). The timed forward is `(op(...) * G).sum()` so every pass
ends in a scalar (the same extra work for every implementation).

    python bench/ops/cutmix.py [--device cpu|cuda] [--quick] [--no-compile]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/common.py
from common import bench_case, parse_args, print_table, write_records  # noqa: E402

from ssgan_fast.ops import cutmix, mask_embed, sample_cutmix_boxes  # noqa: E402
from ssgan_fast.ops import reference as R  # noqa: E402


def backends_for(device):
    return ["cpp"] if device == "cpu" else ["triton", "cuda"]


def run(args):
    dev, records = args.device, []
    torch.manual_seed(0)
    img_shapes = [(64, 3, 32, 32), (64, 3, 128, 128)] if not args.quick else [(64, 3, 32, 32)]
    me_shapes = [((64, 256, 16, 16), (256, 16, 16)), ((64, 256, 16, 16), (1, 8, 8)),
                 ((64, 128, 32, 32), (1, 128, 128))] if not args.quick else [((64, 256, 8, 8), (1, 4, 4))]
    common = dict(backends=backends_for(dev), use_compile=not args.no_compile)
    for dtype in ([torch.float32] if dev == "cpu" else [torch.float32, torch.bfloat16]):
        el = torch.tensor([], dtype=dtype).element_size()
        for cl in (False, True):
            fmt = torch.channels_last if cl else torch.contiguous_format
            for B, C, H, W in img_shapes:
                n = B * C * H * W
                boxes, _ = sample_cutmix_boxes(B, H, W, 0.2, generator=torch.Generator(dev).manual_seed(0), device=dev)

                def make(B=B, C=C, H=H, W=W, dtype=dtype, fmt=fmt):
                    def mk():
                        return torch.randn(B, C, H, W, device=dev, dtype=dtype).contiguous(memory_format=fmt)
                    return mk().requires_grad_(), mk().requires_grad_(), mk()

                nb = {"fwd": (2 * n + B * H * W) * el, "bwd": 3 * n * el, "fwd+bwd": (5 * n + B * H * W) * el}
                shape = {"B": B, "C": C, "H": H, "W": W, "cl": int(cl)}
                records += bench_case("cutmix", shape, dtype, dev, make,
                                      lambda a, b, g, bx=boxes: (cutmix(a, b, bx)[0] * g).sum(),
                                      lambda a, b, g, bx=boxes: (R.cutmix(a, b, bx)[0] * g).sum(), nb, 0.0, **common)
            for (B, C, H, W), (ce, h, w) in me_shapes:
                n, ne = B * C * H * W, B * ce * h * w

                def make_me(B=B, C=C, H=H, W=W, ce=ce, h=h, w=w, dtype=dtype, fmt=fmt):
                    feat = torch.randn(B, C, H, W, device=dev, dtype=dtype).contiguous(memory_format=fmt)
                    return (feat.requires_grad_(),
                            torch.randn(B, ce, h, w, device=dev, dtype=dtype).requires_grad_(),
                            torch.randn(B, C, H, W, device=dev, dtype=dtype).contiguous(memory_format=fmt))

                nb = {"fwd": (2 * n + ne) * el, "bwd": (3 * n + 2 * ne) * el, "fwd+bwd": (5 * n + 3 * ne) * el}
                shape = {"B": B, "C": C, "H": H, "W": W, "emb": f"{ce}x{h}x{w}", "cl": int(cl)}
                records += bench_case("mask_embed", shape, dtype, dev, make_me,
                                      lambda f, e, g: (mask_embed(f, e) * g).sum(),
                                      lambda f, e, g: (R.mask_embed(f, e) * g).sum(), nb, 0.0, **common)
    return records


if __name__ == "__main__":
    args = parse_args(__doc__)
    recs = run(args)
    print_table(recs)
    print("wrote", write_records(recs, "cutmix", args.device, args.out))

"""End-to-end train-step throughput per model: images/s of one full iteration (every network's
update) for eager fp32, --amp bf16, the fused ops vs the reference ops (SSGAN_FAST_BACKEND=ref), and on
CUDA --graphs / --amp bf16 --graphs (whole steps captured in CUDA graphs, as the trainer does).

Digits upsampled to 32 x 32, batch 32 labeled + 32 unlabeled (+ as many synthesized), the
models' digits presets otherwise (LCP-GAN with its digits preset's tiny random CLIP; AAM-StarGAN
with n_critic = 1, so that every timed step is a full D + G iteration; with the preset's 5 a step
averages 4 D-only and 1 D + G iteration). Adam is fused on CUDA in every mode (the trainer's
setting). "compile" is --compile (inductor, every network compiled in place; 3 warm-up steps compile
the grad-mode variants, compile time not counted).
Target on a GPU: --amp --graphs >= 2x eager fp32 at 32 x 32, batch 64;
fused >= 1.3x reference ops.

    python bench/train_step.py [--device cpu|cuda] [--quick]
"""
import os
import sys
import time

import torch
import torch._dynamo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import backend_env, device_name, parse_args, write_records  # noqa: E402

from ssgan_fast.data import TensorLoader, images_to_tensor, make_split, open_dataset  # noqa: E402
from ssgan_fast.engine.amp import Amp  # noqa: E402
from ssgan_fast.engine.graphs import StepGraphs, prepare_optimizers  # noqa: E402
from ssgan_fast.engine.trainer import compile_model  # noqa: E402
from ssgan_fast.models import get_model  # noqa: E402
from ssgan_fast.train import _preset  # noqa: E402


def run(args):
    dev, records = args.device, []
    size, bl = 32, 32
    ds = open_dataset("digits", size=size)
    split = make_split(ds.labels, 10, label_fraction=0.1, seed=0)
    steps = 2 if args.quick else 6
    if dev == "cuda" and not args.quick:
        steps = 30  # GPU steps are milliseconds
    for name in ("sphericgan", "medgan", "triplegan", "cvaegan", "aam-acgan", "aam-stargan", "lcpgan"):
        M = get_model(name)
        over = {"n_critic": 1} if name == "aam-stargan" else {}  # every step a full D + G iteration
        mcfg = M.Config(**{**_preset(name, "digits")["model"], **over})
        modes = [("eager-fp32", None, None, False), ("amp-bf16", "bf16", None, False),
                 ("eager-fp32-ref-ops", None, "ref", False), ("compile", None, None, False)]
        if dev == "cuda":
            modes += [("graphs", None, None, True), ("amp-bf16-graphs", "bf16", None, True)]
        if args.quick:
            modes = [m for m in modes if m[0] != "compile"]
        for mode, amp, backend, graphs in modes:
            with backend_env(backend):
                torch.manual_seed(0)
                model = M(mcfg, {"kind": "image", "size": size, "channels": 1, "num_classes": 10}).to(dev)
                if hasattr(model, "fit_prior"):
                    model.fit_prior(images_to_tensor(ds.images[:1000]).to(dev))
                if hasattr(model, "fit_clusters"):
                    lab = split.labeled
                    model.fit_clusters(images_to_tensor(ds.images[lab]).to(dev),
                                       torch.as_tensor(ds.labels[lab]).to(dev))
                prepare_optimizers(model.optimizers(), dev, graphs)
                if mode == "compile":
                    torch._dynamo.reset()
                    compile_model(model)
                loader = TensorLoader(ds, split, bl, bl, device=dev, seed=0)
                a = Amp(amp, dev)
                if graphs:
                    g = StepGraphs(model, a, loader, dev, warmup=2)

                    def step(i, g=g):
                        return g(i)
                else:
                    def step(i, model=model, loader=loader, a=a):
                        return model.train_step(next(loader), i, a)
                first = 3 if graphs or mode == "compile" else 1
                for i in range(first):  # warm-up (graphs: 2 eager steps + the capture)
                    step(i)
                if graphs and g.disabled:
                    raise RuntimeError(f"{name}: {g.disabled}")
                if dev == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                for i in range(steps):
                    step(first + i)
                if dev == "cuda":
                    torch.cuda.synchronize()
                dt = (time.perf_counter() - t0) / steps
            rec = {"op": "train_step", "backend": mode, "shape": {"model": name, "size": size, "batch": 2 * bl},
                   "shape_str": f"{name}-{size}px-b{2 * bl}", "dtype": amp or "float32", "device": device_name(dev),
                   "seconds_per_step": dt, "images_per_s": 2 * bl / dt}
            records.append(rec)
            print(f"{name:10s} {mode:20s} {dt * 1e3:9.1f} ms/step {2 * bl / dt:9.1f} real images/s", flush=True)
        if dev != "cuda":
            for mode in ("graphs", "amp-bf16-graphs"):
                records.append({"op": "train_step", "backend": mode, "shape_str": f"{name}-{size}px-b{2 * bl}",
                                "device": device_name(dev), "images_per_s": None, "note": "CUDA graphs need a GPU"})
    by = {(r["shape_str"], r["backend"]): r["images_per_s"] for r in records}
    for r in records:
        if r["images_per_s"]:
            r["speedup_vs_eager_fp32"] = r["images_per_s"] / by[(r["shape_str"], "eager-fp32")]
    return records


if __name__ == "__main__":
    args = parse_args(__doc__)
    print("wrote", write_records(run(args), "train_step", args.device, args.out))

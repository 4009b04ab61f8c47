"""The file-backed path: steps/s of SphericGAN training read from a CUB-200-2011 layout on disk at
64 and 128 px with each loader (tensor: decoded once into memory; torch: DataLoader workers
decoding every batch; dali: DALI's CPU operators where DALI is installed - on a GPU its mixed
decoder), loader-only batches/s alongside; and the time of the final evaluation split into
generation, classifier, real features, fake features and statistics (random-weight Inception:
the code path of the real weights, the same cost).

The layout is written by tests/layouts.py (class-coloured JPEG / PNG pictures of 70-200 px in RGB,
grayscale, CMYK and RGBA). The model is SphericGAN at the digits preset's widths (ch 16), batch
8 + 8, so the numbers show the data path's cost next to a small model's step.

    python bench/data_path.py [--device cpu] [--quick]
"""
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import device_name, parse_args, write_records  # noqa: E402

from ssgan_fast.data import PrepData, dali_available, make_loader, make_split, open_dataset  # noqa: E402
from ssgan_fast.engine.amp import Amp  # noqa: E402
from ssgan_fast.engine.run import generate_batches  # noqa: E402
from ssgan_fast.evaluation import Samples, evaluate  # noqa: E402
from ssgan_fast.models import get_model  # noqa: E402
from tests import layouts  # noqa: E402


def run(args):
    dev, records = args.device, []
    steps = 2 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SSGAN_FAST_WEIGHTS"] = os.path.join(tmp, "w")
        os.environ["SSGAN_FAST_CACHE"] = os.path.join(tmp, "c")
        root = layouts.make_cub(Path(tmp) / "cub", classes=5, per_class=12 if args.quick else 40)
        spec = f"cub200:{root}"
        loaders = ["tensor", "torch"] + (["dali"] if dali_available()[0] else [])
        for size in (64, 128):
            ds = open_dataset(spec, "train", size)
            split = make_split(ds.labels, ds.num_classes, label_fraction=0.5, seed=0)
            M = get_model("sphericgan")
            for kind in loaders:
                torch.manual_seed(0)
                model = M(M.Config(ch=16, c_ch=16, num_prototypes=5), {"kind": "image", "size": size,
                                                                        "channels": 3, "num_classes": 5}).to(dev)
                t0 = time.perf_counter()
                model.prepare(PrepData(ds, split, dev), seed=0)
                t_prep = time.perf_counter() - t0
                kw = {"_dali_device": "cpu"} if kind == "dali" and dev == "cpu" else {}
                t0 = time.perf_counter()
                loader = make_loader(kind, ds, split, 8, 8, dev, seed=0, **kw)
                t_open = time.perf_counter() - t0
                next(loader)
                t0 = time.perf_counter()
                for _ in range(steps * 2):
                    next(loader)
                t_batch = (time.perf_counter() - t0) / (steps * 2)
                amp = Amp(None, dev)
                model.train_step(next(loader), 0, amp)
                t0 = time.perf_counter()
                for i in range(steps):
                    model.train_step(next(loader), i + 1, amp)
                t_step = (time.perf_counter() - t0) / steps
                rec = {"op": "data_path", "backend": kind, "shape": {"size": size, "batch": 16, "images": len(ds)},
                       "shape_str": f"cub-{size}px-b16", "dtype": "float32", "device": device_name(dev),
                       "steps_per_s": 1 / t_step, "loader_batches_per_s": 1 / t_batch, "loader_open_s": t_open,
                       "prepare_s": t_prep}
                records.append(rec)
                print(f"{size:4d}px {kind:7s} {1 / t_step:6.2f} steps/s   loader alone {1 / t_batch:7.1f} batches/s   "
                      f"open {t_open:5.2f} s   prepare {t_prep:5.2f} s", flush=True)
            # the final evaluation of this model's EMA-less generator: 8 samples per class
            nc, per = 5, 8
            labels = torch.arange(nc).repeat_interleave(per)
            modules = {n: getattr(model, n) for n in model.generator_modules()}
            t0 = time.perf_counter()
            samples = Samples.from_arrays(torch.cat([x for x, _ in generate_batches(model, modules, nc, per, 0, dev)]),
                                          labels)
            t_gen = time.perf_counter() - t0
            out = evaluate(samples, spec, size, ["fid", "is", "ra"], extractor="inception-random",
                           classifier_epochs=2, batch=20, device=dev, strict=False)
            t = {"generation_s": t_gen, **out["timing"]}
            records.append({"op": "final_eval", "backend": "inception-random", "shape": {"size": size, "samples": 40,
                                                                                        "real": len(ds)},
                            "shape_str": f"cub-{size}px-40fake-{len(ds)}real", "dtype": "float32",
                            "device": device_name(dev), **t, "total_s": t_gen + out["seconds"]})
            print(f"{size:4d}px final eval: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()), flush=True)
    return records


if __name__ == "__main__":
    args = parse_args(__doc__)
    print("wrote", write_records(run(args), "data_path", args.device, args.out))

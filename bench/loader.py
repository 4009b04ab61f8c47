"""Loader throughput: images/s of the tensor, torch (and DALI where it runs) loaders at 32, 64, 128 px.

Two sources per resolution: in-memory uint8 arrays (the CIFAR / digits case) and a folder of JPEG
files written to a temporary directory. Batches of 64 labeled + 64 unlabeled images with flip +
crop augmentation. Target: on CPU the tensor loader >= 5x the torch DataLoader for in-memory data;
on a GPU loading >= 10x the train step's demand (the demand column is filled in by
bench/train_step.py once the trainer exists).

    python bench/loader.py [--device cpu|cuda] [--quick]
"""
import os
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROUNDS, device_name, parse_args, write_records  # noqa: E402

from ssgan_fast.data import Augment, ImageDataset, make_loader, make_split, open_dataset  # noqa: E402


def throughput(loader, device, steps):
    next(loader)  # warm-up (workers start, first decode)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        b = next(loader)
        n += b["x_l"].shape[0] + b["x_u"].shape[0]
    if device == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def run(args):
    dev, records = args.device, []
    rng = np.random.default_rng(0)
    aug = Augment(flip=True, crop_pad=4)
    sizes = [32] if args.quick else [32, 64, 128]
    kinds = ["tensor", "torch"] + (["dali"] if dev == "cuda" else [])
    for size in sizes:
        n = {32: 20000, 64: 5000, 128: 2000}[size] // (4 if args.quick else 1)
        labels = np.tile(np.arange(10), n // 10)
        mem = ImageDataset(f"random{size}", labels, 10, size, images=rng.integers(0, 256, (n, size, size, 3), np.uint8))
        with tempfile.TemporaryDirectory() as tmp:
            nf = min(n, 1000)
            for c in range(10):
                os.makedirs(f"{tmp}/{c}")
            for i in range(nf):
                Image.fromarray(mem.images[i]).save(f"{tmp}/{labels[i]}/{i}.jpg", quality=90)
            files = open_dataset(f"folder:{tmp}", size=size)
            for src, ds in (("memory", mem), ("jpeg-files", files)):
                split = make_split(ds.labels, 10, labels_per_class=20, seed=0)
                loaders = {}
                for kind in kinds:
                    if kind == "dali" and src == "memory":
                        continue
                    kw = {"num_workers": min(8, os.cpu_count() or 1)} if kind == "torch" else {}
                    try:
                        loaders[kind] = make_loader(kind, ds, split, 64, 64, dev, aug, seed=0, **kw)
                    except Exception as e:  # e.g. DALI missing on the GPU machine
                        print(f"{size:4d}px {src:10s} {kind:7s} skipped: {e}")
                steps = 10 if args.quick else 30
                best = {k: 0.0 for k in loaders}
                for _ in range(ROUNDS):  # interleaved rounds, best per loader (a noisy shared machine)
                    for kind, loader in loaders.items():
                        best[kind] = max(best[kind], throughput(loader, dev, steps))
                del loaders
                for kind, ips in best.items():
                    rec = {"op": "loader", "backend": kind, "shape": {"size": size, "source": src, "N": len(ds)},
                           "shape_str": f"{size}px-{src}", "dtype": "uint8->float32", "device": device_name(dev),
                           "images_per_s": ips, "train_step_demand_images_per_s": None}
                    records.append(rec)
                    print(f"{size:4d}px {src:10s} {kind:7s} {ips:12.0f} images/s")
    # the train step's demand: the fastest model iteration measured by bench/train_step.py on this device
    import json

    from common import device_dir
    ts = os.environ.get("SSGAN_FAST_TRAIN_STEP_JSON") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", device_dir(dev), "train_step.json")
    demand = None
    if os.path.isfile(ts):
        vals = [r["images_per_s"] for r in json.load(open(ts))["records"] if r.get("images_per_s")]
        demand = max(vals) if vals else None
    for r in records:
        r["train_step_demand_images_per_s"] = demand
        r["x_demand"] = r["images_per_s"] / demand if demand else None
    if demand:
        print(f"train-step demand (fastest model step, bench/train_step.py): {demand:.0f} images/s")
    by = {(r["shape_str"], r["backend"]): r["images_per_s"] for r in records}
    for r in records:
        t = by.get((r["shape_str"], "torch"))
        r["speedup_vs_torch"] = r["images_per_s"] / t if t else None
    return records


if __name__ == "__main__":
    args = parse_args(__doc__)
    print("wrote", write_records(run(args), "loader", args.device, args.out))

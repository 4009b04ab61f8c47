"""Train the RA / GAN-test classifiers that the package ships for the built-in digits, so that the first
evaluate() on the digits and the default training run do not train one (ssgan_fast.evaluation.
shipped_classifier). Each is trained exactly as get_classifier trains it on first use (1 OpenMP thread,
so the file is the same on every run of this tool on one machine), copied into
ssgan_fast/evaluation/classifiers/ and listed with its sha256 in manifest.json there.

    python tools/ship_classifiers.py            # train the missing ones and write the manifest
    python tools/ship_classifiers.py --check    # the manifest matches the files (exit 1 otherwise)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

# (size, seed, epochs): the default run (16 px, seed 0, its eval_classifier_epochs 10) and evaluate()'s
# default (30 epochs, seed 0) at the 16 and 32 px a drop-in user renders
SHIPPED = ((16, 0, 10), (16, 0, 30), (32, 0, 30))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    from ssgan_fast.data import open_dataset
    from ssgan_fast.evaluation import SHIPPED_DIR, data_hash
    from ssgan_fast.weights import sha256_file
    manifest = SHIPPED_DIR / "manifest.json"
    if args.check:
        files = json.loads(manifest.read_text())["files"]
        bad = [n for n, e in files.items() if sha256_file(SHIPPED_DIR / n) != e["sha256"]]
        print("manifest:", "ok" if not bad else f"mismatch {bad}")
        return 1 if bad else 0
    torch.set_num_threads(1)
    SHIPPED_DIR.mkdir(exist_ok=True)
    files = json.loads(manifest.read_text())["files"] if manifest.exists() else {}
    for size, seed, epochs in SHIPPED:
        ds = open_dataset("digits", "train", size)
        name = f"classifier-{ds.name}-{data_hash(ds)}-{size}-s{seed}-e{epochs}.pt"
        if name in files and (SHIPPED_DIR / name).is_file():
            print("kept", name)
            continue
        with tempfile.TemporaryDirectory() as w:
            os.environ["SSGAN_FAST_WEIGHTS"] = w
            from ssgan_fast.evaluation import get_classifier
            t = time.perf_counter()
            _, path, sha = get_classifier("digits", size, ds, "cpu", epochs=epochs, seed=seed)
            took = time.perf_counter() - t
            assert Path(path).name == name, (path, name)
            shutil.copyfile(path, SHIPPED_DIR / name)
        files[name] = {"sha256": sha, "data": "digits", "split": "train", "size": size, "seed": seed,
                       "epochs": epochs, "arch": "small", "torch": torch.__version__, "threads": 1}
        print(f"trained {name} in {took:.0f} s, sha256 {sha[:12]}")
    manifest.write_text(json.dumps({"files": dict(sorted(files.items()))}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

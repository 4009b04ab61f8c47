"""Train-step time of one commit's code against another's, alternated (A B A B) on one machine:
median ms of 8 eager fp32 steps (after 2 warm-up steps) of MED-GAN, AAM-ACGAN and CVAE-GAN at 32 px,
batch 32 + 32, 2 threads, the digits presets. Run once per tree, with PYTHONPATH pointing at it (a git
worktree of the other commit, its _C copied in when the op schemas are the same):

    PYTHONPATH=/tmp/before python bench/train_step_ab.py /tmp/before
    PYTHONPATH=. python bench/train_step_ab.py .
"""
import json
import sys
import time

import torch

import ssgan_fast
from ssgan_fast.data import TensorLoader, make_split, open_dataset
from ssgan_fast.engine.amp import Amp
from ssgan_fast.models import get_model

sys.path.insert(0, sys.argv[1] + "/bench")
from train_step import _preset  # noqa: E402


def main():
    torch.set_num_threads(2)
    out = {"code": ssgan_fast.__file__}
    ds = open_dataset("digits", size=32)
    split = make_split(ds.labels, 10, label_fraction=0.1, seed=0)
    for name in ("medgan", "aam-acgan", "cvaegan"):
        M = get_model(name)
        torch.manual_seed(0)
        model = M(M.Config(**_preset(name, "digits")["model"]),
                  {"kind": "image", "size": 32, "channels": 1, "num_classes": 10})
        loader = TensorLoader(ds, split, 32, 32, device="cpu", seed=0)
        amp = Amp(None, "cpu")
        for i in range(2):
            model.train_step(next(loader), i, amp)
        times = []
        for i in range(8):
            t0 = time.perf_counter()
            model.train_step(next(loader), 2 + i, amp)
            times.append(time.perf_counter() - t0)
        out[name] = sorted(times)[len(times) // 2] * 1e3
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Dropping the AAM head into a softmax-tuned ACGAN: the examples' plain ACGAN (examples/acgan_plain.py,
8 x 8 digits, 400 steps, batch 64, Adam 2e-4) against the same script with its auxiliary classifier
swapped for `AAMHead`, over paired seeds. Each arm is scored weights-free on 1 000 samples
(ssgan_fast.metrics.digits: recognition by an SVM trained on the real digits, within-class spread ratio,
and fd_pixels, the Frechet distance of the 64 pixels to the real training digits; lower is better).

    python bench/aam_dropin.py [--seeds 5] [--steps 400] [--arms softmax,aam-raw,aam] [--out FILE]
    python bench/aam_dropin.py --table A.json [B.json ...]     # the markdown table of finished sweeps

Arms: softmax (the script as it is); aam-raw (AAMHead(s=30, m=0.5, calibrate=False): Eq. 8 as the paper
writes it, insightface's ArcFace s and m); aam (AAMHead with its defaults: the loss calibrated to start at
log C); aam-real-only (the same, D's classifier fits real images only: the paper's Eq. 5); aam-raw-warmup
(the raw loss with the margin grown from 0 over the first 100 steps). More arms as NAME=key:value,...
(arms separated by ';') with keys s, m, calibrate (0 / 1), lam (lambda_cls), warmup (margin warm-up
steps), fake (1: D also classifies G's samples, as the example does; 0: real images only), cls.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from common import NUM_CLASSES, Z_DIM, Generator, d_trunk, digits, gan_losses  # noqa: E402

from ssgan_fast.metrics.digits import digits_scores  # noqa: E402
from ssgan_fast.nn import AAMHead  # noqa: E402

ARMS = {"softmax": {"cls": "softmax"}, "aam-raw": {"cls": "aam", "s": 30.0, "m": 0.5, "calibrate": 0},
        "aam": {"cls": "aam"}, "aam-real-only": {"cls": "aam", "fake": 0},
        "aam-raw-warmup": {"cls": "aam", "calibrate": 0, "margin_warmup": 100}}


class D(nn.Module):
    def __init__(self, arm: dict):
        super().__init__()
        self.block1, self.rest = d_trunk()
        self.adv = nn.Linear(128, 1)
        if arm["cls"] == "softmax":
            self.cls = nn.Linear(128, NUM_CLASSES)
        else:
            kw = {k: arm[k] for k in ("s", "m", "calibrate") if k in arm}
            self.cls = AAMHead(128, NUM_CLASSES, **kw)
        self.aam = arm["cls"] != "softmax"

    def forward(self, x):
        h = self.rest(self.block1(x))
        return self.adv(h)[:, 0], h

    def cls_loss(self, h, y):
        return self.cls.loss(h, y) if self.aam else F.cross_entropy(self.cls(h), y)


def train(arm: dict, seed: int, steps: int, batch: int = 64) -> dict:
    torch.manual_seed(seed)
    x_all, y_all = digits()
    G, Dn = Generator(), D(arm)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(Dn.parameters(), 2e-4, betas=(0.5, 0.999))
    lam, fake, warm = arm.get("lam", 1.0), arm.get("fake", 1), arm.get("margin_warmup", 0)
    first = None
    for step in range(steps):
        if warm:  # the margin grows linearly from 0 to m over the first `warm` steps
            Dn.cls.m = arm.get("m", 0.5) * min(1.0, step / warm)
        idx = torch.randint(0, len(x_all), (batch,))
        x, y = x_all[idx], y_all[idx]
        y_z = torch.randint(0, NUM_CLASSES, (batch,))
        x_z = G(torch.randn(batch, Z_DIM), y_z)
        out_r, h_r = Dn(x)
        out_f, h_f = Dn(x_z.detach())
        cls_r = Dn.cls_loss(h_r, y)
        first = float(cls_r.detach()) if first is None else first
        loss_d = gan_losses(out_r, out_f)[0] + lam * cls_r + (lam * Dn.cls_loss(h_f, y_z) if fake else 0)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out_f, h_f = Dn(x_z)
        loss_g = gan_losses(out_r.detach(), out_f)[1] + lam * Dn.cls_loss(h_f, y_z)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    G.eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1000 + seed)
        y_z = torch.arange(1000) % NUM_CLASSES
        x_z = G(torch.randn(1000, Z_DIM, generator=gen), y_z)
    fake8 = ((x_z[:, 0] + 1) * 8).clamp(0, 16).double().numpy()
    s = digits_scores(fake8, y_z.numpy())
    return {"recognition": s["recognition_percent"], "spread": s["spread_ratio"], "fd_pixels": s["fd_pixels"],
            "cls_loss_start": first}


def parse_arm(spec: str) -> tuple[str, dict]:
    if spec in ARMS:
        return spec, dict(ARMS[spec])
    name, _, kv = spec.partition("=")
    arm = {"cls": "aam"}
    for item in filter(None, kv.split(",")):
        k, _, v = item.partition(":")
        if k not in ("s", "m", "lam", "warmup", "fake", "cls", "calibrate"):
            raise SystemExit(f"unknown arm key {k!r} in {spec!r}")
        key = {"warmup": "margin_warmup"}.get(k, k)
        arm[key] = v if k == "cls" else (int(v) if k in ("warmup", "fake", "calibrate") else float(v))
    return name, arm


WHAT = {"softmax": "softmax head (the script as written)", "aam-raw": "AAMHead, raw Eq. 8 loss (calibrate=False)",
        "aam": "AAMHead, defaults (calibrated)", "aam-real-only": "AAMHead, defaults, D classifies real images only",
        "aam-raw-warmup": "raw loss, margin warm-up over 100 steps"}


def markdown(paths: list, fd: bool = True) -> str:
    """The docs' table from one or more result files (one per thread count): median (worst seed) per arm."""
    res = [json.loads(Path(p).read_text()) for p in paths]
    head = "| arm | threads | class loss at start | recognised % | spread |" + (" FD pixels |" if fd else "")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name in res[0]["arms"]:
        for r in res:
            v = r["arms"][name]
            s = v["summary"]
            start = float(np.mean([x["cls_loss_start"] for x in v["runs"]]))
            cells = [WHAT.get(name, name), str(r["torch_threads"]), f"{start:.1f}",
                     f"{s['recognition']['median']:.1f} ({s['recognition']['worst']:.1f})",
                     f"{s['spread']['median']:.2f} ({s['spread']['worst']:.2f})"]
            if fd:
                cells.append(f"{s['fd_pixels']['median']:.0f} ({s['fd_pixels']['worst']:.0f})")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--table"]:  # aam_dropin.py --table A.json [B.json ...]: the docs' markdown table
        print(markdown(argv[1:]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--out")
    a = p.parse_args(argv)
    arms = dict(parse_arm(s) for s in a.arms.split(";" if ";" in a.arms else ","))
    res = {}
    for name, arm in arms.items():
        rows = []
        for seed in range(a.seeds):
            t0 = time.perf_counter()
            r = train(arm, seed, a.steps)
            r["seconds"] = time.perf_counter() - t0
            rows.append(r)
            print(f"{name} seed {seed}: recognised {r['recognition']:.1f} %, spread {r['spread']:.2f}, "
                  f"fd_pixels {r['fd_pixels']:.2f}, cls loss at start {r['cls_loss_start']:.2f}", flush=True)
        summary = {k: {"median": statistics.median(r[k] for r in rows), "worst": (min if k in ("recognition", "spread")
                                                                             else max)(r[k] for r in rows),
                       "mean": float(np.mean([r[k] for r in rows]))}
                   for k in ("recognition", "spread", "fd_pixels")}
        res[name] = {"arm": arm, "runs": rows, "summary": summary}
        print(f"== {name}: " + ", ".join(f"{k} median {v['median']:.2f} worst {v['worst']:.2f}"
                                        for k, v in summary.items()), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps({"steps": a.steps, "seeds": a.seeds, "torch_threads": torch.get_num_threads(),
                                           "arms": res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

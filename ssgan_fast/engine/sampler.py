"""Sampling a trained run as users do it: chosen classes, reproducible per-image seeds, truncation.

    from ssgan_fast.engine.sampler import Sampler
    s = Sampler("runs/00001-sphericgan-digits")            # or a loaded engine.run.Run; EMA networks
    x, y = s.sample(classes=[3, 7], n=16, truncation=0.7)   # x: [32, C, H, W] in [-1, 1], y: [32]
    x, y = s.sample(classes="all", seeds=range(100, 110))   # image (class c, seed s) is the same every time

Image (c, s) is drawn from the noise of `torch.Generator().manual_seed(s)` alone (one draw per image,
on the CPU), so it does not depend on the batch, the other classes or seeds asked for, or the device's
random stream. Truncation (psi in [0, 1]) pulls the noise towards the mean latent by the model's own
rule (``GANModel.truncate``): psi z for the Gaussian-noise models, whose mean latent is 0 (the BigGAN /
StyleGAN trick on z); models where it does not apply say why.
"""
from __future__ import annotations

import math

import torch

from .run import Run, load_run


def _int_ranges(text: str, bad: str) -> list[int]:
    """'3,7' or '0-4,9' -> the integers; ValueError(bad) for anything else."""
    out = []
    for part in filter(None, text.replace(" ", "").split(",")):
        a, dash, b = part.partition("-")
        try:
            out += list(range(int(a), int(b) + 1)) if dash else [int(a)]
        except ValueError:
            raise ValueError(bad) from None
    return out


def parse_classes(text, num_classes: int) -> list[int]:
    """'all', '3,7', '0-4' or a list of ints -> class indices, checked against the model's classes."""
    if isinstance(text, str):
        out = (list(range(num_classes)) if text.strip() == "all" else
               _int_ranges(text, f"--classes {text!r}: give 'all', or class indices like 3,7 or 0-4"))
    else:
        out = [int(c) for c in text]
    bad = [c for c in out if not 0 <= c < num_classes]
    if bad or not out:
        raise ValueError(f"--classes {bad or '(none)'}: the model has classes 0..{num_classes - 1}")
    return out


def parse_seeds(text) -> list[int]:
    """'0-99', '1,5,9' or an iterable of ints -> seeds (>= 0)."""
    if isinstance(text, str):
        out = _int_ranges(text, f"--seeds {text!r}: give seeds like 0-99 or 1,5,9")
    else:
        out = [int(s) for s in text]
    if not out or min(out) < 0:
        raise ValueError(f"--seeds {text!r}: give one or more seeds >= 0")
    return out


class Sampler:
    """Samples of a run's generator (EMA where the run kept one): see the module docstring."""

    def __init__(self, run, device=None, use_ema: bool = True):
        self.run = run if isinstance(run, Run) else load_run(run, device, use_ema=use_ema)
        self.model, self.modules = self.run.model, self.run.generator(use_ema)
        self.num_classes = self.run.info["num_classes"]

    def noise(self, seeds: list[int], truncation: float | None = None) -> torch.Tensor:
        z = torch.cat([self.model.noise(1, generator=torch.Generator().manual_seed(s), device="cpu") for s in seeds])
        if truncation is not None:
            if not (math.isfinite(truncation) and 0 <= truncation <= 1):
                raise ValueError(f"truncation psi must be in [0, 1], got {truncation}")
            z = self.model.truncate(z, truncation)
        return z

    @torch.no_grad()
    def sample(self, classes="all", n: int | None = None, seeds=None, truncation: float | None = None,
               batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
        """(samples [N, ...] on the run's device, in [-1, 1] for images; labels [N] int64), class-major:
        every seed of the first class, then the next class. seeds: the per-image seeds (default 0..n-1;
        n default 10)."""
        cls = parse_classes(classes, self.num_classes)
        if seeds is None:
            if n is not None and n < 1:
                raise ValueError(f"n must be >= 1, got {n}")
            seeds = list(range(10 if n is None else n))
        else:
            seeds = parse_seeds(seeds)
            if n is not None and n != len(seeds):
                raise ValueError(f"n = {n} but {len(seeds)} seeds given: give one of them")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        z = self.noise(seeds, truncation)
        labels = torch.tensor(cls, dtype=torch.int64).repeat_interleave(len(seeds))
        zs = z.repeat(len(cls), *([1] * (z.dim() - 1)))
        dev = self.run.device
        out = [self.model.sample(labels[i:i + batch].to(dev), zs[i:i + batch].to(dev), self.modules).float()
               for i in range(0, len(labels), batch)]
        return torch.cat(out), labels.to(dev)

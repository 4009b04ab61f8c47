"""Batched augmentation on the device (tensor and torch loaders): no per-image Python loop.

- flip: horizontal flip with probability 1/2 per image.
- crop: random crop of the image padded by `crop_pad` pixels (reflect), i.e. a random translation
  by up to `crop_pad` pixels with reflected borders (the CIFAR recipe).
- translate: DiffAugment-style translation by up to `translate` x size pixels with zero fill.
All randomness comes from the given torch.Generator (reproducible, on the images' device).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment"]


@dataclass
class Augment:
    flip: bool = False
    crop_pad: int = 0
    translate: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip or self.crop_pad > 0 or self.translate > 0

    @staticmethod
    def _shift(x: torch.Tensor, p: int, mode: str, gen: torch.Generator) -> torch.Tensor:
        B, C, H, W = x.shape
        xp = F.pad(x, (p, p, p, p), mode=mode) if mode == "reflect" else F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (B,), generator=gen, device=x.device)
        dx = torch.randint(0, 2 * p + 1, (B,), generator=gen, device=x.device)
        iy = dy[:, None] + torch.arange(H, device=x.device)[None]
        ix = dx[:, None] + torch.arange(W, device=x.device)[None]
        rows = torch.gather(xp, 2, iy[:, None, :, None].expand(B, C, H, xp.shape[3]))
        return torch.gather(rows, 3, ix[:, None, None, :].expand(B, C, H, W))

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if x.shape[0] == 0 or not self.active:
            return x
        if self.flip:
            m = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
            x = torch.where(m[:, None, None, None], x.flip(3), x)
        if self.crop_pad > 0:
            p = min(self.crop_pad, x.shape[2] - 1, x.shape[3] - 1)
            if p > 0:
                x = self._shift(x, p, "reflect", gen)
        if self.translate > 0:
            p = int(round(self.translate * min(x.shape[2], x.shape[3])))
            if p > 0:
                x = self._shift(x, p, "zeros", gen)
        return x

"""Batched augmentation on the device (tensor and torch loaders): no per-image Python loop.

- flip: horizontal flip with probability 1/2 per image.
- crop: random crop of the image padded by `crop_pad` pixels (reflect), i.e. a random translation
  by up to `crop_pad` pixels with reflected borders (the CIFAR recipe).
- translate: DiffAugment-style translation by up to `translate` x size pixels, filled with the mid
  value (0 in [-1, 1]; 128 for uint8 batches).
Flip and crop are one gather (a flat index per image), translation a second one. All randomness
comes from the given torch.Generator (reproducible, on the images' device). ``to_unit`` augments a
uint8 batch and converts it to [-1, 1]; where the ops' backend for the tensors is ``cpp`` it runs
the fused C++ kernel (ssgan_fast_C::augment_shift: index map + conversion in one pass), elsewhere
the torch ops - the same random draws, the same result. The choice is ssgan_fast._backends' (a
missing kernel is logged there; a forced SSGAN_FAST_BACKEND=cpp that cannot run raises).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._backends import c_ops, pick_backend

__all__ = ["Augment", "to_unit"]

_REFLECT, _FILL = 0, 1


# uint8 -> [-1, 1]: float32(v / 127.5 - 1) evaluated in float64, the definition every path follows
UNIT_LUT = (torch.arange(256, dtype=torch.float64) / 127.5 - 1.0).float()
_LUTS: dict = {}


def _cpp_kernel(x: torch.Tensor):
    """The C++ kernel where the ops' backend for x's device is cpp, else None (the torch ops)."""
    if x.device.type != "cpu" or pick_backend(x.device) != "cpp":
        return None
    return c_ops("cpp").augment_shift


def _kernel_to_unit(kern, x, mode, dy, dx, flip, last):
    """One pass of the C++ kernel: shift/mirror, then float [-1, 1] (last) or uint8 (an inner stage)."""
    divisor, shift = (127.5, -1.0) if last else (1.0, 0.0)
    fill = float(UNIT_LUT[128]) if last else 128.0  # the uint8 mid value, in output units
    empty = torch.empty(0, dtype=torch.bool)
    return kern(x, dy.contiguous(), dx.contiguous(), empty if flip is None else flip.contiguous(), mode, fill,
                divisor, shift, last)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]: UNIT_LUT, applied by the C++ kernel on CPU (one pass, no
    int64 index copy) and as a table lookup elsewhere."""
    kern = _cpp_kernel(x) if x.dim() == 4 and x.shape[0] else None
    if kern is not None:
        z = torch.zeros(x.shape[0], dtype=torch.long)
        return _kernel_to_unit(kern, x.contiguous(), _REFLECT, z, z, None, True)
    lut = _LUTS.get(x.device)
    if lut is None:
        lut = _LUTS[x.device] = UNIT_LUT.to(x.device)
    return lut[x.long()]


@dataclass
class Augment:
    flip: bool = False
    crop_pad: int = 0
    translate: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip or self.crop_pad > 0 or self.translate > 0

    def _stages(self, x: torch.Tensor, gen: torch.Generator):
        """The random draws, in a fixed order: [(mode, dy, dx, flip), ...] (at most two stages)."""
        B, _, H, W = x.shape
        dev = x.device
        stages = []
        flip = torch.rand(B, generator=gen, device=dev) < 0.5 if self.flip else None
        p = min(self.crop_pad, H - 1, W - 1) if self.crop_pad > 0 else 0
        if flip is not None or p > 0:
            stages.append((_REFLECT, *self._offsets(B, p, gen, dev), flip))
        q = int(round(self.translate * min(H, W))) if self.translate > 0 else 0
        if q > 0:
            stages.append((_FILL, *self._offsets(B, q, gen, dev), None))
        return stages

    @staticmethod
    def _offsets(B, p, gen, dev):
        if not p:
            z = torch.zeros(B, dtype=torch.long, device=dev)
            return z, z
        return (torch.randint(-p, p + 1, (B,), generator=gen, device=dev),
                torch.randint(-p, p + 1, (B,), generator=gen, device=dev))

    @staticmethod
    def _apply(x: torch.Tensor, mode: int, dy, dx, flip) -> torch.Tensor:
        """Shift each image by (dy, dx) (reflected borders or mid-value fill) and mirror where flip:
        one gather with a flat index computed on the unpadded image."""
        B, C, H, W = x.shape
        dev = x.device
        iy = dy[:, None] + torch.arange(H, device=dev)[None]
        ix = dx[:, None] + torch.arange(W, device=dev)[None]
        if flip is not None:
            ix = torch.where(flip[:, None], W - 1 - ix, ix)
        valid = None
        if mode == _REFLECT:
            iy = torch.where(iy < 0, -iy, torch.where(iy >= H, 2 * (H - 1) - iy, iy))
            ix = torch.where(ix < 0, -ix, torch.where(ix >= W, 2 * (W - 1) - ix, ix))
        else:
            valid = ((iy >= 0) & (iy < H))[:, :, None] & ((ix >= 0) & (ix < W))[:, None, :]
            iy, ix = iy.clamp(0, H - 1), ix.clamp(0, W - 1)
        lin = (iy[:, :, None] * W + ix[:, None, :]).reshape(B, 1, H * W).expand(B, C, H * W)
        out = torch.gather(x.reshape(B, C, H * W), 2, lin).reshape(B, C, H, W)
        if valid is not None:
            fill = torch.tensor(0 if x.is_floating_point() else 128, dtype=x.dtype, device=dev)
            out = torch.where(valid[:, None], out, fill)
        return out

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augment a batch [B, C, H, W] (uint8 or float), torch ops on any device."""
        if x.shape[0] == 0 or not self.active:
            return x
        for mode, dy, dx, flip in self._stages(x, gen):
            x = self._apply(x, mode, dy, dx, flip)
        return x

    def to_unit(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augment a uint8 batch and convert it to float32 in [-1, 1]."""
        if x.device.type != "cpu" or x.dtype != torch.uint8 or x.shape[0] == 0:
            return to_unit(self(x, gen))
        kern = _cpp_kernel(x)
        if kern is None:
            return to_unit(self(x, gen))
        stages = self._stages(x, gen) if self.active else []
        if not stages:
            return to_unit(x)
        x = x.contiguous()
        for i, (mode, dy, dx, flip) in enumerate(stages):
            x = _kernel_to_unit(kern, x, mode, dy, dx, flip, i == len(stages) - 1)
        return x

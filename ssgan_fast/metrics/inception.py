"""The FID Inception-v3 ("pt_inception-2015-12-05"): torchvision's Inception3 with the changes
of the TensorFlow graph FID was defined with (as ported by pytorch-fid): 1008 output classes,
average pools that exclude padding in the A, C and first E blocks, a max pool in the last E block,
and resizing of the input to 299 x 299 in one of clean-fid's modes (``resize``):

- ``legacy_pytorch`` (the default, pytorch-fid's and torchmetrics'): torch bilinear interpolation,
  align_corners=False, without antialiasing;
- ``clean`` (clean-fid's default): each channel of the image in [0, 255] resized by PIL's bicubic
  filter in float mode ('F'), clipped to [0, 255] (clean-fid's ``make_resizer("PIL", False, "bicubic")``),
  on the CPU. Only the resize is clean-fid's: the network and its input scaling stay pytorch-fid's.

The mode is part of the extractor identity (``ident``), hence of cached statistics and files, and
so is an ``input_size`` other than FID's 299 (>= 75, Inception-v3's smallest input; the tests use 75 on
the random-weight network to keep the CPU time down: the same code path, a sixteenth of the work).

Input: images in [-1, 1], [N, 3 or 1, H, W] (grayscale is repeated to 3 channels). Output of
``forward``: {"pool": [N, 2048] pool3 features (FID), "logits": [N, 1008] (Inception Score)}.
Weights come from the registry (``pretrained=True``) or stay random (tests).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv

from ..weights import load_or_random

__all__ = ["FIDInceptionV3", "RESIZE_MODES", "clean_resize"]

RESIZE_MODES = ("legacy_pytorch", "clean")


def clean_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """clean-fid's ``clean`` resize of images in [-1, 1] [N, C, H, W]: per channel, PIL bicubic on float
    [0, 255] values, clipped; returns [N, C, size, size] in [-1, 1] on x's device."""
    from PIL import Image
    v = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).cpu().numpy()
    out = np.empty(v.shape[:2] + (size, size), dtype=np.float32)
    for i in range(v.shape[0]):
        for c in range(v.shape[1]):
            im = Image.fromarray(np.ascontiguousarray(v[i, c]), mode="F").resize((size, size), Image.BICUBIC)
            out[i, c] = np.asarray(im).clip(0, 255)
    return torch.from_numpy(out).to(x.device) / 127.5 - 1


class _A(tv.InceptionA):
    def _forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return [b1, b5, b3, bp]


class _C(tv.InceptionC):
    def _forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
            bd = m(bd)
        bp = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return [b1, b7, bd, bp]


class _E(tv.InceptionE):
    def __init__(self, in_channels, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return [b1, b3, bd, self.branch_pool(pooled)]


class FIDInceptionV3(nn.Module):
    dim = 2048
    num_logits = 1008
    kind, suffix = "inception", ""
    space = "the FID Inception's pool3 features (pytorch-fid's port)"

    def __init__(self, pretrained: bool = True, resize: str = "legacy_pytorch", input_size: int = 299):
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.resize, self.input_size = resize, int(input_size)
        if self.input_size < 75:
            raise ValueError(f"input_size must be >= 75 (Inception-v3's smallest input), got {input_size}")
        net = tv.Inception3(num_classes=1008, aux_logits=False, init_weights=not pretrained)
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = _A(192, 32), _A(256, 64), _A(288, 64)
        net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e = _C(768, 128), _C(768, 160), _C(768, 160), _C(768, 192)
        net.Mixed_7b, net.Mixed_7c = _E(1280, max_pool=False), _E(2048, max_pool=True)
        self.net = net
        self.ident = load_or_random(net, "inception-fid", pretrained)
        if self.input_size != 299:
            self.ident += f"+input-{self.input_size}"
        if resize != "legacy_pytorch":
            self.ident += f"+resize-{resize}"
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N, 1 or 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize == "clean":
            x = clean_resize(x, self.input_size)
        else:
            x = F.interpolate(x.float(), size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
        n = self.net
        for m in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3,
                  n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
                  n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = m(x)
        pool = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return {"pool": pool, "logits": n.fc(pool)}

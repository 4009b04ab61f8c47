"""Mask embedding A_mask of the MED-GAN discriminator (Eq. 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import mask_embed


class MaskEmbedding(nn.Module):
    """D_f(x, m) = D_f(x) + A_mask(m) * D_f(x)  (MED-GAN Eq. 2).

    A_mask is a small conv net on the CutMix mask: the mask [B, 1, H0, W0] is area-downsampled
    to ``emb_size`` (default: the feature resolution), then conv3x3 -> ReLU -> conv3x3 gives one
    weight map per feature channel (``per_channel=True``) or one shared map. The fused
    ``mask_embed`` op applies it, resizing to the feature resolution inside the kernel. The last
    conv starts at zero, so a freshly inserted MaskEmbedding is the identity::

        # before:  h = self.block3(h)
        h = self.mask_embed(self.block3(h), mask)      # mask from ssgan_fast.ops.cutmix
    """

    def __init__(self, channels: int, hidden: int = 32, per_channel: bool = True, emb_size: int | None = None):
        super().__init__()
        if channels < 1 or hidden < 1:
            raise ValueError("channels and hidden must be >= 1")
        self.emb_size = emb_size
        self.net = nn.Sequential(nn.Conv2d(1, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels if per_channel else 1, 3, padding=1))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def embed(self, mask: torch.Tensor, size) -> torch.Tensor:
        """A_mask(m) at resolution `size` (h, w)."""
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must be [B, 1, H, W], got shape {tuple(mask.shape)}")
        m = mask if tuple(mask.shape[2:]) == tuple(size) else F.adaptive_avg_pool2d(mask, size)
        return self.net(m)

    def forward(self, feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        size = (self.emb_size, self.emb_size) if self.emb_size else feat.shape[2:]
        emb = self.embed(mask.to(self.net[0].weight.dtype), size)
        return mask_embed(feat, emb)

"""A small CNN classifier for RA, GAN-test / GAN-train and digits-space FID, and its training loop.

The papers' RA uses "an independent classifier pre-trained with full supervision on each test
data set". ``SmallClassifier`` is that classifier for small images (8-64 px): 3 conv stages with
BN, global average pooling to a ``dim``-d feature (used as the FID feature space when Inception
does not fit the data, e.g. 8x8 digits) and a linear head. Inputs in [-1, 1].
"""
from __future__ import annotations

import hashlib
import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import Augment

log = logging.getLogger("ssgan_fast")

__all__ = ["SmallClassifier", "train_classifier", "evaluate_accuracy"]


def _stage(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallClassifier(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {num_classes}")
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        self.features = nn.Sequential(_stage(in_channels, width, 1), _stage(width, 2 * width, 2),
                                      _stage(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 4 * width
        self.fc = nn.Linear(self.dim, num_classes)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "width": self.width}

    @property
    def ident(self) -> str:
        h = hashlib.sha256()
        for t in self.state_dict().values():
            h.update(t.detach().cpu().numpy().tobytes())
        return "small-classifier:" + h.hexdigest()[:16]

    def forward(self, x: torch.Tensor) -> dict:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"images must be [N, {self.in_channels}, H, W] in [-1, 1], got shape {tuple(x.shape)}")
        pool = self.features(x.float())
        return {"pool": pool, "logits": self.fc(pool)}


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 30,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device="cpu",
                     width: int = 32, progress: bool = False) -> SmallClassifier:
    """Train a SmallClassifier on images [N, C, H, W] in [-1, 1] with integer labels (Adam, cosine
    schedule, random translations). Deterministic for a seed on CPU."""
    if images.shape[0] != labels.shape[0] or images.shape[0] < 2:
        raise ValueError(f"need >= 2 images with one label each, got {images.shape[0]} images, {labels.shape[0]} labels")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # random translations by up to 1/8 of the size with reflected borders: the loaders' Augment
    shift = Augment(crop_pad=max(1, images.shape[2] // 8))
    aug_gen = torch.Generator(device).manual_seed(seed)
    model = SmallClassifier(num_classes, images.shape[1], width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    N = images.shape[0]
    steps = epochs * max(1, N // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    images, labels = images.to(device), labels.to(device).long()
    it = range(epochs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="classifier", unit="epoch")
    model.train()
    for _ in it:
        perm = torch.randperm(N, generator=gen).to(device)
        for i in range(0, N - batch_size + 1 if N >= batch_size else 1, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(shift(images[idx], aug_gen))["logits"], labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, images.shape[0], batch_size):
        logits = model(images[i:i + batch_size].to(dev))["logits"]
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size].cpu().long()).sum())
    return correct / max(1, images.shape[0])

"""A small CNN classifier for RA, GAN-test / GAN-train and digits-space FID, and its training loop.

The papers' RA uses "an independent classifier pre-trained with full supervision on each test
data set". ``SmallClassifier`` is that classifier for small images (8-64 px): 3 conv stages with
BN, global average pooling to a ``dim``-d feature (used as the FID feature space when Inception
does not fit the data, e.g. 8x8 digits) and a linear head. Inputs in [-1, 1].
"""
from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import state_hash

log = logging.getLogger("ssgan_fast")

__all__ = ["SmallClassifier", "ResNet18Classifier", "make_classifier", "CLASSIFIER_ARCHS", "train_classifier",
           "train_classifier_batches", "evaluate_accuracy", "random_shift"]


def _stage(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Classifier(nn.Module):
    """What the classifiers share: [-1, 1] inputs checked, {"pool": features, "logits"} out, an ident
    from the weights. Subclasses set ``kind``, ``body`` (images -> pooled features) and ``fc``."""
    kind = ""

    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs >= 2 classes, got {num_classes}")
        self.num_classes, self.in_channels = num_classes, in_channels

    @property
    def ident(self) -> str:
        return f"{self.kind}-classifier:" + state_hash(self)

    def forward(self, x: torch.Tensor) -> dict:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"images must be [N, {self.in_channels}, H, W] in [-1, 1], got shape {tuple(x.shape)}")
        pool = self.body(x.float())
        return {"pool": pool, "logits": self.fc(pool)}


class SmallClassifier(_Classifier):
    kind = "small"

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32):
        super().__init__(num_classes, in_channels)
        self.width = width
        self.features = nn.Sequential(_stage(in_channels, width, 1), _stage(width, 2 * width, 2),
                                      _stage(2 * width, 4 * width, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 4 * width
        self.fc = nn.Linear(self.dim, num_classes)

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "width": self.width}

    def body(self, x):
        return self.features(x)


class ResNet18Classifier(_Classifier):
    """torchvision's ResNet-18 (random init), [-1, 1] inputs of any channel count; below 64 px the
    CIFAR variant of the stem (conv 3x3 stride 1, no max-pool), as ResNet-18s trained on CIFAR-100 use.
    Returns {"pool": the 512-d pooled features, "logits"}."""

    kind = "resnet18"

    def __init__(self, num_classes: int, in_channels: int = 3, size: int = 32):
        super().__init__(num_classes, in_channels)
        from torchvision.models import resnet18
        self.size = size
        net = resnet18(weights=None, num_classes=num_classes)
        if size < 64:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.fc = net.fc
        net.fc = nn.Identity()
        self.net = net
        self.dim = 512

    def config(self) -> dict:
        return {"arch": "resnet18", "num_classes": self.num_classes, "in_channels": self.in_channels,
                "size": self.size}

    def body(self, x):
        return self.net(x)


CLASSIFIER_ARCHS = ("small", "resnet18")


def check_classifier_arch(arch: str) -> str:
    if arch not in CLASSIFIER_ARCHS:
        raise ValueError(f"unknown classifier architecture {arch!r}; choose from {', '.join(CLASSIFIER_ARCHS)}")
    return arch


def make_classifier(arch: str = "small", num_classes: int = 10, in_channels: int = 3, size: int = 32,
                    width: int = 32) -> nn.Module:
    """The RA / GAN-train / GAN-test classifier: ``small`` (SmallClassifier, `width`) or ``resnet18``."""
    if check_classifier_arch(arch) == "small":
        return SmallClassifier(num_classes, in_channels, width)
    return ResNet18Classifier(num_classes, in_channels, size)


def classifier_from_config(config: dict) -> nn.Module:
    """The classifier a saved ``config()`` describes (files saved before ``arch`` existed are small)."""
    c = dict(config)
    return make_classifier(c.pop("arch", "small"), **c)


def random_shift(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translations by up to `pad` pixels with reflected borders (one offset per image)."""
    B, C, H, W = x.shape
    pad = min(pad, H - 1, W - 1)
    if pad <= 0:
        return x
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device) for _ in range(2))
    iy = torch.arange(H, device=x.device)[None] + dy[:, None]
    ix = torch.arange(W, device=x.device)[None] + dx[:, None]
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return xp[b, c, iy[:, None, :, None], ix[:, None, None, :]]


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int = 30,
                     batch_size: int = 128, lr: float = 2e-3, seed: int = 0, device="cpu",
                     width: int = 32, progress: bool = False, arch: str = "small") -> nn.Module:
    """Train a classifier (make_classifier `arch`) on images [N, C, H, W] in [-1, 1] with integer labels (Adam, cosine
    schedule, random translations). Deterministic for a seed on CPU."""
    if images.shape[0] != labels.shape[0] or images.shape[0] < 2:
        raise ValueError(f"need >= 2 images with one label each, got {images.shape[0]} images, "
                         f"{labels.shape[0]} labels")
    gen = torch.Generator().manual_seed(seed)
    N = images.shape[0]
    images, labels = images.to(device), labels.to(device).long()

    def epoch(_):
        perm = torch.randperm(N, generator=gen).to(device)
        for i in range(0, N - batch_size + 1 if N >= batch_size else 1, batch_size):
            idx = perm[i:i + batch_size]
            yield images[idx], labels[idx]
    return train_classifier_batches(epoch, num_classes, images.shape[1], images.shape[2], max(1, N // batch_size),
                                    epochs, lr, seed, device, width, progress, arch)


def train_classifier_batches(batches, num_classes: int, in_channels: int, size: int, steps_per_epoch: int,
                             epochs: int = 30, lr: float = 2e-3, seed: int = 0, device="cpu", width: int = 32,
                             progress: bool = False, arch: str = "small", on_epoch=None) -> nn.Module:
    """train_classifier on streamed data: ``batches(epoch)`` yields (images, labels) batches (for
    data sets read from files, one decode pass per epoch; nothing else is kept). ``on_epoch(epoch,
    seconds)`` is called after each epoch (progress reports)."""
    torch.manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    model = make_classifier(arch, num_classes, in_channels, size, width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * steps_per_epoch))
    it = range(epochs)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="classifier", unit="epoch")
    model.train()
    for e in it:
        t0 = time.perf_counter()
        for x, y in batches(e):
            x, y = x.to(device), y.to(device).long()
            # random translations by up to 1/8 of the size with reflected borders
            loss = F.cross_entropy(model(random_shift(x, max(1, size // 8), aug_gen))["logits"], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if on_epoch is not None:
            on_epoch(e, time.perf_counter() - t0)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, images.shape[0], batch_size):
        logits = model(images[i:i + batch_size].to(dev))["logits"]
        correct += int((logits.argmax(1).cpu() == labels[i:i + batch_size].cpu().long()).sum())
    return correct / max(1, images.shape[0])

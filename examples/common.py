"""What the examples share and do not change: the built-in digits, a small conditional generator,
the command line and the report. Stands for "your existing GAN code"."""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

NUM_CLASSES, Z_DIM = 10, 32


def parse_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    return ap.parse_args()


def digits(device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits as [N, 1, 8, 8] in [-1, 1] and int64 labels."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0
    return x.to(device), torch.tensor(d.target, dtype=torch.int64, device=device)


class Generator(nn.Module):
    """(z, y) -> 8x8 image: the class embedding is concatenated to z (as in ACGAN)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(NUM_CLASSES, Z_DIM)
        self.fc = nn.Linear(2 * Z_DIM, 128 * 2 * 2)
        self.net = nn.Sequential(nn.BatchNorm2d(128), nn.ReLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv2d(128, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(),
                                 nn.Upsample(scale_factor=2),
                                 nn.Conv2d(64, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.Conv2d(32, 1, 3, 1, 1), nn.Tanh())

    def forward(self, z, y):
        return self.net(self.fc(torch.cat([z, self.emb(y)], 1)).view(-1, 128, 2, 2))


def d_trunk() -> tuple[nn.Module, nn.Module]:
    """The discriminator's convolutional trunk, split after its first stage: (block1, rest) -> 128 features."""
    block1 = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.LeakyReLU(0.2))
    rest = nn.Sequential(nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Flatten(), nn.Linear(512, 128), nn.LeakyReLU(0.2))
    return block1, rest


def gan_losses(out_real, out_fake):
    """Non-saturating GAN: (D loss on real + fake, G loss) from logits."""
    return F.softplus(-out_real).mean() + F.softplus(out_fake).mean(), F.softplus(-out_fake).mean()


@torch.no_grad()
def report(G, D, x, y, steps: int) -> dict:
    """D's classifier accuracy on real digits and on G's samples (w.r.t. the class asked for)."""
    G.eval(), D.eval()
    acc_real = (D.predict(D(x)[1]) == y).float().mean().item()
    y_z = torch.arange(len(x), device=x.device) % NUM_CLASSES
    x_z = G(torch.randn(len(x), Z_DIM, device=x.device), y_z)
    acc_fake = (D.predict(D(x_z)[1]) == y_z).float().mean().item()
    print(f"after {steps} steps: D's classifier accuracy on real digits {acc_real:.3f}, on G's samples {acc_fake:.3f}")
    return {"acc_real": acc_real, "acc_fake": acc_fake}


def fid_setup(doc: str):
    """(feature net, real images, fake images, batch) for the FID examples. The feature net is a fixed
    random conv net standing in for Inception's pool3 (ssgan_fast.metrics.inception loads the real one);
    the "fake" set is the other half of the digits with Gaussian noise of std --noise."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--noise", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten()).to(args.device).eval()
    x, _ = digits(args.device)
    half = len(x) // 2
    fake = x[half:] + args.noise * torch.randn_like(x[half:])
    return net, x[:half], fake, args.batch

"""VGG-16 features for precision / recall, as Kynkäänniemi et al. (2019) and stylegan2-ada-pytorch's
``pr50k3`` compute them: the 4096-d activations of the second fully connected layer (fc2, after its
ReLU) of an ImageNet VGG-16, on the image resized to 224 x 224.

The weights are torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``, registry name
``vgg16-imagenet``), never downloaded. stylegan2-ada-pytorch ships its own TorchScript conversion
(``vgg16.pt``, from the Keras weights the paper's TensorFlow code used, with an area resize); its
hash cannot be checked offline, so it is not in the registry: the architecture, the layer, k and the
algorithm are the paper's, the weights and the input normalisation are torchvision's, so the values
are close to ``pr50k3``'s but not bit-equal. Input: images in [-1, 1], [N, 1 or 3, H, W]; output of
``forward``: {"pool": [N, 4096]} (the key every extractor of ssgan_fast.metrics.collect gives).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import vgg16

from ..weights import load_or_random

__all__ = ["VGG16Features", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet input normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    dim = 4096

    def __init__(self, pretrained: bool = True, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # a random-weight network (tests) is the same one on every build
            net = vgg16(weights=None)
        self.ident = load_or_random(net, "vgg16-imagenet", pretrained, "vgg16-random") + "+fc2-relu"
        self.features, self.avgpool = net.features, net.avgpool
        # fc1, ReLU, Dropout (identity in eval), fc2, ReLU: the fc2 activations
        self.head = nn.Sequential(*list(net.classifier.children())[:5])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.resize = "legacy_pytorch"
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be [N, 1 or 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x.float(), size=(224, 224), mode="bilinear", align_corners=False)
        x = ((x + 1) / 2 - self.mean) / self.std
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return {"pool": self.head(x)}

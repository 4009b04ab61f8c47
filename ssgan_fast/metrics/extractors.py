"""Feature spaces other than pytorch-fid's Inception port, for FD, KID, precision / recall and density /
coverage (and, for the Inception, IS): the spaces in which published numbers are computed.

- ``InceptionTF`` (``--extractor inception-tf``): stylegan2-ada-pytorch's TorchScript translation of the
  TensorFlow Inception graph (``inception-2015-12-05.pt``), the network behind the FIDs of stylegan2-ada /
  stylegan3 and clean-fid's default mode. It takes uint8 images [N, 3, H, W] and resizes them itself
  inside the graph, as the TensorFlow code did; images in [-1, 1] are brought to uint8 as stylegan2-ada
  brings its generator's output (x * 127.5 + 128, clamped, truncated). ``pool``: the 2048-d pool3
  features (``return_features=True``); ``logits``: the log of its softmax over 1008 classes without the
  output bias (``no_output_bias=True``, stylegan2-ada's Inception Score), computed only when asked for.
- ``DINOv2Features`` (``--extractor dinov2``): the CLS token of DINOv2 ViT-L/14 after its last norm, as
  in "Exposing flaws of generative model evaluation metrics and their unfair treatment of diffusion
  models" (Stein et al., 2023, FD_DINOv2): images resized to 224 x 224 (bicubic, antialiased), ImageNet
  mean / std. The architecture is timm's ViT (``vit_large_patch14_dinov2``); the weights are the torch-hub
  file ``dinov2_vitl14_pretrain.pth`` (its 37 x 37 position embedding brought to 16 x 16 by DINOv2's own
  ``interpolate_pos_encoding`` rule: bicubic, scale factor (16 + 0.1) / 37, no antialiasing).
- ``CLIPFeatures`` (``--extractor clip`` / ``clip-l14``): the image embedding (``encode_image``) of
  OpenAI's CLIP ViT-B/32 (clean-fid's ``clip_vit_b_32`` space) or ViT-L/14, through open_clip; images
  resized to the model's input (bicubic, antialiased) and normalised by CLIP's mean / std.

Weights come from the registry (``ssgan_fast.weights``: a local file, its sha256 checked where one is
published), never from the network. Every extractor has ``dim``, ``ident`` (its weights' identity, part
of every result and cache key), ``resize`` (how images reach its input size), ``kind``, ``suffix`` (the
result keys' suffix: fid_dinov2, kid_clip, ...), ``space`` (a line for the result) and
``num_logits`` (None where there are no class logits: no Inception Score). Input of ``forward``: images in
[-1, 1], [N, 1 or 3, H, W]; output: {"pool": [N, dim]} (+ "logits" for the Inception).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..weights import WeightsError, sha256_file, state_hash, weights_path

__all__ = ["InceptionTF", "DINOv2Features", "CLIPFeatures", "DINOV2_ARCHS", "CLIP_ARCHS", "dinov2_pos_embed"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# name -> (timm architecture, registry weights)
DINOV2_ARCHS = {"vitl14": ("vit_large_patch14_dinov2", "dinov2-vitl14"),
                "vits14": ("vit_small_patch14_dinov2", "dinov2-vits14")}
# name -> (open_clip architecture, registry weights)
CLIP_ARCHS = {"vit-b32": ("ViT-B-32", "clip-vit-b32-openai"), "vit-l14": ("ViT-L-14", "clip-vit-l14-openai")}


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _normalized(x: torch.Tensor, size: int, mean, std) -> torch.Tensor:
    """[-1, 1] images -> RGB [0, 1] resized to size x size (bicubic, antialiased), then (x - mean) / std."""
    x = (_rgb(x).float() + 1) / 2
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


class _Outputs(dict):
    """The extractor's outputs; ``logits`` computed on first access (the Inception-TF needs a second pass)."""

    def __init__(self, pool, logits_fn):
        super().__init__(pool=pool)
        self._logits_fn = logits_fn

    def __missing__(self, key):
        if key != "logits":
            raise KeyError(key)
        self["logits"] = value = self._logits_fn()
        return value


class InceptionTF(nn.Module):
    """stylegan2-ada-pytorch's TorchScript Inception (``inception-2015-12-05.pt``)."""
    dim = 2048
    num_logits = 1008
    kind, suffix = "inception-tf", ""
    space = "the TensorFlow FID Inception's pool3 features (stylegan2-ada / clean-fid's network)"
    resize = "inside the TorchScript graph (TensorFlow's bilinear resize to 299), from uint8 images"

    def __init__(self, weights: str = "inception-tf"):
        super().__init__()
        path = weights_path(weights)  # the verified local file, or a WeightsError saying where to put it
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as e:
            raise WeightsError(f"{path} is not a TorchScript archive ({str(e).splitlines()[0]})") from None
        self.ident = f"{weights}:" + sha256_file(path)[:16]
        self.requires_grad_(False)

    @staticmethod
    def to_uint8(x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> uint8 as stylegan2-ada converts its generator's images (x * 127.5 + 128, clamped)."""
        return (_rgb(x).float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)

    def forward(self, x: torch.Tensor) -> dict:
        u8 = self.to_uint8(x)
        pool = self.net(u8, return_features=True)

        def logits():
            return torch.log(self.net(u8, no_output_bias=True).clamp_min(1e-30))
        return _Outputs(pool, logits)


def dinov2_pos_embed(pos_embed: torch.Tensor, grid: int, offset: float = 0.1) -> torch.Tensor:
    """DINOv2's ``interpolate_pos_encoding``: a [1, 1 + M * M, D] position embedding brought to a grid x grid
    patch grid (bicubic, scale factor (grid + offset) / M, no antialiasing); the class token's row is kept."""
    n = pos_embed.shape[1] - 1
    m = int(math.isqrt(n))
    if m * m != n:
        raise ValueError(f"the position embedding has {n} patch rows, not a square grid")
    if m == grid:
        return pos_embed
    cls_row, patch = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    dim = pos_embed.shape[-1]
    scale = (grid + offset) / m
    patch = F.interpolate(patch.reshape(1, m, m, dim).permute(0, 3, 1, 2), scale_factor=(scale, scale),
                          mode="bicubic", antialias=False)
    if patch.shape[-2:] != (grid, grid):
        raise ValueError(f"interpolated grid {tuple(patch.shape[-2:])}, expected {grid} x {grid}")
    return torch.cat([cls_row, patch.permute(0, 2, 3, 1).reshape(1, grid * grid, dim)], 1).to(pos_embed.dtype)


class DINOv2Features(nn.Module):
    """DINOv2's CLS features (FD_DINOv2). ``pretrained=False``: random weights of the same architecture,
    seeded (tests; ``arch="vits14"`` keeps them cheap)."""
    kind, suffix = "dinov2", "_dinov2"
    num_logits = None
    input_size = 224
    resize = "torch bicubic (antialiased) to 224, ImageNet mean / std"

    def __init__(self, pretrained: bool = True, arch: str = "vitl14", seed: int = 0):
        super().__init__()
        if arch not in DINOV2_ARCHS:
            raise ValueError(f"unknown DINOv2 architecture {arch!r}; choose from {', '.join(DINOV2_ARCHS)}")
        import timm
        timm_name, weights = DINOV2_ARCHS[arch]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = timm.create_model(timm_name, pretrained=False, img_size=self.input_size, num_classes=0)
        if pretrained:
            path = weights_path(weights)
            sd = torch.load(path, map_location="cpu", weights_only=True)
            sd = dict(sd.get("model", sd))
            sd.pop("mask_token", None)
            if "pos_embed" in sd:
                sd["pos_embed"] = dinov2_pos_embed(sd["pos_embed"], self.input_size // 14)
            missing, unexpected = net.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise WeightsError(f"{path} is not a DINOv2 {arch} torch-hub checkpoint: missing "
                                   f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
            self.ident = f"{weights}:" + sha256_file(path)[:16]
        else:
            self.ident = f"{weights}-random:" + state_hash(net)
        self.net, self.arch = net, arch
        self.dim = net.num_features
        self.space = f"DINOv2 {arch.upper()} CLS features (FD_DINOv2, Stein et al. 2023)"
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict:
        return {"pool": self.net(_normalized(x, self.input_size, IMAGENET_MEAN, IMAGENET_STD))}


class CLIPFeatures(nn.Module):
    """OpenAI CLIP's image embedding (open_clip). ``pretrained=False``: random weights (tests)."""
    kind, suffix = "clip", "_clip"
    num_logits = None

    def __init__(self, pretrained: bool = True, arch: str = "vit-b32", seed: int = 0):
        super().__init__()
        if arch not in CLIP_ARCHS:
            raise ValueError(f"unknown CLIP architecture {arch!r}; choose from {', '.join(CLIP_ARCHS)}")
        import open_clip
        oc_name, weights = CLIP_ARCHS[arch]
        if pretrained:
            path = weights_path(weights)
            model = open_clip.load_openai_model(str(path), device="cpu", jit=False)
            self.ident = f"{weights}:" + sha256_file(path)[:16]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = open_clip.create_model(oc_name, pretrained=None)
            self.ident = f"{weights}-random:" + state_hash(model.visual)
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.visual = model.visual.float()
        self.dim = int(model.visual.output_dim)
        self.arch = arch
        self.resize = f"torch bicubic (antialiased) to {self.input_size}, CLIP mean / std"
        self.space = f"OpenAI CLIP {oc_name} image embeddings"
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict:
        return {"pool": self.visual(_normalized(x, self.input_size, CLIP_MEAN, CLIP_STD))}


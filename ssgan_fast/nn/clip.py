"""Frozen CLIP encoders for LCP-GAN: open_clip's architectures, weights from the local registry,
open_clip's byte-pair tokenizer (its vocabulary ships inside the wheel, so it works offline), and a
CoOp-style text path that takes learnable context vectors in place of word embeddings.

    clip = FrozenCLIP("ViT-B-32", weights="clip-vit-b32-openai")   # needs ViT-B-32.pt locally
    clip = FrozenCLIP("tiny")                                       # small random model (tests, CPU)
    ids = clip.prompt_ids(["sparrow", "gull"], n_ctx=4)             # "X X X X sparrow." -> [2, L]
    t = clip.encode_prompts(ctx, ids)                               # ctx [P, 4, width] learnable
    v = clip.encode_image(x)                                        # x in [-1, 1], any size / 1 or 3 ch

The CLIP weights never change (requires_grad False, eval mode); gradients flow through them to the
inputs (images from G, context vectors). Sequences are cut after the longest prompt's end token:
the text transformer is causal, so the end token's output does not depend on later positions and
the result equals the full 77-token computation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _NormalizedRGB(nn.Module):
    """Base for the pretrained image networks here: [-1, 1] images (1 or 3 channels) -> RGB in
    [0, 1], resized to `size` (None: kept), normalised by the network's mean / std."""

    def __init__(self, mean, std, size: int | None = None, mode: str = "bilinear", antialias: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.size, self.mode, self.antialias = size, mode, antialias

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be [B, 1 or 3, H, W], got {tuple(x.shape)}")
        x = (x + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and (x.shape[-1] != self.size or x.shape[-2] != self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode=self.mode, align_corners=False,
                              antialias=self.antialias)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def _resnet50(weights: str):
    """torchvision's ResNet-50, with the registry's state dict `weights` (verified local file) or random."""
    from torchvision.models import resnet50
    net = resnet50(weights=None)
    if weights:
        from ..weights import load_state_dict
        net.load_state_dict(load_state_dict(weights))
    return net


def _open_clip():
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("LCP-GAN's CLIP needs open_clip_torch (pip install open_clip_torch)") from e
    return open_clip


def _tiny_clip():
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    return CLIP(embed_dim=64, vision_cfg=CLIPVisionCfg(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
                text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=2, layers=2))


class FrozenCLIP(_NormalizedRGB):
    """A frozen CLIP (image and text towers) with prompt-learning entry points."""

    def __init__(self, arch: str = "ViT-B-32", weights: str = ""):
        open_clip = _open_clip()
        if weights:
            from ..weights import weights_path
            path = weights_path(weights)  # verified local file or a WeightsError naming it
            model = open_clip.load_openai_model(str(path), device="cpu", jit=False)
        elif arch == "tiny":
            model = _tiny_clip()
        else:
            if arch not in open_clip.list_models():
                raise ValueError(f"unknown CLIP architecture {arch!r}; e.g. ViT-B-32, ViT-B-16, tiny")
            model = open_clip.create_model(arch, pretrained=None)  # random weights, the real architecture
        size = model.visual.image_size
        super().__init__(OPENAI_MEAN, OPENAI_STD, size[0] if isinstance(size, (tuple, list)) else int(size), "bicubic")
        model.float().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.arch = arch
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()  # always frozen
        return self

    @property
    def width(self) -> int:
        """Word-embedding width (the size of one context vector)."""
        return self.model.token_embedding.weight.shape[1]

    @property
    def embed_dim(self) -> int:
        proj = self.model.text_projection
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    # ------------------------------------------------------------------ text
    def _ids(self, texts: list[str]) -> torch.Tensor:
        sot, eot = self.tokenizer.encoder["<start_of_text>"], self.tokenizer.encoder["<end_of_text>"]
        ctx_len = self.model.positional_embedding.shape[0]
        rows = [[sot] + self.tokenizer.encode(t) + [eot] for t in texts]
        too_long = [t for t, r in zip(texts, rows, strict=False) if len(r) > ctx_len]
        if too_long:
            raise ValueError(f"prompt longer than CLIP's {ctx_len} tokens: {too_long[0]!r}")
        L = max(len(r) for r in rows)
        out = torch.zeros(len(rows), L, dtype=torch.int64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out

    def text_ids(self, texts: list[str]) -> torch.Tensor:
        """Token ids [N, L] (L = the longest text incl. start / end tokens)."""
        if not texts:
            raise ValueError("no texts to tokenize")
        return self._ids(list(texts))

    def prompt_ids(self, class_names: list[str], n_ctx: int) -> torch.Tensor:
        """Ids of "X ... X <class name>." with n_ctx placeholder words at positions 1 .. n_ctx (LCP-GAN
        Eq. 5: the placeholders are replaced by learnable context vectors in encode_prompts)."""
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        ids = self._ids([" ".join(["X"] * n_ctx) + f" {name}." for name in class_names])
        x_id = self.tokenizer.encode("X")
        if len(x_id) != 1 or not bool((ids[:, 1:1 + n_ctx] == x_id[0]).all()):
            raise RuntimeError("the tokenizer did not map each placeholder to one token")
        return ids

    def _encode_tokens(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        m = self.model
        L = ids.shape[1]
        x = x + m.positional_embedding[:L].to(x.dtype)
        x = m.transformer(x, attn_mask=m.attn_mask[:L, :L].to(x.device))
        x = m.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), ids.argmax(-1)]  # the end token (largest id)
        proj = m.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self._encode_tokens(self.model.token_embedding(ids), ids)

    def encode_prompts(self, ctx: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """CoOp: token embeddings of `ids` [P, L] with positions 1 .. n_ctx replaced by ctx [P, n_ctx, width]."""
        if ctx.dim() != 3 or ctx.shape[0] != ids.shape[0] or ctx.shape[2] != self.width:
            raise ValueError(f"ctx must be [P, n_ctx, {self.width}] with P = {ids.shape[0]}, got {tuple(ctx.shape)}")
        emb = self.model.token_embedding(ids)
        n = ctx.shape[1]
        x = torch.cat([emb[:, :1], ctx.to(emb.dtype), emb[:, 1 + n:]], 1)
        return self._encode_tokens(x, ids)

    # ------------------------------------------------------------------ images
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (1 or 3 channels, any size) -> image embeddings (input resized to CLIP's resolution)."""
        return self.model.encode_image(self.preprocess(x.float()))


class ResNet50Classifier(_NormalizedRGB):
    """A trainable torchvision ResNet-50 classifier on [-1, 1] images (LCP-GAN's C and the Semi-BigGAN
    baseline's, Sec. 4.1), optionally initialised from the registry's ImageNet weights (its fc is
    replaced by a fresh num_classes layer). Returns logits."""

    def __init__(self, num_classes: int, weights: str = ""):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        net = _resnet50(weights)
        net.fc = nn.Linear(net.fc.in_features, num_classes)
        self.net = net

    def forward(self, x):
        return self.net(self.preprocess(x))


class ResNet50Features(_NormalizedRGB):
    """ImageNet ResNet-50 (torchvision's architecture) pooled 2048-d features, frozen; weights from the
    registry (``resnet50-imagenet``) or random (tests). Input: [-1, 1] images, resized to `size`."""

    def __init__(self, weights: str = "", size: int = 224):
        super().__init__(IMAGENET_MEAN, IMAGENET_STD, int(size), "bilinear", antialias=True)
        net = _resnet50(weights)
        net.fc = nn.Identity()
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    dim = 2048

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x.float()))

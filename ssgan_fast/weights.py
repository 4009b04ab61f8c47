"""Pretrained weights: a registry name -> file name -> sha256, looked up locally, never downloaded.

Files live in ``$SSGAN_FAST_WEIGHTS`` (default ``~/.cache/ssgan_fast``). A missing file, or one
whose hash does not match, raises ``WeightsError`` naming the file, the expected hash, the folder
and where the file can be obtained. Hashes: a full 64-hex-digit sha256, or - where only that is
published, as in torch-hub file names such as ``...-6726825d.pth`` - its leading hex digits
(the torch-hub convention), checked as a prefix of the file's sha256.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["WeightSpec", "WeightsError", "REGISTRY", "register_weights", "weights_dir", "weights_path",
           "load_state_dict", "sha256_file", "state_hash", "load_or_random"]


class WeightsError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class WeightSpec:
    file: str
    sha256: str
    source: str
    note: str = ""


REGISTRY: dict[str, WeightSpec] = {
    # pytorch-fid's port of the TensorFlow FID Inception graph (inception-2015-12-05); the hash
    # published with the file is the sha256 prefix in its name.
    "inception-fid": WeightSpec(
        "pt_inception-2015-12-05-6726825d.pth", "6726825d",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "FID Inception-v3 (2048-d pool3 features, 1008 logits for IS)"),
    # torchvision ImageNet ResNet-50 (V1 weights), the LCP-GAN clustering feature network
    "resnet50-imagenet": WeightSpec(
        "resnet50-0676ba61.pth", "0676ba61", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "torchvision ResNet-50 IMAGENET1K_V1"),
    # torchvision VGG-16 (V1 weights): the precision / recall features of Kynkaenniemi et al. (fc2, 4096-d)
    "vgg16-imagenet": WeightSpec(
        "vgg16-397923af.pth", "397923af", "https://download.pytorch.org/models/vgg16-397923af.pth",
        "torchvision VGG-16 IMAGENET1K_V1 (precision / recall on fc2 features, as pr50k3)"),
    # OpenAI CLIP ViT-B/32 (the TorchScript archive; its URL path is the file's sha256), LCP-GAN's D_prompt
    "clip-vit-b32-openai": WeightSpec(
        "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
        "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/"
        "ViT-B-32.pt", "CLIP ViT-B/32 (OpenAI), loaded with open_clip.load_openai_model"),
    "clip-vit-l14-openai": WeightSpec(
        "ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
        "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/"
        "ViT-L-14.pt", "CLIP ViT-L/14 (OpenAI): the --extractor clip-l14 feature space"),
    # stylegan2-ada-pytorch's TorchScript translation of the TensorFlow Inception graph, the FID network of
    # stylegan2-ada / stylegan3 and clean-fid (the same file k-diffusion pins by this sha256)
    "inception-tf": WeightSpec(
        "inception-2015-12-05.pt", "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        "TensorFlow FID Inception as TorchScript (--extractor inception-tf)"),
    # DINOv2's torch-hub backbones. Meta publishes no hash for these files: the empty sha256 accepts any file,
    # whose structure is checked on load (every key and shape of the architecture) and whose own sha256 is
    # part of every result's extractor identity; pin one with register_weights.
    "dinov2-vitl14": WeightSpec(
        "dinov2_vitl14_pretrain.pth", "", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
        "DINOv2 ViT-L/14 backbone (--extractor dinov2, FD_DINOv2)"),
    "dinov2-vits14": WeightSpec(
        "dinov2_vits14_pretrain.pth", "", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
        "DINOv2 ViT-S/14 backbone (DINOv2Features(arch='vits14'))"),
}


def register_weights(name: str, file: str, sha256: str, source: str = "", note: str = "") -> None:
    """Add (or replace) a registry entry, e.g. a classifier trained for RA / GAN-test."""
    h = sha256.lower()
    if not h or any(c not in "0123456789abcdef" for c in h) or len(h) > 64:
        raise ValueError(f"sha256 must be hex digits (a full hash or a prefix), got {sha256!r}")
    REGISTRY[name] = WeightSpec(file, h, source, note)


def weights_dir() -> Path:
    return Path(os.environ.get("SSGAN_FAST_WEIGHTS", "~/.cache/ssgan_fast")).expanduser()


_HASH_CACHE: dict[tuple, str] = {}


def sha256_file(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def weights_path(name: str) -> Path:
    """The verified local file of registry entry `name`."""
    if name not in REGISTRY:
        raise KeyError(f"unknown weights {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[name]
    path = weights_dir() / spec.file
    where = f" (obtain it from {spec.source})" if spec.source else ""
    if not path.is_file():
        sha = f" (sha256 {spec.sha256}{'...' if len(spec.sha256) < 64 else ''})" if spec.sha256 else ""
        raise WeightsError(f"weights {name!r} not found: put the file {spec.file}{sha} in "
                           f"{weights_dir()} or point $SSGAN_FAST_WEIGHTS at its folder{where}. "
                           "Nothing is downloaded at run time.")
    digest = sha256_file(path)
    if not digest.startswith(spec.sha256):
        raise WeightsError(f"weights file {path} has sha256 {digest}, expected {spec.sha256}"
                           f"{'...' if len(spec.sha256) < 64 else ''}: wrong or corrupt file{where}")
    return path


def load_state_dict(name: str) -> dict:
    return torch.load(weights_path(name), map_location="cpu", weights_only=True)


def state_hash(module: torch.nn.Module) -> str:
    """The leading 16 hex digits of the sha256 of a module's tensors: the identity of weights without a file."""
    h = hashlib.sha256()
    for t in module.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_or_random(net: torch.nn.Module, name: str, pretrained: bool, random_prefix: str | None = None) -> str:
    """Load registry weights `name` into `net` (pretrained) or keep its random ones; returns its identity,
    ``name:<file sha256[:16]>`` or ``<random_prefix, default name-random>:<tensor hash>``."""
    if pretrained:
        net.load_state_dict(load_state_dict(name))
        return f"{name}:" + sha256_file(weights_path(name))[:16]
    return f"{random_prefix or name + '-random'}:" + state_hash(net)

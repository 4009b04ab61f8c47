"""Data sets and loaders (see the data-pipeline issue for folders, CUB, CIFAR and the loaders)."""
from .arrays import ArrayData, images_to_tensor, load_arrays

__all__ = ["ArrayData", "load_arrays", "images_to_tensor"]

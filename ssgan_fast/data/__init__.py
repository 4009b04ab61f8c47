"""Data sets (spec strings), the semi-supervised split and sampler, and the loaders."""
from .augment import Augment
from .datasets import (
                       DataError,
                       ImageDataset,
                       PointDataset,
                       decode_image,
                       images_to_tensor,
                       load_arrays,
                       open_dataset,
                       parse_spec,
                       read_images,
)
from .loaders import LOADERS, DaliLoader, TensorLoader, TorchLoader, dali_available, make_loader
from .split import SemiSupervisedSampler, Split, make_split, split_from_file
from .stream import PrepData, stream

__all__ = ["open_dataset", "parse_spec", "load_arrays", "images_to_tensor", "decode_image", "ImageDataset",
           "PointDataset", "DataError", "Split", "make_split", "SemiSupervisedSampler", "Augment", "TensorLoader",
           "TorchLoader", "DaliLoader", "make_loader", "dali_available", "LOADERS", "read_images", "PrepData", "stream",
           "split_from_file"]

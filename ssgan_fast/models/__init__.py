"""The seed systems, one file each, registered by CLI name."""
from . import aam, cvaegan, fig4, lcpgan, medgan, sphericgan  # noqa: F401  (registers)
from .base import MODELS, GANModel, get_model

__all__ = ["MODELS", "GANModel", "get_model"]

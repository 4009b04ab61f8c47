"""Drop-in modules built on the fused ops."""
from .heads import AAMHead, PrototypeHead
from .mask import MaskEmbedding

__all__ = ["PrototypeHead", "AAMHead", "MaskEmbedding"]

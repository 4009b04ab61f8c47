"""Drop-in modules built on the fused ops."""
from .heads import AAMHead, AuxClassifier, PrototypeHead
from .mask import MaskEmbedding

__all__ = ["PrototypeHead", "AAMHead", "AuxClassifier", "MaskEmbedding"]

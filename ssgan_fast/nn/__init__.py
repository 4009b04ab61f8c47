"""Drop-in modules built on the fused ops."""
from .heads import AAMHead, PrototypeHead

__all__ = ["PrototypeHead", "AAMHead"]

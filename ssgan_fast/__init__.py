"""ssgan_fast: a performance-focused engine for semi-supervised and class-conditional GANs.

``ssgan_fast.ops`` holds the fused ops (each defined by a plain-torch reference in
``ssgan_fast.ops.reference``), ``ssgan_fast.nn`` the drop-in modules. ``build_info()`` tells
which backends this install has and why a missing one is missing.
"""
from ._backends import KernelError, build_info

__version__ = "0.1.0"
__all__ = ["KernelError", "build_info", "__version__"]

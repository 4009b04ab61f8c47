"""Triton kernels of ssgan_fast, installed as ``ssgan_fast.kernels``.

One file per op family. Each file holds the ``@triton.jit`` kernels and their launch wrappers;
the wrappers have the same signatures as the C++ ops in ``csrc/<family>/<family>_ops.cpp`` so the host code in
``ssgan_fast.ops`` drives every backend the same way. Importing this package needs Triton.
"""

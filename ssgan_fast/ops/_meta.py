"""Meta tensors for walking the ops' Triton dispatch without data (tools/aot.py's enumeration of the
specialisations the ops launch). Each op family's module defines ``aot_cases(full)``: (label, thunk)
pairs that call its public ops on meta tensors over the shapes and dtypes it supports; the families are
found through ``ssgan_fast.ops.FAMILIES``."""
from __future__ import annotations

import torch

F32, BF16, F16, F64 = torch.float32, torch.bfloat16, torch.float16, torch.float64


def t(*shape, dtype=F32, grad=False):
    return torch.empty(*shape, dtype=dtype, device="meta").requires_grad_(grad)


def idx(n, dtype=torch.int64):
    return torch.zeros(n, dtype=dtype, device="meta")


def backward(y):
    (y.float().square().sum() if y.dim() else y).backward()

"""Argument checks shared by the public ops: clear errors that name the argument."""
from __future__ import annotations

import contextlib

import torch

from .._backends import dry_run

_emulated_capture = 0


@contextlib.contextmanager
def emulated_capture():
    """Act as if a CUDA graph were being captured (the engine's emulated capture): the ops skip their
    value checks (host syncs), as they do under a real capture."""
    global _emulated_capture
    _emulated_capture += 1
    try:
        yield
    finally:
        _emulated_capture -= 1


def no_autocast(device: torch.device):
    """autocast off for the op's device (the fused kernels take low-precision inputs themselves);
    nothing to turn off on meta tensors (the ahead-of-time check's dry walk)."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


def values_checkable() -> bool:
    """Value checks need a host sync: skip them while compiling or capturing a CUDA graph."""
    if torch.compiler.is_compiling() or _emulated_capture or dry_run():
        return False
    if torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing():
        return False
    return True


def check_tensor(t, name: str):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def check_float_matrix(t, name: str, rows_name: str = "rows"):
    check_tensor(t, name)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D [{rows_name}, D], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32/bfloat16/float16/float64), got {t.dtype}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty ({rows_name} = 0): nothing to compute")


def check_pair(x, w, xname: str, wname: str, wrows: str):
    check_float_matrix(x, xname, "B")
    check_float_matrix(w, wname, wrows)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{xname} has D = {x.shape[1]} features but {wname} has D = {w.shape[1]}")
    if x.shape[1] == 0:
        raise ValueError(f"{xname} and {wname} have D = 0 features")
    if x.device != w.device:
        raise ValueError(f"{xname} is on {x.device} but {wname} is on {w.device}: put both on one device")
    if x.device.type == "meta" and not dry_run():  # (the AOT enumerator's dry run launches on meta tensors)
        raise ValueError(f"{xname} and {wname} are meta tensors, which hold no data: the op needs real tensors "
                         "(under torch.compile the op has its own fake implementation)")
    if (x.dtype == torch.float64) != (w.dtype == torch.float64):
        raise TypeError(f"{xname} is {x.dtype} but {wname} is {w.dtype}: float64 is not mixed with lower "
                        "precisions (cast one; bfloat16 / float16 / float32 may be mixed, as under autocast)")


def check_labels(t, name: str, n: int, num_classes: int, device, what: str = "classes"):
    check_tensor(t, name)
    if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{name} must be an integer tensor of class indices, got {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}] (one index per row), got {tuple(t.shape)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the features are on {device}")
    if values_checkable() and n > 0:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name} has values in [{lo}, {hi}] but there are {num_classes} {what} "
                             f"(valid: 0..{num_classes - 1})")


def check_positive(v, name: str):
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name} must be a scalar (one element), got shape {tuple(v.shape)}")
        if not v.is_floating_point():
            raise TypeError(f"{name} must be a floating-point scalar tensor, got {v.dtype}")
        if values_checkable() and not bool(v.detach().reshape(()) > 0):
            raise ValueError(f"{name} must be > 0, got {float(v)}")
    else:
        if not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a float or a scalar tensor, got {type(v).__name__}")
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")

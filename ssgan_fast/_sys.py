"""Process-level tuning for the command-line entry points (never called by library code)."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("ssgan_fast")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(threshold: int = 1 << 30) -> bool:
    """Keep glibc from returning freed multi-MB buffers to the OS after every step.

    CPU training allocates the same large tensors every step; with glibc's defaults each one is a
    fresh mmap, page-faulted in again (measured: the tensor loader's 64 px batch 6.9 ms -> 2.1 ms).
    This is what MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ do from the environment. Returns
    False (and changes nothing) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(min(threshold, 1 << 30))) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(min(threshold, 1 << 30))) == 1
    if not ok:
        log.debug("mallopt failed; glibc malloc tuning not applied")
    return bool(ok)

"""Process-level tuning for the command-line entry points (never called by library code)."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

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


SMALL_STEP_SIZE = 16  # image side at or below which a CPU step is too small for a second intra-op thread


def pick_threads(flag: int | None, device, size: int, cpus: int | None = None, load: float | None = None):
    """The intra-op thread count of a training process, set in torch, and why: (threads, reason).

    - ``--threads N`` (flag > 0): N; ``--threads 0``: torch's own default (one per core), the choice before
      this rule; ``OMP_NUM_THREADS`` in the environment: left as torch read it.
    - Not on the CPU: torch's default (the GPU does the work).
    - CPU, images of at most SMALL_STEP_SIZE px (the digits presets): 1 thread. Measured with the default
      run (bench/busy_threads.py, bench/results/cpu-x86_64/busy_threads.json, 2-core VM): alone 80 s with
      1 thread against 83 s with 2; two copies at once 82 s each with 1 thread against 288 s with 2.
    - CPU, a machine already busy at the start (1-minute load average >= cores - 0.5): 1 thread.
    - Otherwise torch's default."""
    import torch
    cpus = cpus or os.cpu_count() or 1
    if flag is not None and flag > 0:
        torch.set_num_threads(flag)
        return flag, "--threads"
    if flag == 0:
        return torch.get_num_threads(), "--threads 0: torch's default"
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads(), "OMP_NUM_THREADS"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not str(device).startswith("cpu"):
        return torch.get_num_threads(), f"torch's default (device {device})"
    if size <= SMALL_STEP_SIZE:
        torch.set_num_threads(1)
        return 1, (f"{size} px steps are too small for more threads; a second run on the machine then costs little "
                   "(--threads N to change)")
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    if cpus > 1 and load >= cpus - 0.5:
        torch.set_num_threads(1)
        return 1, f"the machine is busy (load {load:.1f} on {cpus} cores; --threads N to change)"
    return torch.get_num_threads(), "torch's default, one per core (--threads N to change)"

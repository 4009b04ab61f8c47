"""Backend discovery and selection for the fused ops.

Backends: ``ref`` (plain torch, always), ``cpp`` (ssgan_fast._C CPU kernels), ``cuda``
(ssgan_fast._C CUDA kernels), ``triton`` (ssgan_fast.kernels; on CPU tensors only under
``TRITON_INTERPRET=1``). Default: CUDA tensors -> triton, else cuda, else ref; CPU tensors ->
cpp, else ref (a default that is not the fastest one is logged as a warning, once).
``SSGAN_FAST_BACKEND=ref|cpp|cuda|triton`` forces one; a forced backend that cannot run raises
``RuntimeError`` saying why - never a silent fallback.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
from types import SimpleNamespace

import torch

log = logging.getLogger("ssgan_fast")

BACKENDS = ("ref", "cpp", "cuda", "triton")
_ENV = "SSGAN_FAST_BACKEND"


@functools.lru_cache(maxsize=None)
def _load_ext():
    """Import ssgan_fast._C. Returns (module or None, reason)."""
    try:
        mod = importlib.import_module("ssgan_fast._C")
    except ImportError as e:  # not built, or built against another torch
        return None, f"ssgan_fast._C is not importable ({e}); build it with `pip install --no-build-isolation -e .`"
    if mod.TORCH_VERSION.split("+")[0] != torch.__version__.split("+")[0]:
        return None, (f"ssgan_fast._C was built against torch {mod.TORCH_VERSION} but torch {torch.__version__} "
                      "is installed; rebuild with `pip install --no-build-isolation -e .`")
    return mod, ""


@functools.lru_cache(maxsize=None)
def _load_triton():
    try:
        import triton  # noqa: F401
        from ssgan_fast.kernels import cosine_logits, cosine_softmax, cutmix, feature_stats, prototype
    except Exception as e:  # ImportError, or a Triton that fails to initialise
        return None, f"Triton is not usable ({type(e).__name__}: {e})"
    return SimpleNamespace(fwd_rows=cosine_logits.fwd_rows, bwd_rows=cosine_logits.bwd_rows,
                           ce_rows=cosine_logits.ce_rows, ema_rows=prototype.ema_rows,
                           fused_softmax=cosine_softmax.fused_forward,
                           fused_softmax_backward=cosine_softmax.fused_backward,
                           fused_ce=cosine_softmax.fused_ce,
                           fused_softmax_supported=cosine_softmax.supported,
                           cutmix_forward=cutmix.cutmix_forward, cutmix_backward=cutmix.cutmix_backward,
                           mask_embed_forward=cutmix.mask_embed_forward,
                           mask_embed_backward=cutmix.mask_embed_backward,
                           class_moments=feature_stats.class_moments), ""


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def availability(name: str, device: torch.device | str | None = None) -> tuple[bool, str]:
    """Whether backend `name` can run on `device` (any device if None), and why not."""
    dev = torch.device(device) if device is not None else None
    if name == "ref":
        return True, ""
    if name == "cpp":
        mod, why = _load_ext()
        if mod is None:
            return False, why
        if dev is not None and dev.type != "cpu":
            return False, f"the cpp backend runs on CPU tensors, got {dev.type} tensors"
        return True, ""
    if name == "cuda":
        mod, why = _load_ext()
        if mod is None:
            return False, why
        if not mod.WITH_CUDA:
            return False, ("ssgan_fast._C was built without CUDA kernels (no nvcc or a CPU-only torch at build time, "
                           "or SSGAN_FAST_NO_CUDA=1); rebuild with FORCE_CUDA=1")
        if mod.CUDA_VERSION.split(".")[0] != (torch.version.cuda or "").split(".")[0]:
            return False, f"ssgan_fast._C was built for CUDA {mod.CUDA_VERSION}, torch uses CUDA {torch.version.cuda}; rebuild"
        if not torch.cuda.is_available():
            return False, "no CUDA device is available"
        if dev is not None and dev.type != "cuda":
            return False, f"the cuda backend runs on CUDA tensors, got {dev.type} tensors"
        return True, ""
    if name == "triton":
        # the device question first: importing the kernels fixes Triton's mode (compiled or
        # interpreted) for the process, so they are not imported where they could not run anyway
        if dev is None:
            if not (torch.cuda.is_available() or _interpret()):
                return False, "no CUDA device (set TRITON_INTERPRET=1 to run the Triton kernels on CPU tensors, slowly)"
        elif not (dev.type == "cuda" or (dev.type == "cpu" and _interpret())):
            return False, f"Triton kernels need CUDA tensors (got {dev.type}); TRITON_INTERPRET=1 runs them on CPU"
        mod, why = _load_triton()
        if mod is None:
            return False, why
        return True, ""
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


@functools.lru_cache(maxsize=None)
def kernels(name: str):
    """The kernels a backend's Python side calls. Triton: the row kernels, the single-launch
    kernels and ema_rows (its host loop is Python). cpp / cuda: ema_rows only - their row kernels
    run inside the C++ host (ssgan_fast_C::cosine_logits_forward / _backward / _ce_fused)."""
    if name in ("cpp", "cuda"):
        return SimpleNamespace(ema_rows=torch.ops.ssgan_fast_C.prototype_ema_rows)
    if name == "triton":
        mod, why = _load_triton()
        if mod is None:
            raise RuntimeError(why)
        return mod
    raise ValueError(f"backend {name!r} has no kernels")


_logged: set = set()


@torch.compiler.assume_constant_result
def _pick_cached(device_type: str) -> str:
    return _pick(device_type)


def _pick(device_type: str) -> str:
    forced = os.environ.get(_ENV, "").strip()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{_ENV}={forced!r} is not a backend; choose one of {', '.join(BACKENDS)}")
        ok, why = availability(forced, device_type)
        if not ok:
            raise RuntimeError(f"{_ENV}={forced} was requested but cannot run on {device_type} tensors: {why}")
        choice, reason = forced, f"forced by {_ENV}"
    else:
        order = ("triton", "cuda") if device_type == "cuda" else ("cpp",)
        choice, reason = "ref", ""
        reasons = []
        for name in order:
            ok, why = availability(name, device_type)
            if ok:
                choice, reason = name, "default"
                break
            reasons.append(f"{name}: {why}")
        if choice == "ref":
            reason = "no fast backend: " + "; ".join(reasons)
    key = (device_type, choice, reason)
    if key not in _logged:
        _logged.add(key)
        level = logging.WARNING if choice == "ref" and not forced else logging.INFO
        log.log(level, "ssgan_fast ops on %s tensors use the %s backend (%s)", device_type, choice, reason)
    return choice


def pick_backend(device: torch.device) -> str:
    """The backend for tensors on `device` (honours SSGAN_FAST_BACKEND)."""
    return _pick_cached(device.type)


def build_info(print_: bool = False) -> dict:
    """Torch / Triton versions and which backends are available, with the reason when not."""
    mod, why = _load_ext()
    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = None
    info = {
        "ssgan_fast": "0.1.0",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "triton": triton_version,
        "extension": None if mod is None else {"with_cuda": bool(mod.WITH_CUDA), "cuda": mod.CUDA_VERSION or None,
                                                "torch": mod.TORCH_VERSION},
        "backends": {},
    }
    for name in BACKENDS:
        ok, reason = availability(name)
        info["backends"][name] = {"available": ok, "reason": reason}
    if print_:
        lines = [f"ssgan_fast {info['ssgan_fast']}  torch {info['torch']} (CUDA {info['torch_cuda']})  "
                 f"triton {info['triton']}  device {info['cuda_device'] or 'cpu only'}"]
        for name, v in info["backends"].items():
            lines.append(f"  {name:7s} {'yes' if v['available'] else 'no '}  {v['reason']}")
        print("\n".join(lines))
    return info

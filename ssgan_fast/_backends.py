"""Backend discovery and selection for the fused ops.

Backends: ``ref`` (plain torch, always), ``cpp`` (ssgan_fast._C CPU kernels), ``cuda``
(ssgan_fast._C CUDA kernels), ``triton`` (ssgan_fast.kernels; on CPU tensors only under
``TRITON_INTERPRET=1``). Default: CUDA tensors -> triton, else cuda, else ref; CPU tensors ->
cpp, else ref (a default that is not the fastest one is logged as a warning, once).
``SSGAN_FAST_BACKEND=ref|cpp|cuda|triton`` forces one; a forced backend that cannot run raises
``RuntimeError`` saying why - never a silent fallback. ``cuda_emu`` (tests): the CUDA kernels compiled
for the CPU against an emulation of the CUDA execution model (ssgan_fast._C_emu, built by
``python tools/cuda_emu.py``), run on CPU tensors when forced; never a default.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import logging
import os

import torch

log = logging.getLogger("ssgan_fast")

BACKENDS = ("ref", "cpp", "cuda", "triton")
EMULATION = "cuda_emu"  # only when forced (SSGAN_FAST_BACKEND=cuda_emu)
ALL_BACKENDS = (*BACKENDS, EMULATION)
_ENV = "SSGAN_FAST_BACKEND"


@functools.cache
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


@functools.cache
def _load_emu():
    """Import ssgan_fast._C_emu (the CUDA kernels emulated on the CPU). Returns (module or None, reason)."""
    try:
        mod = importlib.import_module("ssgan_fast._C_emu")
    except ImportError as e:
        return None, (f"ssgan_fast._C_emu is not importable ({e}); build it with `python tools/cuda_emu.py` "
                      "(a test build of the CUDA kernels for the CPU)")
    return mod, ""


def c_ops(backend: str):
    """The torch.library namespace of a C++ backend's ops: ssgan_fast_C (cpp, cuda) or ssgan_fast_emu."""
    if backend == EMULATION:
        _load_emu()
        return torch.ops.ssgan_fast_emu
    return torch.ops.ssgan_fast_C


@functools.cache
def _load_triton():
    """Import Triton and the kernels' launch layer (what every family's kernels need). Returns (ok, reason)."""
    try:
        import triton  # noqa: F401

        import ssgan_fast.kernels._launch  # noqa: F401
    except Exception as e:  # ImportError, or a Triton that fails to initialise
        return None, f"Triton is not usable ({type(e).__name__}: {e})"
    return True, ""


@functools.cache
def triton_kernels(module: str):
    """ssgan_fast.kernels.<module>: a family's Triton kernels and their launch wrappers (kernels/<module>.py).
    Each family's ops import their own kernels by name; there is no central table."""
    ok, why = _load_triton()
    if ok is None:
        raise RuntimeError(why)
    return importlib.import_module(f"ssgan_fast.kernels.{module}")


class KernelError(RuntimeError):
    """A fused kernel failed to compile or launch. The message names the op, the kernel, the
    inputs' shapes and dtypes, and how to force another backend (``SSGAN_FAST_BACKEND``)."""


_OP = contextvars.ContextVar("ssgan_fast_op", default=None)


@contextlib.contextmanager
def op_scope(name: str, **inputs):
    """Names the public op (and its tensor inputs) that the kernels launched inside belong to, for
    the message of a KernelError. Cheap: one context variable, formatted only on error."""
    token = _OP.set((name, inputs))
    try:
        yield
    finally:
        _OP.reset(token)


def named(fn, op, inputs=("x", "w")):
    """fn, naming its op for a KernelError unless the caller already did: `op` is the name, or a function
    of fn's arguments giving it (host functions shared by several ops); `inputs` names fn's leading
    arguments. Under torch.compile, where the public op cannot set a context variable, these name the op."""
    def call(*args):
        if _OP.get() is not None:
            return fn(*args)
        with op_scope(op(args) if callable(op) else op, **dict(zip(inputs, args, strict=False))):
            return fn(*args)
    return call


def describe(t) -> str:
    """'bfloat16[64, 128] cuda:0' for a tensor (channels_last noted), repr for anything else."""
    if not isinstance(t, torch.Tensor):
        return repr(t)
    cl = t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}{' channels_last' if cl else ''} {t.device}"


def _device_line(device: torch.device | None) -> str:
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(device)
        return f"{device} ({torch.cuda.get_device_name(device)}, sm_{major}{minor})"
    return str(device) if device is not None else "an unknown device"


def kernel_error(backend: str, kernel: str, args: dict, exc: BaseException, device=None,
                 detail: str = "") -> KernelError:
    """The KernelError for `kernel` of `backend` failing with `exc`; args: the launch's named arguments."""
    op = _OP.get()
    op_name, op_inputs = op if op is not None else ("(none recorded)", {})
    cause = f"{type(exc).__name__}: {exc}".strip()
    lines = cause.splitlines()
    if len(lines) > 12:
        cause = "\n".join(lines[:12] + [f"... ({len(lines) - 12} more lines)"])
    on_gpu = device is None or torch.device(device).type == "cuda"
    others = [b for b in (("triton", "cuda", "ref") if on_gpu else ("cpp", "ref")) if b != backend]
    msg = [f"ssgan_fast op {op_name}: the {backend} kernel {kernel} failed on {_device_line(device)}"
           f"{(' (' + detail + ')') if detail else ''}."]
    if op_inputs:
        msg.append("  op inputs: " + ", ".join(f"{k} {describe(v)}" for k, v in op_inputs.items() if v is not None))
    if args:
        msg.append("  kernel arguments: " + ", ".join(f"{k}={describe(v)}" for k, v in args.items()))
    msg.append("  cause: " + cause.replace("\n", "\n    "))
    msg.append(f"  To run this op on another backend, set {_ENV}=" + " or ".join(others)
               + " (see ssgan_fast.build_info()); please report the failure with this message.")
    return KernelError("\n".join(msg))


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def availability(name: str, device: torch.device | str | None = None) -> tuple[bool, str]:
    """Whether backend `name` can run on `device` (any device if None), and why not."""
    dev = torch.device(device) if device is not None else None
    if name == "ref":
        return True, ""
    if name in ("cpp", EMULATION):  # ssgan_fast._C's CPU kernels, or the CUDA kernels emulated on the CPU
        mod, why = (_load_ext if name == "cpp" else _load_emu)()
        if mod is None:
            return False, why
        if dev is not None and dev.type != "cpu":
            return False, f"the {name} backend runs on CPU tensors, got {dev.type} tensors"
        return True, ""
    if name == "cuda":
        mod, why = _load_ext()
        if mod is None:
            return False, why
        if not mod.WITH_CUDA:
            return False, ("ssgan_fast._C was built without CUDA kernels (no nvcc or a CPU-only torch at build time, "
                           "or SSGAN_FAST_NO_CUDA=1); rebuild with FORCE_CUDA=1")
        if mod.CUDA_VERSION.split(".")[0] != (torch.version.cuda or "").split(".")[0]:
            return False, (f"ssgan_fast._C was built for CUDA {mod.CUDA_VERSION}, torch uses CUDA "
                           f"{torch.version.cuda}; rebuild")
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
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(ALL_BACKENDS)}")


_logged: set = set()


@torch.compiler.assume_constant_result
def _pick_cached(device_type: str) -> str:
    return _pick(device_type)


def _pick(device_type: str) -> str:
    forced = os.environ.get(_ENV, "").strip()
    if forced:
        if forced not in ALL_BACKENDS:
            raise ValueError(f"{_ENV}={forced!r} is not a backend; choose one of {', '.join(ALL_BACKENDS)}")
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


_META = contextvars.ContextVar("ssgan_fast_meta_backend", default=None)


@contextlib.contextmanager
def meta_backend(name: str):
    """Ops on meta tensors use backend `name` (the ahead-of-time kernel check walks the ops' host
    code on meta tensors, at any shape, collecting the kernels' launches without running them)."""
    token = _META.set(name)
    try:
        yield
    finally:
        _META.reset(token)


def dry_run() -> bool:
    """Inside meta_backend(): no value checks (meta tensors have no values)."""
    return _META.get() is not None


def pick_backend(device: torch.device) -> str:
    """The backend for tensors on `device` (honours SSGAN_FAST_BACKEND)."""
    if device.type == "meta":
        name = _META.get()
        if name is None:
            raise RuntimeError("ssgan_fast ops do not run on meta tensors (only the ahead-of-time kernel check "
                               "walks them, inside ssgan_fast.kernels._launch.recording(dry=True))")
        return name
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
                                                "cuda_archs": getattr(mod, "CUDA_ARCHS", "") or None,
                                                "torch": mod.TORCH_VERSION, "path": mod.__file__},
        "backends": {},
    }
    for name in ALL_BACKENDS:
        ok, reason = availability(name)
        info["backends"][name] = {"available": ok, "reason": reason}
    if print_:
        lines = [f"ssgan_fast {info['ssgan_fast']}  torch {info['torch']} (CUDA {info['torch_cuda']})  "
                 f"triton {info['triton']}  device {info['cuda_device'] or 'cpu only'}"]
        ext = info["extension"]
        if ext is not None:
            lines.append(f"  _C: {ext['path']}; CUDA kernels: "
                         + (f"yes (CUDA {ext['cuda']}, architectures {ext['cuda_archs']})" if ext["with_cuda"]
                            else "no"))
        for name, v in info["backends"].items():
            lines.append(f"  {name:8s} {'yes' if v['available'] else 'no '}  {v['reason']}")
        print("\n".join(lines))
    return info

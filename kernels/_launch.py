"""The one launch path of every Triton kernel of ssgan_fast.

``launch(kernel, grid, args, meta, tuned=, interp=)`` runs a kernel the way its device needs:
autotuned (``tuned``) or with its fixed constexprs on a GPU, with the fixed tiles ``interp`` under
the interpreter (``TRITON_INTERPRET=1``, CPU tensors). A failure to compile or launch becomes a
``KernelError`` naming the op, the kernel, the arguments and the other backends - never a silent
fallback. Inside ``recording()`` every launch's GPU specialisation (Triton's own signature,
constexprs and alignment attributes, one per autotune config) is collected; ``recording(dry=True)``
collects without launching, so the ops can be walked on meta tensors at any shape
(``tools/aot.py`` compiles what it collects for sm_90 / sm_80).
"""
from __future__ import annotations

import contextlib
import json
import os

import torch
import triton

from .._backends import kernel_error, meta_backend

_recorder = None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def device_of(t):
    """Triton launches on the current CUDA device: make it the tensors' (multi-GPU)."""
    return torch.cuda.device(t.device) if isinstance(t, torch.Tensor) and t.is_cuda else contextlib.nullcontext()


def _first_tensor(args):
    return next((a for a in args if isinstance(a, torch.Tensor)), None)


def launch(kernel, grid, args, meta, *, tuned=None, interp=None):
    """Launch `kernel` (a @triton.jit function) over `grid` (a tuple, or a callable of the constexpr
    dict) with positional `args` and constexpr kwargs `meta`. On a GPU, `tuned` (its autotuner) picks
    the remaining constexprs; under the interpreter `interp` gives them."""
    if _recorder is not None:
        _recorder.record(kernel, tuned, args, meta)
        if _recorder.dry:
            return
    t = _first_tensor(args)
    try:
        with device_of(t):
            if tuned is None or interpreting():
                kw = {**meta, **_interp_tiles(kernel, tuned, interp)} if tuned is not None else meta
                kernel[grid(kw) if callable(grid) else grid](*args, **kw)
            else:
                tuned[grid](*args, **meta)
    except Exception as e:  # compile errors, out of resources, launch failures: say which op and kernel
        raise kernel_error("triton", _name(kernel), dict(zip(_arg_names(kernel), args, strict=False)) | meta, e,
                           device=None if t is None else t.device,
                           detail=f"Triton {triton.__version__}" + (", interpreter" if interpreting() else "")) from e


# Tests: SSGAN_FAST_TRITON_CONFIG=i makes the interpreter run each autotuned launch with the autotuner's
# i-th config (the last where it has fewer) instead of the interpreter's tiles, so every config a GPU can
# pick is executed (tests/ops/test_triton_configs.py); EXECUTED_CONFIGS records (kernel, config) pairs run.
FORCED_CONFIG_ENV = "SSGAN_FAST_TRITON_CONFIG"
EXECUTED_CONFIGS: set = set()


def _interp_tiles(kernel, tuned, interp) -> dict:
    i = os.environ.get(FORCED_CONFIG_ENV)
    if i is None:
        return interp or {}
    cfg = tuned.configs[min(int(i), len(tuned.configs) - 1)]
    EXECUTED_CONFIGS.add((_name(kernel), tuple(sorted(cfg.kwargs.items()))))
    return dict(cfg.kwargs)


def _name(kernel) -> str:
    fn = getattr(kernel, "fn", kernel)
    return f"{getattr(fn, '__name__', repr(fn))} ({getattr(fn, '__module__', '?')})"


def _arg_names(kernel):
    fn = getattr(kernel, "fn", kernel)
    code = getattr(fn, "__code__", None)
    return code.co_varnames[:code.co_argcount] if code is not None else ()


# ----------------------------------------------------------------------------- specialisations

def _jit(kernel):
    """The JITFunction of a kernel (under the interpreter, one made from the same Python function)."""
    from triton.runtime.jit import JITFunction
    if isinstance(kernel, JITFunction):
        return kernel
    jf = getattr(kernel, "_ssgan_jit", None)
    if jf is None:  # the interpreter keeps the decorator's arguments: specialise as a GPU would
        kw = getattr(kernel, "kwargs", {})
        jf = JITFunction(kernel.fn, do_not_specialize=kw.get("do_not_specialize"),
                         do_not_specialize_on_alignment=kw.get("do_not_specialize_on_alignment"))
        kernel._ssgan_jit = jf
    return jf


def _plain(v):
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if hasattr(v, "value"):  # tl.constexpr
        return _plain(v.value)
    return str(v)


class Spec(dict):
    """One GPU compile unit: kernel, signature, constexprs, attrs, options (JSON-ready)."""

    @property
    def key(self) -> str:
        return json.dumps({k: self[k] for k in ("kernel", "signature", "constexprs", "attrs", "options")},
                          sort_keys=True)


class Recorder:
    """Collects the GPU specialisations of the launches made while it is active."""

    def __init__(self, dry: bool = False):
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        self.dry = dry
        self.backend = make_backend(GPUTarget("cuda", 90, 32))  # specialisation rules are the same for sm_80
        self.specs: dict[str, Spec] = {}
        self._binders = {}
        self._seen = set()
        self.label = ""

    def _spec(self, kernel, args, kw) -> Spec:
        from triton.runtime.jit import create_function_from_signature
        jf = _jit(kernel)
        binder = self._binders.get(id(jf))
        if binder is None:
            binder = self._binders[id(jf)] = create_function_from_signature(jf.signature, jf.params, self.backend)
        bound, specialization, options = binder(*args, **kw)
        options, signature, constexprs, attrs = jf._pack_args(self.backend, kw, bound, specialization, options)
        return Spec(kernel=f"{jf.fn.__module__}.{jf.fn.__name__}",
                    signature=dict(signature),
                    constexprs=sorted([list(k), _plain(v)] for k, v in constexprs.items()),
                    attrs=sorted([list(k), [list(a) for a in v]] for k, v in attrs.items() if v),
                    options={"num_warps": options.num_warps, "num_stages": options.num_stages},
                    origin=self.label)

    def record(self, kernel, tuned, args, meta):
        configs = tuned.configs if tuned is not None else [None]
        first = self._spec(kernel, args, _with(meta, configs[0]))
        if first.key in self._seen:
            return
        self._seen.add(first.key)
        for cfg in configs:
            spec = first if cfg is configs[0] else self._spec(kernel, args, _with(meta, cfg))
            spec["tuned"] = tuned is not None
            self.specs.setdefault(spec.key, spec)


def _with(meta, cfg):
    """The launch's constexprs and options under autotune config `cfg` (None: not autotuned)."""
    if cfg is None:
        return dict(meta)
    return {**meta, **cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def set_recorder(recorder: Recorder | None):
    """Install (or remove, with None) a recorder for every launch from now on (the test suite's)."""
    global _recorder
    _recorder = recorder


def write_specs(specs, path: str):
    """JSON lines, one spec each (``tools/aot.py table --launches PATH`` reads them)."""
    with open(path, "w") as f:
        for s in specs:
            f.write(json.dumps(s, sort_keys=True) + "\n")


@contextlib.contextmanager
def recording(dry: bool = False, recorder: Recorder | None = None):
    """Collect launch specialisations (dry: do not launch; ops on meta tensors use the Triton backend)."""
    global _recorder
    prev, _recorder = _recorder, recorder or Recorder(dry)
    try:
        if dry:
            with meta_backend("triton"):
                yield _recorder
        else:
            yield _recorder
    finally:
        _recorder = prev

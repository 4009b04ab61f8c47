"""CUDA-graph capture of whole train steps (``--graphs``).

After ``warmup`` eager steps (on a side stream: lazy optimizer state, cuDNN / Triton autotuning),
one whole ``model.train_step`` - every forward, backward and optimizer step of the iteration - is
captured into a ``torch.cuda.CUDAGraph`` with the batch in static input buffers; later iterations
copy the next batch into those buffers (``loader.next_into``) and replay the graph: one launch per
iteration instead of thousands. The step's loss tensors are the graph's static outputs.

More: docs/modules.md, section ssgan_fast.engine.graphs.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

log = logging.getLogger("ssgan_fast")

aten = torch.ops.aten


class CaptureError(RuntimeError):
    """A train step breaks the CUDA-graph contract (found by the emulated capture)."""


def capture_blocker(amp, world_size: int = 1) -> str | None:
    """Why a step cannot be captured with these settings (None: it can)."""
    if getattr(amp, "scaler", None) is not None:
        return ("--amp fp16 uses a GradScaler, whose inf check and scale update sync with the host every step; "
                "use --amp bf16 with --graphs")
    if world_size > 1:
        return "--graphs under torchrun: the gradient all-reduce is not captured by this engine"
    return None


def prepare_optimizers(opts: dict, device, graphs: bool) -> None:
    """On CUDA: Adam fused (one kernel per parameter group); with graphs also capturable (step
    counters on the device). Call before the first step and before loading optimizer state (the
    state's step counters then land on the device)."""
    if torch.device(device).type != "cuda":
        return
    for o in opts.values():
        if not isinstance(o, (torch.optim.Adam, torch.optim.AdamW)):
            continue
        for g in o.param_groups:
            if not g.get("differentiable"):
                g["foreach"], g["fused"] = False, True
            if graphs:
                g["capturable"] = True
        o._step_supports_amp_scaling = any(g.get("fused") for g in o.param_groups)
        if graphs:
            o._warned_capturable_if_run_uncaptured = True  # the warm-up steps run uncaptured on purpose


# --------------------------------------------------------------------------- emulated capture (checks)

def _sync_reason(func, args, kwargs) -> str | None:
    """Why op `func` would sync with the host (or break capture) on CUDA; None if it would not."""
    packet = func.overloadpacket
    if packet in (aten._local_scalar_dense, aten.item, aten.is_nonzero, aten.equal):
        return "reads a value on the host (.item() / bool() / int() / float() of a tensor)"
    if packet in (aten.nonzero, aten.masked_select, aten.unique_dim, aten._unique, aten._unique2,
                  aten.unique_consecutive):
        return "has a data-dependent output size (host sync)"
    if packet is aten.bincount:
        return "bincount sizes its output from the data on CUDA (host sync); use index_add_ / scatter_add_"
    if packet is aten.randperm:
        return "randperm may run on the host on CUDA; use torch.rand(n).argsort()"
    if packet is aten.repeat_interleave and func is aten.repeat_interleave.Tensor and \
            kwargs.get("output_size") is None:
        return "repeat_interleave without output_size syncs with the host"
    if packet in (aten.lift_fresh, aten.lift_fresh_copy):
        return "creates a tensor from host data inside the step (torch.tensor(...)): a host-to-device copy"
    if packet in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_):
        idx = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in idx or ()):
            return "indexes with a boolean mask (data-dependent size: host sync); use torch.where"
    return None


def _sig(a):
    if isinstance(a, torch.Tensor):
        return ("T", tuple(a.shape), str(a.dtype), a.device.type)
    if isinstance(a, (list, tuple)):
        return tuple(_sig(x) for x in a)
    if isinstance(a, dict):
        return tuple((k, _sig(v)) for k, v in a.items())
    if isinstance(a, (bool, int, float, str, type(None), torch.dtype, torch.device, torch.layout,
                      torch.memory_format)):
        return a
    return type(a).__name__


def _where() -> str:
    """The innermost source line on the stack outside torch and this module: the offending call."""
    for fr in reversed(traceback.extract_stack()):
        f = fr.filename
        if "/torch/" in f or f == __file__ or f.endswith("contextlib.py") or f.startswith("<"):
            continue
        return f"{f}:{fr.lineno} ({fr.line})"
    return "?"


class _Trace(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops, self.syncs, self.hp, self.paused = [], [], [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.paused:
            why = _sync_reason(func, args, kwargs)
            if why:
                self.syncs.append(f"{func} {why}, at {_where()}")
            self.ops.append((str(func), _sig(args), _sig(kwargs)))
        return func(*args, **kwargs)


def _hparams(name, o) -> list:
    return [(name, i, k, v if not isinstance(v, torch.Tensor) else ("T", float(v)))
            for i, g in enumerate(o.param_groups) for k, v in g.items() if k != "params"]


def _pointers(model, opts) -> dict:
    out = {f"parameter {n}": p.data_ptr() for n, p in model.named_parameters()}
    out.update({f"buffer {n}": b.data_ptr() for n, b in model.named_buffers()})
    names = {id(p): n for n, p in model.named_parameters()}
    for on, o in opts.items():
        for p, st in o.state.items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    out[f"optimizer {on} state {k} of {names.get(id(p), '?')}"] = v.data_ptr()
    return out


class _EmulatedGraph:
    """Stands in for torch.cuda.CUDAGraph: 'capture' runs the step once under a trace; 'replay'
    runs it again under a trace and checks that a real graph replay would have done the same."""

    def __init__(self, fn, model, opts, key):
        self.fn, self.model, self.opts, self.key = fn, model, opts, key

    @contextlib.contextmanager
    def _traced(self):
        from ..ops import emulated_capture
        tr = _Trace()
        hooks = []
        def pre(name):
            def hook(o, args, kwargs):  # the hyper-parameters this step uses (captured as constants)
                tr.paused += 1
                tr.hp.append(_hparams(name, o))
            return hook

        def post(o, args, kwargs):
            tr.paused -= 1
        for name, o in self.opts.items():  # optimizer internals are torch's (capturable Adam / SGD): not traced
            hooks += [o.register_step_pre_hook(pre(name)), o.register_step_post_hook(post)]
        with emulated_capture(), tr:
            try:
                yield tr
            finally:
                for h in hooks:
                    h.remove()
        if tr.syncs:
            raise CaptureError(f"graph key {self.key!r}: the step cannot be captured: {tr.syncs[0]}"
                               + (f" (and {len(tr.syncs) - 1} more)" if len(tr.syncs) > 1 else ""))

    def capture(self):
        with self._traced() as tr:
            self.outputs = self.fn()
        self.ops, self.hp = tr.ops, tr.hp
        self.ptrs = _pointers(self.model, self.opts)
        return self.outputs

    def replay(self):
        with self._traced() as tr:
            out = self.fn()
        if tr.hp != self.hp:
            pairs = (ab for x, y in zip(self.hp, tr.hp, strict=False) for ab in zip(x, y, strict=False))
            a, b = next(((a, b) for a, b in pairs if a != b), (self.hp, tr.hp))
            raise CaptureError(f"graph key {self.key!r}: optimizer setting {a[0]}[{a[1]}].{a[2]} changed from {a[3]} "
                               f"to {b[3]} under the same key; a captured step keeps the value it was captured with "
                               f"(make the change part of graph_key)")
        if tr.ops != self.ops:
            i = next((i for i, (a, b) in enumerate(zip(self.ops, tr.ops, strict=False)) if a != b),
                     min(len(self.ops), len(tr.ops)))
            a = self.ops[i] if i < len(self.ops) else "<end of step>"
            b = tr.ops[i] if i < len(tr.ops) else "<end of step>"
            raise CaptureError(f"graph key {self.key!r}: the step differs from the captured one at op #{i}: captured "
                               f"{a}, now {b}; Python-side control flow or scalars that change between steps must be "
                               f"part of the model's graph_key")
        if set(out) != set(self.outputs):
            raise CaptureError(f"graph key {self.key!r}: the step returned losses {sorted(out)}, captured "
                               f"{sorted(self.outputs)}")
        ptrs = _pointers(self.model, self.opts)
        moved = [k for k, v in self.ptrs.items() if ptrs.get(k, v) != v]
        if moved:
            raise CaptureError(f"graph key {self.key!r}: the step rebinds {moved[0]} to new memory (not in place); a "
                               f"replayed graph would keep writing the old tensor")
        for k, v in out.items():  # the real graph writes its static outputs
            self.outputs[k].copy_(v)


# --------------------------------------------------------------------------- the runner

class StepGraphs:
    """Runs ``model.train_step`` captured in graphs, one per ``model.graph_key(step)``.

    mode: "cuda" (torch.cuda.CUDAGraph) or "emulate" (any device; checks the capture contract).
    ``__call__(step)`` takes the next batch from the loader into the static buffers, runs the step
    and returns (batch size, dict of loss tensors - the graph's static outputs, valid until the next
    replay of that graph)."""

    def __init__(self, model, amp, loader, device, mode: str = "cuda", warmup: int = 2, max_graphs: int = 4):
        if mode not in ("cuda", "emulate"):
            raise ValueError(f"graph mode must be cuda or emulate, got {mode!r}")
        if mode == "cuda" and torch.device(device).type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device; mode='emulate' checks the capture contract elsewhere")
        if warmup < 1:
            raise ValueError("warmup must be >= 1 (optimizer state is created lazily by the first step)")
        self.model, self.amp, self.loader = model, amp, loader
        self.mode, self.warmup, self.max_graphs = mode, warmup, max_graphs
        self.static = None
        self.graphs: collections.OrderedDict = collections.OrderedDict()
        self.warm = collections.Counter()
        self.captures = 0
        self.eager_steps = 0
        self.disabled: str | None = None

    @property
    def status(self) -> str:
        return f"eager: {self.disabled}" if self.disabled else f"captured ({self.captures} capture(s))"

    def reset(self) -> None:
        """Drop the captured graphs (after the state they point at was replaced); the next step of
        each key captures again (its warm-up is done)."""
        self.graphs.clear()

    def _batch(self) -> dict:
        if self.static is None:
            self.static = {k: v.clone() for k, v in next(self.loader).items()}
        else:
            self.loader.next_into(self.static)
        return self.static

    def _fn(self, step):
        return lambda: self.model.train_step(self.static, step, self.amp)

    def _eager(self, step, side_stream: bool):
        self.eager_steps += 1
        if self.mode == "cuda" and side_stream:
            s = self._side = getattr(self, "_side", None) or torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                out = self.model.train_step(self.static, step, self.amp)
            torch.cuda.current_stream().wait_stream(s)
            return out
        return self.model.train_step(self.static, step, self.amp)

    def _capture(self, key, step):
        if self.mode == "emulate":
            g = _EmulatedGraph(self._fn(step), self.model, self.model.optimizers(), key)
            out = g.capture()  # ran the step
        else:
            g = torch.cuda.CUDAGraph()
            torch.cuda.synchronize()
            with torch.cuda.graph(g, capture_error_mode="thread_local"):  # loader threads may touch CUDA
                out = self.model.train_step(self.static, step, self.amp)
            g.replay()  # capture records without running: run this step
        self.captures += 1
        self.graphs[key] = (g, out)
        while len(self.graphs) > self.max_graphs:
            self.graphs.popitem(last=False)
        log.info("captured the train step in a %s graph at step %d (key %r)",
                 "CUDA" if self.mode == "cuda" else "emulated", step + 1, key)
        return out

    def __call__(self, step: int):
        b = self._batch()
        n = int(b["x_l"].shape[0] + b["x_u"].shape[0])
        if self.disabled:
            return n, self.model.train_step(b, step, self.amp)
        key = self.model.graph_key(step)
        if key is None:
            return n, self._eager(step, side_stream=False)
        if key in self.graphs:
            g, out = self.graphs[key]
            self.graphs.move_to_end(key)
            if self.mode == "emulate":
                g.fn = self._fn(step)
            g.replay()
            return n, out
        if self.warm[key] < self.warmup:
            self.warm[key] += 1
            return n, self._eager(step, side_stream=True)
        if self.mode == "emulate":
            return n, self._capture(key, step)
        try:
            return n, self._capture(key, step)
        except RuntimeError as e:  # say why and train on eagerly
            self.disabled = f"capture failed at step {step + 1} (key {key!r}): {str(e).splitlines()[0]}"
            self.graphs.clear()
            log.warning("--graphs: %s; running eager from here on", self.disabled)
            torch.cuda.synchronize()  # a failed capture leaves no sticky error: this must succeed
            for o in self.model.optimizers().values():  # grads may point into the dropped graph's pool
                o.zero_grad(set_to_none=True)
            return n, self.model.train_step(b, step, self.amp)

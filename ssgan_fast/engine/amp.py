"""Mixed precision for the models' step functions: autocast context + (fp16) gradient scaling.

bf16 autocast needs no scaling (and is what --graphs captures); fp16 uses one torch.amp.GradScaler
for every optimizer of the model (``step`` per optimizer, one ``update`` per iteration, as the AMP
docs prescribe for several losses and optimizers). ``mode=None``: fp32, no autocast. fp16 works on
CPU too (CPU fp16 autocast and ``GradScaler("cpu")``).

The engine owns the scaler: models call ``ctx`` / ``backward`` / ``step`` (the
``ssgan_fast.models.base.Precision`` interface) and the engine calls ``update`` once after each
``train_step`` (``updates`` counts them).
"""
from __future__ import annotations

import contextlib

import torch

from ..models.base import Precision

MODES = (None, "bf16", "fp16")


class Amp(Precision):
    def __init__(self, mode: str | None, device):
        if mode not in MODES:
            raise ValueError(f"amp must be one of bf16, fp16 (or off), got {mode!r}")
        self.mode = mode
        self.device = torch.device(device)
        if mode == "fp16" and self.device.type not in ("cuda", "cpu"):
            raise ValueError(f"--amp fp16 needs a CUDA or CPU device, got {self.device}")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
        self.scaler = torch.amp.GradScaler(self.device.type) if mode == "fp16" else None
        self.updates = 0
        import torch.distributed as dist
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    def _allreduce(self, params):
        """DDP-style gradient averaging over the process group: one flat all-reduce per optimizer step
        (the models step several optimizers on partial graphs, which DDP's wrapper does not model)."""
        import torch.distributed as dist
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        off = 0
        for g in grads:
            g.copy_(flat[off:off + g.numel()].view_as(g))
            off += g.numel()

    def ctx(self):
        if self.mode is None:
            return contextlib.nullcontext()
        # autocast's weight-cast cache stays off: capture requires it, and with it on a weight used twice
        # in one region gets its two bf16 gradients summed in bf16 (one cast node) instead of in fp32 -
        # eager and captured steps would round differently. Off everywhere: one numerics.
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=False)

    def backward(self, loss, params, retain_graph=False):
        (self.scaler.scale(loss) if self.scaler else loss).backward(inputs=params, retain_graph=retain_graph)

    def step(self, loss, opt, params, retain_graph=False):
        """zero_grad + backward(loss) into `params` + optimizer step (loss None: step only)."""
        if loss is not None:
            opt.zero_grad(set_to_none=True)
            self.backward(loss, params, retain_graph)
        if self.world > 1:
            self._allreduce([p for g in opt.param_groups for p in g["params"]])
        if self.scaler:
            self.scaler.step(opt)
        else:
            opt.step()

    def update(self):
        """Once per train step, by the engine (never by a model)."""
        self.updates += 1
        if self.scaler:
            self.scaler.update()

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, s):
        if self.scaler and s:
            self.scaler.load_state_dict(s)

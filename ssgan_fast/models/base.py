"""Model contract and registry.

A model owns its networks, optimizers and losses, and exposes step functions that take a batch
of fixed shape ({x_l, y_l, x_u} from ssgan_fast.data) and return a dict of float losses. The
engine calls ``train_step`` (the paper's update order), ``sample`` for images / points, and
``state_dict`` / ``load_state_dict`` for checkpoints. Models register under their CLI name.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MODELS: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = cls
        cls.name = name
        return cls
    return deco


def get_model(name: str) -> type:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def config_from_dict(cls, values: dict, where: str):
    """Dataclass `cls` from a dict; unknown keys and wrong types are errors naming the key."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(fields))}")
    out = {}
    for k, v in values.items():
        default = getattr(cls, k, None) if not isinstance(fields[k].default, dataclasses._MISSING_TYPE) else None
        if isinstance(default, bool) and not isinstance(v, bool):
            raise ValueError(f"{where}: {k} must be true/false, got {v!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: {k} must be a number, got {v!r}")
            v = type(default)(v) if not (isinstance(default, int) and isinstance(v, float) and not v.is_integer()) else v
        out[k] = v
    return cls(**out)


def real_loss(logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(l): the non-saturating 'this is real' term (D on real data, G on its samples)."""
    return F.softplus(-logits).mean()


def fake_loss(logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - sigmoid(l)): the 'this is fake' term."""
    return F.softplus(logits).mean()


def uncompiled(m: nn.Module):
    """m's eager call even where the trainer compiled it in place (--compile): for passes that need
    what compiled graphs lack, such as the double backward of a gradient penalty."""
    return m._call_impl


def one_hot(y: torch.Tensor, n: int, dtype=torch.float32) -> torch.Tensor:
    """[B, n] one-hot rows of class indices y (F.one_hot checks the index range on the host on CPU,
    which a captured step may not do; an out-of-range index still fails in scatter_)."""
    return torch.zeros(y.shape[0], n, device=y.device, dtype=dtype).scatter_(1, y.long()[:, None], 1)


def rand_perm(n: int, device) -> torch.Tensor:
    """A random permutation of range(n) on `device` from the default generator (sorting uniform
    keys): unlike randperm, safe inside a captured CUDA graph on every torch version."""
    return torch.rand(n, device=device).argsort()


def lr_epoch(step: int, every: int) -> int:
    """Index of the step-decay interval `step` falls in (part of graph keys: lr is a captured scalar)."""
    return step // every if every > 0 else 0


def step_lr(opts: dict, base_lr: dict, step: int, every: int, factor: float) -> None:
    """Step decay: lr = base * factor ** (step // every) (every = 0: constant). A function of the
    step alone, so a resumed run continues on the same schedule."""
    if every <= 0:
        return
    scale = factor ** lr_epoch(step, every)
    for k, o in opts.items():
        for g in o.param_groups:
            g["lr"] = base_lr[k] * scale


class GANModel(nn.Module):
    """Base class: subclasses define Config, build networks in __init__, and implement train_step."""
    name = "base"
    Config = None

    def __init__(self, cfg, data_info: dict):
        super().__init__()
        self.cfg, self.info = cfg, data_info

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        raise NotImplementedError

    def graph_key(self, step: int):
        """What of a step's Python-side control flow and scalars depends on `step` (a hashable): the
        engine captures one CUDA graph per key (--graphs). None: run this step eagerly. Models whose
        every step does the same work keep this default."""
        return ()

    def generator_modules(self) -> list[str]:
        """Names of the submodules that form the generator (EMA copies them)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor, noise: torch.Tensor | None = None, ema: nn.Module | None = None):
        raise NotImplementedError

    def noise(self, n: int, generator=None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes [B] of real images: the classifier C where the model has one, else D's
        auxiliary classifier (AAM models)."""
        if hasattr(self, "C"):
            return self.C(x).argmax(1)
        if hasattr(self, "cls") and hasattr(self, "D"):
            return self.cls.logits(self.D(x)[1]).argmax(1)
        raise NotImplementedError(f"{self.name} has no classifier")

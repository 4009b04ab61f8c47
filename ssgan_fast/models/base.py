"""Model contract and registry.

A model owns its networks, optimizers and losses, and exposes step functions that take a batch
of fixed shape ({x_l, y_l, x_u} from ssgan_fast.data) and return a dict of float losses. The
engine calls ``train_step`` (the paper's update order), ``sample`` for images / points, and
``state_dict`` / ``load_state_dict`` for checkpoints. Models register under their CLI name.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import typing
from collections.abc import Callable

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
    """Dataclass `cls` from a dict; unknown keys and wrong types are errors naming the key. The type is
    the field's annotation (``bool``, ``int``, ``float``, ``str``, or one of them ``| None``, where null is then
    allowed); a field without such an annotation is passed through as given."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in values.items():
        kind, args = hints.get(k), typing.get_args(hints.get(k))
        optional = type(None) in args  # `T | None`
        if optional:
            if v is None:
                out[k] = None
                continue
            rest = [a for a in args if a is not type(None)]
            kind = rest[0] if len(rest) == 1 else None
        nullable = " or null" if optional else ""
        if kind is bool and not isinstance(v, bool):
            raise ValueError(f"{where}: {k} must be true/false{nullable}, got {v!r}")
        if kind is str and v is not None and not isinstance(v, str):  # None: the field's "unset", as before
            if isinstance(v, bool) or not isinstance(v, (int, float)):  # a number is the text as written
                raise ValueError(f"{where}: {k} must be text{nullable}, got {v!r}")
            v = str(v)
        if kind in (int, float):
            if isinstance(v, str):  # YAML 1.1 reads 1e-4 (no dot) as a string: a number all the same
                try:
                    v = float(v) if kind is float or not v.strip().lstrip("+-").isdigit() else int(v)
                except ValueError:
                    pass
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where}: {k} must be a number{nullable}, got {v!r}")
            if not math.isfinite(v):
                raise ValueError(f"{where}: {k} must be a finite number, got {v!r}")
            if kind is int and isinstance(v, float) and not v.is_integer():
                raise ValueError(f"{where}: {k} must be a whole number{nullable}, got {v!r}")
            v = kind(v)
        out[k] = v
    return cls(**out)


def real_loss(logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(l): the non-saturating 'this is real' term (D on real data, G on its samples)."""
    return F.softplus(-logits).mean()


def fake_loss(logits: torch.Tensor) -> torch.Tensor:
    """-log(1 - sigmoid(l)): the 'this is fake' term."""
    return F.softplus(logits).mean()


def triple_c_adversarial(logp: torch.Tensor, d_logits, exact: bool) -> torch.Tensor:
    """Triple-GAN's adversarial term of C: C makes its pairs (x_u, y ~ p_c(y | x_u)) look real to D,
    E_{p_c}[-log D(x, y)] (non-saturating). logp [n, K] = log p_c; ``d_logits(ys, r)`` = D's logits of
    the n images each repeated r times in a row, with labels ys [n r]. exact: the sum over the K
    classes; else one sampled y per image with the score-function gradient (Triple-GAN's estimator for
    large label sets), unbiased; its value is not the loss's (log only the exact one)."""
    n, K = logp.shape
    if exact:
        ys = torch.arange(K, device=logp.device).repeat(n)
        d = F.softplus(-d_logits(ys, K).float()).view(n, K)  # -log D(x, y)
        return (logp.exp() * d).sum(1).mean()
    y = torch.multinomial(logp.exp().detach(), 1)[:, 0]
    with torch.no_grad():
        d = F.softplus(-d_logits(y, 1).float())
        # leave-one-out baseline: the mean of the other rows' values (the batch mean itself would
        # include the row's own value and shrink the gradient by 1 - 1/n)
        base = (d.sum() - d) / (n - 1) if n > 1 else torch.zeros_like(d)
    return (logp.gather(1, y[:, None])[:, 0] * (d - base)).mean()


def share_pair_classes(y: torch.Tensor) -> torch.Tensor:
    """Mode-seeking pairs: rows i and i + B // 2 get the class of row i (in place; returns y)."""
    h = y.shape[0] // 2
    y[h:2 * h] = y[:h]
    return y


def mode_seeking(x: torch.Tensor, z: torch.Tensor, weight: float, pool: int = 1) -> torch.Tensor:
    """MSGAN's mode-seeking term (Mao et al., "Mode Seeking Generative Adversarial Networks for Diverse
    Image Synthesis", Eq. 3, as 1 / ratio like its code): weight / (d(x_i, x_j) / d(z_i, z_j)) over the
    pairs (i, i + B // 2) of G's batch (drawn with one class: ``share_pair_classes``); d = mean |.|.
    pool > 1: the image distance on pool x pool averages (pixel noise then buys no diversity)."""
    h = x.shape[0] // 2
    if pool > 1 and x.dim() == 4:
        x = F.avg_pool2d(x, pool)
    ratio = (x[:h] - x[h:2 * h]).float().abs().mean() / (z[:h] - z[h:2 * h]).abs().mean()
    return weight / (ratio + 1e-5)


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


class NotPrepared(RuntimeError):
    """A model's preparation (``prepare``) did not run or its state was not restored."""


class Precision:
    """What a model's step needs from mixed precision: an autocast context and backward / step
    that scale the loss where a scaler is used. This base is plain fp32; the engine passes its own
    (``ssgan_fast.engine.amp.Amp``: bf16 / fp16 autocast, GradScaler, DDP all-reduce) and calls the
    scaler's ``update`` once per step itself - models never do."""
    mode = None

    def ctx(self):
        return contextlib.nullcontext()

    def backward(self, loss, params, retain_graph=False):
        loss.backward(inputs=params, retain_graph=retain_graph)

    def step(self, loss, opt, params, retain_graph=False):
        """zero_grad + backward(loss) into `params` + optimizer step (loss None: step only)."""
        if loss is not None:
            opt.zero_grad(set_to_none=True)
            self.backward(loss, params, retain_graph)
        opt.step()


FP32 = Precision()


class GANModel(nn.Module, abc.ABC):
    """The contract every model follows (the engine, ``generate`` and ``evaluate`` use only this).

    - ``Config``: the model's dataclass of settings (validated by ``config_from_dict``).
    - ``__init__(cfg, info)``: builds the networks and optimizers; ``info`` is the data set's
      description (kind, size, channels, num_classes, class_names[, num_attrs, attr_names]) - the
      data itself is never needed to build or to load a model.
    - ``optimizers()``: name -> optimizer, checkpointed by the engine.
    - ``generator_modules()``: the submodules forming the generator (the engine keeps EMA copies).
    - ``noise(n, generator=None, device=None)``: latent input for ``sample``.
    - ``sample(labels, noise, modules=None)``: images in [-1, 1] (or points) for `labels`;
      ``modules`` maps generator-module names to the networks to use (EMA copies).
    - ``train_step(batch, step, amp=None)``: one iteration of the paper's algorithm on a batch of
      static shape; returns the losses (tensors). ``amp`` is a ``Precision``; the engine owns the
      scaler update.
    - ``prepare(data, seed)`` / ``preparation``: what a model fits on the real data before
      training (prior clusters, intra-class clusters). ``data`` is a ``ssgan_fast.data.PrepData``:
      ``data.batches("all" | "labeled" | "unlabeled", limit)`` yields (images [B, C, H, W] in
      [-1, 1], split labels [B], -1 = unlabeled) streamed from the data set's files. The fitted
      state lives in buffers, so a checkpoint holds it and resume does not refit.
      ``preparation_missing()`` names what is not fitted yet; the engine (and ``require_prepared``
      in a model's step) refuses to train while it is not None.
    """
    name = "base"
    Config = None
    #: what ``prepare`` fits ("" = nothing); shown in logs and errors
    preparation = ""

    def __init__(self, cfg, data_info: dict):
        super().__init__()
        self.cfg, self.info = cfg, data_info

    @abc.abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        ...

    @abc.abstractmethod
    def generator_modules(self) -> list[str]:
        """Names of the submodules that form the generator (EMA copies them)."""

    @abc.abstractmethod
    def noise(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        ...

    @abc.abstractmethod
    def sample(self, labels: torch.Tensor, noise: torch.Tensor, modules: dict | None = None) -> torch.Tensor:
        ...

    truncation_note = "its noise has no mean latent to truncate towards"

    def truncate(self, noise: torch.Tensor, psi: float) -> torch.Tensor:
        """The truncation trick on noise() draws: towards the mean latent by psi in [0, 1] (1: unchanged).
        Models with Gaussian noise override it (psi z: the mean of N(0, I) is 0); the others say why not."""
        raise NotImplementedError(f"truncation does not apply to {self.name}: {self.truncation_note}")

    @abc.abstractmethod
    def train_step(self, batch: dict, step: int, amp: Precision | None = None) -> dict[str, torch.Tensor]:
        ...

    def _optimize(self, amp: Precision, loss, *names: str, step: bool = True, retain_graph: bool = False) -> None:
        """The optimizer update of a phase, the one way a model steps: zero the named optimizers' gradients,
        backward `loss` once into all their parameters (loss None: no backward), then step each in the order
        named (step=False: not yet - a phase whose graph another update still needs, retain_graph=True)."""
        opts = [self._opts[n] for n in names]
        params = [[p for g in o.param_groups for p in g["params"]] for o in opts]
        if len(opts) == 1 and step:
            amp.step(loss, opts[0], params[0], retain_graph)
            return
        if loss is not None:
            for o in opts:
                o.zero_grad(set_to_none=True)
            amp.backward(loss, [p for ps in params for p in ps], retain_graph)
        if step:
            for o, ps in zip(opts, params, strict=True):
                amp.step(None, o, ps)

    def prepare(self, data, seed: int = 0) -> None:
        """Fit what the model needs from the real data (default: nothing)."""

    def preparation_info(self) -> dict | None:
        """What prepare() fitted, for metrics.json (e.g. which features the clusters came from)."""
        return None

    def preparation_missing(self) -> str | None:
        """None when the model may train; else what ``prepare`` has not fitted yet."""
        return None

    def require_prepared(self) -> None:
        """Raise if the preparation did not run (checked once per model object: one host read of
        the fitted-state buffers, before any step is captured)."""
        if getattr(self, "_prepared_ok", False):
            return
        why = self.preparation_missing()
        if why:
            raise NotPrepared(f"{self.name}: cannot train: {why}")
        self._prepared_ok = True

    def graph_key(self, step: int):
        """What of a step's Python-side control flow and scalars depends on `step` (a hashable): the
        engine captures one CUDA graph per key (--graphs). None: run this step eagerly. Models whose
        every step does the same work keep this default."""
        return ()

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes [B] of real images: the classifier C where the model has one, else D's
        auxiliary classifier (AAM models)."""
        if hasattr(self, "C"):
            return self.C(x).argmax(1)
        if hasattr(self, "cls") and hasattr(self, "D"):
            return self.cls.logits(self.D(x)[1]).argmax(1)
        raise NotImplementedError(f"{self.name} has no classifier")

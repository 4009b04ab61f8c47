"""Op family 2: additive angular margin (aam-discriminator Eq. 8, ArcFace).

    aam_logits(x, weight, target, s=30.0, m=0.5) -> [B, C]
    aam_cross_entropy(x, weight, target, s=30.0, m=0.5, reduction="mean") -> loss (float32)

theta + m > pi is handled the standard insightface way (non-"easy" margin): for
cos theta <= cos(pi - m) the target logit is s * (cos theta - m sin m) instead of
s * cos(theta + m), which keeps it monotone in theta. See ``reference.arcface_margin``.
"""
from __future__ import annotations

import math

import torch

from .._backends import pick_backend
from . import reference
from ._checks import check_labels, check_pair
from .cosine_logits import aam_cross_entropy_op, aam_logits_op, default_chunk

__all__ = ["aam_logits", "aam_cross_entropy", "aam_chance_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check(x, weight, target, s, m):
    check_pair(x, weight, "x", "weight", "C")
    check_labels(target, "target", x.shape[0], weight.shape[0], x.device)
    _check_sm(s, m)


def _check_sm(s, m):
    if torch.is_tensor(s):  # a learnable scale: one floating value
        if s.numel() != 1 or not s.is_floating_point():
            raise TypeError(f"a tensor s must hold one floating value, got shape {tuple(s.shape)} {s.dtype}")
        if s.device.type != "meta" and not float(s.detach()) > 0:
            raise ValueError(f"s (the logit scale) must be > 0, got {float(s.detach())}")
        s = 1.0
    for v, name in ((s, "s"), (m, "m")):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise TypeError(f"{name} must be a float or (s) a one-value tensor, got {type(v).__name__}")
    if not s > 0:
        raise ValueError(f"s (the logit scale) must be > 0, got {s}")
    if not 0.0 <= m < 3.141592653589793:
        raise ValueError(f"m (the angular margin, radians) must be in [0, pi), got {m}")


def aam_logits(x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, s: float = 30.0,
               m: float = 0.5) -> torch.Tensor:
    """AAM logits [B, C] in the dtype of x: s cos theta_j, and s cos(theta_y + m) at the target.

    x: [B, D] features, weight: [C, D] class weights (no bias; both are L2-normalised here),
    target: [B] integer class indices. s: a float, or a one-value tensor (a learnable scale: the logits
    are those of s = 1 times s, so the gradient reaches s).
    """
    _check(x, weight, target, s, m)
    if torch.is_tensor(s):
        return aam_logits(x, weight, target, 1.0, m) * s.reshape(()).to(x.dtype)
    backend = pick_backend(x.device)
    if backend == "ref":
        with torch.autocast(x.device.type, enabled=False):  # same numerics as the fused paths
            return reference.aam_logits(x, weight, target.long(), float(s), float(m))
    return aam_logits_op(x, weight, target.long().contiguous(), float(s), float(m), backend)


def aam_cross_entropy(x: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, s: float = 30.0,
                      m: float = 0.5, reduction: str = "mean", chunk_size: int | None = None) -> torch.Tensor:
    """Cross-entropy of the AAM logits (aam-discriminator Eq. 8), fused: no [B, C] tensor outlives
    the call. With reduction "mean" / "sum", inputs that need grad and a weight of at most 2^24
    elements, the forward also computes dx and dW on row chunks of the logits tile (about 16 MiB
    of float32 at a time) and backward only scales them; otherwise only lse [B] is kept and
    backward recomputes the tile chunk by chunk over classes (chunk_size columns at a time).
    C can be 100 000 or more.

    x: [B, D] features (float32 / bfloat16 / float16, or float64 with a float64 weight); weight: [C, D]
    class weights (no bias; both L2-normalised here); target: [B] integer class indices in [0, C); s: the
    logit scale (> 0); m: the additive angular margin in radians, [0, pi); reduction: "mean" | "sum" |
    "none"; chunk_size: class columns per recomputed tile in backward (default: sized to the memory).
    A one-value tensor s (a learnable scale) takes the unfused path: the [B, C] logits of s = 1 (the op
    ``aam_logits`` on the same backend), times s, into torch's cross-entropy, so the gradient reaches s.
    The loss starts near ``aam_chance_loss(C, s, m)`` (16.6 at C = 10, s = 30, m = 0.5), not log C:
    ``nn.AAMHead`` calibrates it for a softmax-tuned recipe (docs/aam_dropin.md).

    Returns a float32 loss (float64 for float64 inputs): a scalar for reduction "mean" / "sum",
    [B] for "none".
    """
    _check(x, weight, target, s, m)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    C = weight.shape[0]
    if chunk_size is None:
        chunk_size = default_chunk(x.shape[0], C)
    elif not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if torch.is_tensor(s):
        z = aam_logits(x, weight, target, 1.0, m)
        z = z if z.dtype == torch.float64 else z.float()
        return torch.nn.functional.cross_entropy(z * s.reshape(()).to(z.dtype), target.long(), reduction=reduction)
    backend = pick_backend(x.device)
    if backend == "ref":
        with torch.autocast(x.device.type, enabled=False):  # same numerics as the fused paths
            out = reference.aam_cross_entropy(x, weight, target.long(), float(s), float(m), reduction)
        return out if out.dtype == torch.float64 else out.float()
    need_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    loss = aam_cross_entropy_op(x, weight, target.long().contiguous(), float(s), float(m), reduction, need_grad,
                                backend, int(chunk_size))
    return loss if loss.dtype == torch.float64 else loss.float()


def aam_chance_loss(num_classes: int, s: float = 30.0, m: float = 0.5) -> float:
    """The AAM cross-entropy (Eq. 8) of a feature at right angles to every class weight - where an
    untrained head starts: log(1 + (C - 1) exp(-s cos(pi/2 + m))), with the op's form of the target
    logit where pi/2 + m passes pi. The softmax cross-entropy starts at log C instead; for s = 30,
    m = 0.5, C = 10 this is 16.6 against 2.3, so a lambda_cls tuned for softmax weighs the AAM term
    about 7x more. ``AAMHead(calibrate=True)`` divides its loss by this ratio."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    _check_sm(s, m)
    theta = math.pi / 2
    t = math.cos(theta + m) if theta + m <= math.pi else math.cos(theta) - m * math.sin(math.pi - m)
    return math.log1p((num_classes - 1) * math.exp(-s * t))


def aot_cases(full: bool):
    """(label, thunk) pairs over the Triton dispatch of this family's ops, on meta tensors (tools/aot.py)."""
    import torch

    from ._meta import backward, idx, t
    from .cosine_logits import aot_grid
    for (xd, wd), B, D, K, lab in aot_grid(full):
        def aam(B=B, D=D, K=K, xd=xd, wd=wd):
            backward(aam_logits(t(B, D, dtype=xd, grad=True), t(K, D, dtype=wd, grad=True), idx(B)))
            for red in ("mean", "sum", "none"):
                backward(aam_cross_entropy(t(B, D, dtype=xd, grad=True), t(K, D, dtype=wd, grad=True),
                                           idx(B), reduction=red))
            with torch.no_grad():
                aam_cross_entropy(t(B, D, dtype=xd), t(K, D, dtype=wd), idx(B))
        yield f"aam {lab}", aam

"""Op family 1: prototype assignment (SphericGAN Eq. 1-2, LCP-GAN Eq. 2-3).

    cosine_softmax(x, protos, tau=1.0, group=None) -> probs [B, K]
    clustering_loss(x, protos, tau=1.0, lam=4.0)   -> scalar (float32)
    prototype_ema_update(protos, feats, weights, momentum) -> protos (in place)

The meaning of each op is its plain-torch definition in ``ssgan_fast.ops.reference``; the fused
implementations (C++ CPU, CUDA, Triton) are chosen by ``ssgan_fast._backends.pick_backend``.
"""
from __future__ import annotations

import torch

from .._backends import pick_backend
from . import reference
from ._checks import check_float_matrix, check_labels, check_pair, check_positive, check_tensor, values_checkable
from .cosine_logits import clustering_loss_op, cosine_softmax_op, prototype_ema_update_op

__all__ = ["cosine_softmax", "clustering_loss", "prototype_ema_update", "group_offsets"]


def _tau_args(tau, x: torch.Tensor):
    """(tau tensor or None, 1 / tau as a float): a float tau creates no tensor."""
    check_positive(tau, "tau")
    if isinstance(tau, torch.Tensor):
        return tau.to(device=x.device).reshape(()), 1.0
    return None, 1.0 / float(tau)


def group_offsets(counts) -> torch.Tensor:
    """Offsets table [C + 1] for `group` from the number of prototypes of each class.

    counts = [2, 3, 1] -> offsets [0, 2, 5, 6]: class 0 owns prototypes 0-1, class 1 owns 2-4, ...
    """
    counts = torch.as_tensor(counts, dtype=torch.int64)
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError("counts must be a non-empty 1-D sequence of per-class prototype counts")
    if bool((counts < 1).any()):
        raise ValueError(f"every class needs at least one prototype, got counts {counts.tolist()}")
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def _group_bounds(group, x: torch.Tensor, K: int):
    if not (isinstance(group, (tuple, list)) and len(group) == 2):
        raise TypeError("group must be a pair (labels[B], offsets[C + 1]); see group_offsets()")
    labels, offsets = group
    check_tensor(offsets, "group offsets")
    if offsets.dim() != 1 or offsets.numel() < 2:
        raise ValueError(f"group offsets must be 1-D [C + 1] with C >= 1, got shape {tuple(offsets.shape)}")
    if offsets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"group offsets must be int64 or int32, got {offsets.dtype}")
    if offsets.device != x.device:
        raise ValueError(f"group offsets are on {offsets.device} but x is on {x.device}")
    C = offsets.numel() - 1
    check_labels(labels, "group labels", x.shape[0], C, x.device)
    if values_checkable():
        d = offsets[1:] - offsets[:-1]
        if int(offsets[0]) < 0 or int(offsets[-1]) > K or bool((d < 0).any()):
            raise ValueError(f"group offsets must be non-decreasing within [0, K = {K}], got {offsets.tolist()}")
        if bool((d[labels.long()] == 0).any()):
            raise ValueError("group labels name a class that owns no prototype (offsets[y] == offsets[y + 1])")
    labels = labels.long()
    offsets = offsets.long()
    return offsets[labels].contiguous(), offsets[labels + 1].contiguous()


def cosine_softmax(x: torch.Tensor, protos: torch.Tensor, tau=1.0, group=None) -> torch.Tensor:
    """Soft assignment of rows of x to prototypes: softmax_k(cos(x_b, P_k) / tau).

    SphericGAN Eq. (1) (tau = 1) and LCP-GAN Eq. (3) (tau = delta, restricted to the class's clusters).

    Args:
        x: [B, D] features (float32 / bfloat16 / float16 / float64).
        protos: [K, D] prototypes (not necessarily normalised; they are normalised here).
        tau: temperature > 0, a float or a scalar tensor (learnable: it gets a gradient).
        group: optional (labels[B], offsets[C + 1]); row b only sees prototypes
            offsets[labels[b]] .. offsets[labels[b] + 1] - 1, the others get probability 0.
            Build offsets from per-class counts with ``group_offsets``.
    Returns:
        probabilities [B, K] in the dtype of x; gradients flow to x, protos and tau.
    """
    check_pair(x, protos, "x", "protos", "K")
    tau_t, scale = _tau_args(tau, x)
    lo, hi = _group_bounds(group, x, protos.shape[0]) if group is not None else (None, None)
    backend = pick_backend(x.device)
    if backend == "ref":
        with torch.autocast(x.device.type, enabled=False):  # same numerics as the fused paths
            return reference.cosine_softmax(x, protos, tau, group)
    return cosine_softmax_op(x, protos, tau_t, scale, lo, hi, backend)


def clustering_loss(x: torch.Tensor, protos: torch.Tensor, tau=1.0, lam: float = 4.0) -> torch.Tensor:
    """SphericGAN Eq. (2): mean row entropy of phi - lam * sum_k (1/K) log(mean_b phi_k).

    phi = cosine_softmax(x, protos, tau). The entropy is computed inside the softmax kernel (no
    extra pass over [B, K]). Returns a float32 scalar (float64 for float64 inputs); gradients flow
    to x, protos and tau.
    """
    check_pair(x, protos, "x", "protos", "K")
    tau_t, scale = _tau_args(tau, x)
    if not isinstance(lam, (int, float)):
        raise TypeError(f"lam must be a float, got {type(lam).__name__}")
    backend = pick_backend(x.device)
    if backend == "ref":
        with torch.autocast(x.device.type, enabled=False):  # same numerics as the fused paths
            out = reference.clustering_loss(x, protos, tau, lam)
        return out if out.dtype == torch.float64 else out.float()
    return clustering_loss_op(x, protos, tau_t, scale, float(lam), backend)


def prototype_ema_update(protos: torch.Tensor, feats: torch.Tensor, weights: torch.Tensor,
                         momentum: float) -> torch.Tensor:
    """LCP-GAN Eq. (2) over a batch, in place and without autograd:

        rho_k <- (1 - mu) rho_k + mu * (sum_n u_nk f(x_n)) / (sum_n u_nk)

    protos: [K, D] (contiguous), feats: [N, D], weights: [N, K] non-negative memberships u
    (e.g. cosine_softmax(feats, protos, tau, group)), momentum mu in [0, 1]. Prototypes with no
    weight in the batch are unchanged. Returns protos.
    """
    check_pair(feats, protos, "feats", "protos", "K")
    check_float_matrix(weights, "weights", "N")
    if weights.shape != (feats.shape[0], protos.shape[0]):
        raise ValueError(f"weights must have shape [N, K] = [{feats.shape[0]}, {protos.shape[0]}], "
                         f"got {tuple(weights.shape)}")
    if weights.device != protos.device:
        raise ValueError(f"weights are on {weights.device} but protos are on {protos.device}")
    if not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be a float in [0, 1], got {momentum!r}")
    if not protos.is_contiguous():
        raise ValueError("protos must be contiguous (it is updated in place)")
    backend = pick_backend(protos.device)
    with torch.no_grad():
        if backend == "ref":
            with torch.autocast(protos.device.type, enabled=False):  # same numerics as the fused paths
                return reference.prototype_ema_update(protos, feats, weights, momentum)
        prototype_ema_update_op(protos, feats, weights, float(momentum), backend)
    return protos


def aot_cases(full: bool):
    """(label, thunk) pairs over the Triton dispatch of this family's ops, on meta tensors (tools/aot.py)."""
    from ._meta import backward, idx, t
    from .cosine_logits import aot_grid
    for (xd, wd), B, D, K, lab in aot_grid(full):
        def softmax(B=B, D=D, K=K, xd=xd, wd=wd):
            backward(cosine_softmax(t(B, D, dtype=xd, grad=True), t(K, D, dtype=wd, grad=True), 0.5))
            tau = torch.empty((), device="meta").requires_grad_(True)
            backward(cosine_softmax(t(B, D, dtype=xd, grad=True), t(K, D, dtype=wd), tau))
            if K >= 2 and K <= 1000:  # LCP-GAN: up to 3 prototypes of each class
                counts = [min(3, K - 3 * c) for c in range((K + 2) // 3)]
                off = group_offsets(counts).to("meta")
                backward(cosine_softmax(t(B, D, dtype=xd, grad=True), t(K, D, dtype=wd, grad=True), 0.1,
                                        group=(idx(B), off)))
            backward(clustering_loss(t(B, D, dtype=xd, grad=True), t(K, D, dtype=wd, grad=True), 1.0, 4.0))
            with torch.no_grad():
                cosine_softmax(t(B, D, dtype=xd), t(K, D, dtype=wd))

        def ema(B=B, D=D, K=K, xd=xd, wd=wd):
            if K <= 10_000:
                prototype_ema_update(t(K, D, dtype=wd), t(B, D, dtype=xd), t(B, K, dtype=xd), 0.1)

        yield f"cosine_softmax {lab}", softmax
        yield f"prototype_ema {lab}", ema

"""Host side of the fused cosine-logits core, and the custom ops built on it.

Both op families - prototype assignment (cosine softmax) and the AAM margin - are
"normalised linear + softmax" ops. With rx_b = 1 / max(||x_b||, eps), rw_k likewise,
  cos_bk  = rx_b rw_k (x_b . w_k)
  logit   = s * cos      (s = 1 / tau, or the AAM scale with cos(theta_y + m) at the target).
Every backend computes the raw dot products with the vendor GEMM (cuBLAS / MKL, fp32
accumulation) into a float32 tile, and one fused kernel per pass does the rest in place:
scaling, margin, masking, softmax / online log-sum-exp, entropy (forward); the logit
gradient, margin derivative and the row/column sums of dcos * cos (backward). No [B, K]
logits tensor is kept for backward: cross-entropy saves only lse [B] and recomputes the
tile chunk by chunk over classes, so the memory of aam_cross_entropy is O(B * chunk).

Backward of the normalisation (k_x = rx^2 where ||x|| > eps, else 0):
  dx_b = sum_k e_bk w_k - k_x x_b sum_k dcos_bk cos_bk,    e_bk = dcos_bk rx_b rw_k
  dw_k = sum_b e_bk x_b - k_w w_k sum_b dcos_bk cos_bk.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._backends import kernels
from .reference import NORM_EPS, PBAR_MIN

PROBS, LOGITS, CROSS_ENTROPY = 0, 1, 2
_INV_EPS = 1.0 / NORM_EPS


def default_chunk(B: int, K: int) -> int:
    """Columns per cross-entropy chunk: a float32 tile of about 16 MiB."""
    return int(max(1024, min(K, (1 << 22) // max(B, 1))))


def compute_dtype(x: Tensor, w: Tensor, backend: str) -> torch.dtype:
    """float64 when an input is float64 (C++ / CUDA kernels; Triton computes in float32), else float32.

    Losses and the internal statistics are returned in this dtype."""
    if backend != "triton" and torch.float64 in (x.dtype, w.dtype):
        return torch.float64
    return torch.float32


def _inv_norm(t: Tensor, dtype: torch.dtype) -> Tensor:
    n = torch.linalg.vector_norm(t, dim=1, dtype=dtype)
    return n.clamp_min(NORM_EPS).reciprocal()


def _norm_backward_factor(r: Tensor) -> Tensor:
    # d(1/max(n, eps))/dv = -v / n^3 where n > eps (r < 1/eps), 0 where the clamp is active.
    return torch.where(r < _INV_EPS, r * r, torch.zeros_like(r))


def _empty_index(t: Tensor) -> Tensor:
    return torch.empty(0, dtype=torch.int64, device=t.device)


def host_forward(backend, x, w, scale, margin, target, lo, hi, mode, chunk):
    """Returns (dots-turned-output or None, stats[3, B], rx, rw)."""
    kern = kernels(backend)
    cdt = compute_dtype(x, w, backend)
    xf = x.to(cdt).contiguous()
    scale = scale.to(cdt)
    B, K = x.shape[0], w.shape[0]
    rx, rw = _inv_norm(xf, cdt), _inv_norm(w, cdt)
    stats = torch.zeros(3, B, dtype=cdt, device=x.device)
    if mode != CROSS_ENTROPY:
        dots = torch.mm(xf, w.to(cdt).t())
        kern.fwd_rows(dots, rx, rw, scale, margin, target, lo, hi, 0, mode, stats)
        return dots, stats, rx, rw
    stats[0].fill_(float("-inf"))
    for c0 in range(0, K, chunk):
        c1 = min(K, c0 + chunk)
        dots = torch.mm(xf, w[c0:c1].to(cdt).t())
        kern.fwd_rows(dots, rx, rw[c0:c1], scale, margin, target, lo, hi, c0, mode, stats)
    return None, stats, rx, rw


def host_backward(backend, x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, grad, chunk):
    """Returns (dx, dw, sum_bk dcos*cos)."""
    kern = kernels(backend)
    cdt = compute_dtype(x, w, backend)
    xf = x.to(cdt).contiguous()
    scale, saved, grad = scale.to(cdt), saved.to(cdt).contiguous(), grad.to(cdt).contiguous()
    B, D = xf.shape
    K = w.shape[0]
    dx = torch.zeros(B, D, dtype=cdt, device=x.device)
    dw = torch.empty(K, D, dtype=cdt, device=x.device)
    rowdot = torch.zeros(B, dtype=cdt, device=x.device)
    kw = _norm_backward_factor(rw)
    step = chunk if mode == CROSS_ENTROPY else K
    for c0 in range(0, K, step):
        c1 = min(K, c0 + step)
        wc = w[c0:c1].to(cdt)
        dots = torch.mm(xf, wc.t())
        coldot = torch.zeros(c1 - c0, dtype=cdt, device=x.device)
        kern.bwd_rows(dots, rx, rw[c0:c1], scale, margin, target, lo, hi, c0, mode, saved, grad, rowdot, coldot)
        dx.addmm_(dots, wc)
        dwc = dw[c0:c1]
        torch.mm(dots.t(), xf, out=dwc)
        dwc.addcmul_(wc, (kw[c0:c1] * coldot)[:, None], value=-1.0)
    dx.addcmul_(xf, (_norm_backward_factor(rx) * rowdot)[:, None], value=-1.0)
    return dx.to(x.dtype), dw.to(w.dtype), rowdot.sum()


# ----------------------------------------------------------------------------- custom ops

@torch.library.custom_op("ssgan_fast::cosine_logits_backward", mutates_args=())
def cosine_logits_backward(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, scale: Tensor, margin: float,
                           target: Tensor, lo: Tensor, hi: Tensor, mode: int, saved: Tensor, grad: Tensor,
                           backend: str, chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    return host_backward(backend, x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, grad, chunk)


@cosine_logits_backward.register_fake
def _(x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, grad, backend, chunk):
    return torch.empty_like(x), torch.empty_like(w), x.new_empty((), dtype=compute_dtype(x, w, backend))


def _scale_of_tau(tau: Tensor) -> Tensor:
    return tau.detach().double().reshape(1).reciprocal()


def _zeros_if_none(g, like):
    return torch.zeros_like(like) if g is None else g


# cosine_softmax ---------------------------------------------------------------

@torch.library.custom_op("ssgan_fast::cosine_softmax", mutates_args=())
def cosine_softmax_op(x: Tensor, protos: Tensor, tau: Tensor, lo: Tensor, hi: Tensor,
                      backend: str) -> tuple[Tensor, Tensor, Tensor]:
    dots, _, rx, rw = host_forward(backend, x, protos, _scale_of_tau(tau), 0.0, _empty_index(x), lo, hi, PROBS, 0)
    return dots.to(x.dtype), rx, rw


@cosine_softmax_op.register_fake
def _(x, protos, tau, lo, hi, backend):
    B, K = x.shape[0], protos.shape[0]
    cdt = compute_dtype(x, protos, backend)
    return x.new_empty(B, K), x.new_empty(B, dtype=cdt), x.new_empty(K, dtype=cdt)


def _cs_setup(ctx, inputs, output):
    x, protos, tau, lo, hi, backend = inputs
    probs, rx, rw = output
    ctx.backend = backend
    ctx.save_for_backward(x, protos, tau, lo, hi, probs, rx, rw)


def _cs_backward(ctx, gprobs, _grx, _grw):
    x, protos, tau, lo, hi, probs, rx, rw = ctx.saved_tensors
    gprobs = _zeros_if_none(gprobs, probs)
    dx, dw, rd = torch.ops.ssgan_fast.cosine_logits_backward(
        x, protos, rx, rw, _scale_of_tau(tau), 0.0, _empty_index(x), lo, hi, PROBS, probs, gprobs, ctx.backend, 0)
    dtau = (-rd.double() / tau.detach().double()).reshape(tau.shape).to(tau.dtype) if ctx.needs_input_grad[2] else None
    return dx, dw, dtau, None, None, None


torch.library.register_autograd("ssgan_fast::cosine_softmax", _cs_backward, setup_context=_cs_setup)


# clustering_loss --------------------------------------------------------------

@torch.library.custom_op("ssgan_fast::clustering_loss", mutates_args=())
def clustering_loss_op(x: Tensor, protos: Tensor, tau: Tensor, lam: float,
                       backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    e = _empty_index(x)
    probs, stats, rx, rw = host_forward(backend, x, protos, _scale_of_tau(tau), 0.0, e, e, e, PROBS, 0)
    pbar = probs.mean(0)
    loss = stats[1].mean() - lam * torch.log(pbar.clamp_min(PBAR_MIN)).mean()
    return loss, probs, rx, rw


@clustering_loss_op.register_fake
def _(x, protos, tau, lam, backend):
    B, K = x.shape[0], protos.shape[0]
    cdt = compute_dtype(x, protos, backend)
    return (x.new_empty((), dtype=cdt), x.new_empty(B, K, dtype=cdt), x.new_empty(B, dtype=cdt),
            x.new_empty(K, dtype=cdt))


def _cl_setup(ctx, inputs, output):
    x, protos, tau, lam, backend = inputs
    _, probs, rx, rw = output
    ctx.backend, ctx.lam = backend, lam
    ctx.save_for_backward(x, protos, tau, probs, rx, rw)


def _cl_backward(ctx, gloss, _gp, _grx, _grw):
    x, protos, tau, probs, rx, rw = ctx.saved_tensors
    B, K = probs.shape
    if gloss is None:
        gloss = probs.new_zeros(())
    # dL/dphi_bk of Eq. (2): -(log phi_bk + 1) / B  -  lam / (K B pbar_k)  (0 where pbar is clamped).
    pbar = probs.mean(0)
    logp = torch.where(probs > 0, torch.log(probs), torch.zeros_like(probs))
    dprior = torch.where(pbar >= PBAR_MIN, ctx.lam / (K * B) / pbar.clamp_min(PBAR_MIN), torch.zeros_like(pbar))
    G = gloss.to(probs.dtype) * (-(logp + 1.0) / B - dprior[None, :])
    e = _empty_index(x)
    dx, dw, rd = torch.ops.ssgan_fast.cosine_logits_backward(
        x, protos, rx, rw, _scale_of_tau(tau), 0.0, e, e, e, PROBS, probs, G, ctx.backend, 0)
    dtau = (-rd.double() / tau.detach().double()).reshape(tau.shape).to(tau.dtype) if ctx.needs_input_grad[2] else None
    return dx, dw, dtau, None, None


torch.library.register_autograd("ssgan_fast::clustering_loss", _cl_backward, setup_context=_cl_setup)


# aam_logits -------------------------------------------------------------------

@torch.library.custom_op("ssgan_fast::aam_logits", mutates_args=())
def aam_logits_op(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float,
                  backend: str) -> tuple[Tensor, Tensor, Tensor]:
    e = _empty_index(x)
    scale = torch.full((1,), s, dtype=torch.float64, device=x.device)
    dots, _, rx, rw = host_forward(backend, x, weight, scale, m, target, e, e, LOGITS, 0)
    return dots.to(x.dtype), rx, rw


@aam_logits_op.register_fake
def _(x, weight, target, s, m, backend):
    B, C = x.shape[0], weight.shape[0]
    cdt = compute_dtype(x, weight, backend)
    return x.new_empty(B, C), x.new_empty(B, dtype=cdt), x.new_empty(C, dtype=cdt)


def _al_setup(ctx, inputs, output):
    x, weight, target, s, m, backend = inputs
    _, rx, rw = output
    ctx.backend, ctx.s, ctx.m = backend, s, m
    ctx.save_for_backward(x, weight, target, rx, rw)


def _al_backward(ctx, glogits, _grx, _grw):
    x, weight, target, rx, rw = ctx.saved_tensors
    glogits = _zeros_if_none(glogits, x.new_empty(x.shape[0], weight.shape[0]))
    e = _empty_index(x)
    scale = torch.full((1,), ctx.s, dtype=torch.float32, device=x.device)
    dx, dw, _ = torch.ops.ssgan_fast.cosine_logits_backward(
        x, weight, rx, rw, scale, ctx.m, target, e, e, LOGITS, e.float(), glogits, ctx.backend, 0)
    return dx, dw, None, None, None, None


torch.library.register_autograd("ssgan_fast::aam_logits", _al_backward, setup_context=_al_setup)


# aam_cross_entropy ---------------------------------------------------------------

@torch.library.custom_op("ssgan_fast::aam_cross_entropy", mutates_args=())
def aam_cross_entropy_op(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float, backend: str,
                         chunk: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    e = _empty_index(x)
    scale = torch.full((1,), s, dtype=torch.float64, device=x.device)
    _, stats, rx, rw = host_forward(backend, x, weight, scale, m, target, e, e, CROSS_ENTROPY, chunk)
    lse = stats[0] + torch.log(stats[1])
    return lse - stats[2], lse, rx, rw


@aam_cross_entropy_op.register_fake
def _(x, weight, target, s, m, backend, chunk):
    B, C = x.shape[0], weight.shape[0]
    cdt = compute_dtype(x, weight, backend)
    return x.new_empty(B, dtype=cdt), x.new_empty(B, dtype=cdt), x.new_empty(B, dtype=cdt), x.new_empty(C, dtype=cdt)


def _ace_setup(ctx, inputs, output):
    x, weight, target, s, m, backend, chunk = inputs
    _, lse, rx, rw = output
    ctx.backend, ctx.s, ctx.m, ctx.chunk = backend, s, m, chunk
    ctx.save_for_backward(x, weight, target, lse, rx, rw)


def _ace_backward(ctx, gloss, _glse, _grx, _grw):
    x, weight, target, lse, rx, rw = ctx.saved_tensors
    gloss = _zeros_if_none(gloss, lse)
    e = _empty_index(x)
    scale = torch.full((1,), ctx.s, dtype=torch.float32, device=x.device)
    dx, dw, _ = torch.ops.ssgan_fast.cosine_logits_backward(
        x, weight, rx, rw, scale, ctx.m, target, e, e, CROSS_ENTROPY, lse, gloss, ctx.backend, ctx.chunk)
    return dx, dw, None, None, None, None, None


torch.library.register_autograd("ssgan_fast::aam_cross_entropy", _ace_backward, setup_context=_ace_setup)


# prototype_ema_update ---------------------------------------------------------

@torch.library.custom_op("ssgan_fast::prototype_ema_update", mutates_args=("protos",))
def prototype_ema_update_op(protos: Tensor, feats: Tensor, weights: Tensor, momentum: float, backend: str) -> None:
    w = weights.float()
    sums = torch.mm(w.t(), feats.float()).contiguous()  # float32 sums: the kernels' contract
    wsum = w.sum(0).contiguous()
    kernels(backend).ema_rows(protos, sums, wsum, momentum)


@prototype_ema_update_op.register_fake
def _(protos, feats, weights, momentum, backend):
    return None

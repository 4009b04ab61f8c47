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


def triton_forward(x, w, scale, margin, target, lo, hi, mode, chunk):
    """Host of the Triton backend; same contract as ssgan_fast_C::cosine_logits_forward.

    Returns (out, stats[3, B], rx, rw): out = probabilities (mode 0) / logits (mode 1) as a
    float tile, or the per-row loss (mode 2, with lse in stats[0])."""
    kern = kernels("triton")
    cdt = compute_dtype(x, w, "triton")
    xf = x.to(cdt).contiguous()
    scale = scale.to(cdt).reshape(1)
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
    stats[0].add_(stats[1].log())
    return stats[0] - stats[2], stats, rx, rw


def triton_backward(x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, lse, grad, chunk):
    """Host of the Triton backend; same contract as ssgan_fast_C::cosine_logits_backward.

    Returns (dx, dw, sum_bk dcos * cos)."""
    kern = kernels("triton")
    cdt = compute_dtype(x, w, "triton")
    xf = x.to(cdt).contiguous()
    scale = scale.to(cdt).reshape(1)
    saved, lse, grad = saved.to(cdt).contiguous(), lse.to(cdt).contiguous(), grad.to(cdt).contiguous()
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
        # mode 0 recovers cos from the saved probabilities: no GEMM recompute
        dots = torch.empty(B, c1 - c0, dtype=cdt, device=x.device) if mode == PROBS else torch.mm(xf, wc.t())
        coldot = torch.zeros(c1 - c0, dtype=cdt, device=x.device)
        kern.bwd_rows(dots, rx, rw[c0:c1], scale, margin, target, lo, hi, c0, mode, saved, lse, grad, rowdot, coldot)
        dx.addmm_(dots, wc)
        dwc = dw[c0:c1]
        torch.mm(dots.t(), xf, out=dwc)
        dwc.addcmul_(wc, (kw[c0:c1] * coldot)[:, None], value=-1.0)
    dx.addcmul_(xf, (_norm_backward_factor(rx) * rowdot)[:, None], value=-1.0)
    return dx.to(x.dtype), dw.to(w.dtype), rowdot.sum()


def triton_ce_fused(x, w, scale, margin, target, weight, chunk):
    """Host of the Triton backend; same contract as ssgan_fast_C::cosine_logits_ce_fused:
    cross-entropy forward that also writes dx, dw for dL/dloss_b = weight (row chunks of `chunk`).

    Returns (loss, lse, rx, rw, dx, dw)."""
    kern = kernels("triton")
    cdt = compute_dtype(x, w, "triton")
    xf, wf = x.to(cdt).contiguous(), w.to(cdt).contiguous()
    scale = scale.to(cdt).reshape(1)
    B, D = xf.shape
    K = wf.shape[0]
    rx, rw = _inv_norm(xf, cdt), _inv_norm(wf, cdt)
    kx, kw = _norm_backward_factor(rx), _norm_backward_factor(rw)
    loss = torch.empty(B, dtype=cdt, device=x.device)
    lse = torch.empty(B, dtype=cdt, device=x.device)
    dx = torch.empty(B, D, dtype=cdt, device=x.device)
    dw = torch.zeros(K, D, dtype=cdt, device=x.device)
    coldot = torch.zeros(K, dtype=cdt, device=x.device)
    for r0 in range(0, B, chunk):
        r1 = min(B, r0 + chunk)
        xc = xf[r0:r1]
        dots = torch.mm(xc, wf.t())
        stats = torch.empty(3, r1 - r0, dtype=cdt, device=x.device)
        rowdot = torch.zeros(r1 - r0, dtype=cdt, device=x.device)
        kern.ce_rows(dots, rx[r0:r1], rw, scale, margin, target[r0:r1], weight, stats, rowdot, coldot)
        lse[r0:r1] = stats[0]
        loss[r0:r1] = stats[1]
        torch.mm(dots, wf, out=dx[r0:r1])
        dx[r0:r1].addcmul_(xc, (kx[r0:r1] * rowdot)[:, None], value=-1.0)
        dw.addmm_(dots.t(), xc)
    dw.addcmul_(wf, (kw * coldot)[:, None], value=-1.0)
    return loss, lse, rx, rw, dx.to(x.dtype), dw.to(w.dtype)


def host(backend: str):
    """(forward, backward, ce_fused) host functions of a backend."""
    if backend == "triton":
        return triton_forward, triton_backward, triton_ce_fused
    ops = torch.ops.ssgan_fast_C
    return ops.cosine_logits_forward, ops.cosine_logits_backward, ops.cosine_logits_ce_fused


def default_row_chunk(B: int, K: int) -> int:
    """Rows per chunk of the fused cross-entropy: a [rows, K] float32 tile of about 16 MiB."""
    return int(max(1, min(B, (1 << 22) // max(K, 1))))


# ------------------------------------------------------------------------------ autograd
# Every op exists twice with the same forward / setup / backward bodies:
#  - an eager torch.autograd.Function (a few microseconds of overhead), used outside compilation;
#  - a torch.library custom op with fake kernel and registered autograd, used while torch.compile
#    traces (one opaque graph node, no graph break).


@torch.library.custom_op("ssgan_fast::cosine_logits_backward", mutates_args=())
def _backward_op(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, scale: Tensor, margin: float, target: Tensor,
                 lo: Tensor, hi: Tensor, mode: int, saved: Tensor, lse: Tensor, grad: Tensor, backend: str,
                 chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, rd = host(backend)[1](x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, lse, grad, chunk)
    return dx, dw, rd


@_backward_op.register_fake
def _(x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, lse, grad, backend, chunk):
    return torch.empty_like(x), torch.empty_like(w), x.new_empty((), dtype=compute_dtype(x, w, backend))


def _bwd_fn(backend: str, traced: bool):
    if not traced:
        return host(backend)[1]

    def call(x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, lse, grad, chunk):
        return _backward_op(x, w, rx, rw, scale, margin, target, lo, hi, mode, saved, lse, grad, backend, chunk)
    return call


def _scale_of_tau(tau: Tensor) -> Tensor:
    return tau.detach().double().reshape(1).reciprocal()


def _scale_of(s: float, x: Tensor) -> Tensor:
    return torch.full((1,), s, dtype=torch.float64, device=x.device)


def _zeros_if_none(g, shape, like):
    return like.new_zeros(shape) if g is None else g


def _dtau(rd: Tensor, tau: Tensor) -> Tensor:
    # logit = cos / tau: dL/dtau = -sum(dlogit * cos) / tau^2 = -sum(dcos * cos) / tau
    return (-rd.double() / tau.detach().double()).reshape(tau.shape).to(tau.dtype)


def _define(name: str, fwd, fake, setup, grads):
    """Build the eager Function and the custom op of one op from shared bodies.

    fwd(*inputs) -> outputs; setup(ctx, inputs, outputs) saves what backward needs;
    grads(ctx, bwd, *grad_outputs) -> input grads, with bwd the backward host call."""
    op = torch.library.custom_op(f"ssgan_fast::{name}", mutates_args=())(fwd)
    op.register_fake(fake)
    op.register_autograd(lambda ctx, *g: grads(ctx, _bwd_fn(ctx.backend, True), *g), setup_context=setup)

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            out = fwd(*inputs)
            setup(ctx, inputs, out)
            return out

        @staticmethod
        def backward(ctx, *g):
            return grads(ctx, _bwd_fn(ctx.backend, False), *g)

    Fn.__name__ = f"{name}_function"

    def call(*inputs):
        if torch.compiler.is_compiling():
            return op(*inputs)
        return Fn.apply(*inputs)
    call.op = op
    return call


# cosine_softmax ---------------------------------------------------------------

def _probs_outputs(x, probs, stats):
    """(probs in x's dtype, float probs for backward where that differs - else empty -, lse)."""
    out = probs.to(x.dtype)
    return out, (probs if out.dtype != probs.dtype else probs.new_empty(0)), stats[0].clone()


def _saved_probs(out, extra):
    return extra if extra.numel() else out


def _cs_fwd(x: Tensor, protos: Tensor, tau: Tensor, lo: Tensor, hi: Tensor,
            backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    dots, stats, rx, rw = host(backend)[0](x, protos, _scale_of_tau(tau), 0.0, _empty_index(x), lo, hi, PROBS, 0)
    return (*_probs_outputs(x, dots, stats), rx, rw)


def _cs_fake(x, protos, tau, lo, hi, backend):
    B, K = x.shape[0], protos.shape[0]
    cdt = compute_dtype(x, protos, backend)
    extra = x.new_empty(B, K, dtype=cdt) if x.dtype != cdt else x.new_empty(0, dtype=cdt)
    return x.new_empty(B, K), extra, x.new_empty(B, dtype=cdt), x.new_empty(B, dtype=cdt), x.new_empty(K, dtype=cdt)


def _cs_setup(ctx, inputs, output):
    x, protos, tau, lo, hi, backend = inputs
    probs, extra, lse, rx, rw = output
    ctx.backend = backend
    ctx.save_for_backward(x, protos, tau, lo, hi, _saved_probs(probs, extra), lse, rx, rw)


def _cs_grads(ctx, bwd, gprobs, *_):
    x, protos, tau, lo, hi, probs, lse, rx, rw = ctx.saved_tensors
    gprobs = _zeros_if_none(gprobs, probs.shape, probs)
    dx, dw, rd = bwd(x, protos, rx, rw, _scale_of_tau(tau), 0.0, _empty_index(x), lo, hi, PROBS, probs, lse, gprobs,
                     0)
    return dx, dw, _dtau(rd, tau) if ctx.needs_input_grad[2] else None, None, None, None


cosine_softmax_op = _define("cosine_softmax", _cs_fwd, _cs_fake, _cs_setup, _cs_grads)


# clustering_loss --------------------------------------------------------------

def _cl_fwd(x: Tensor, protos: Tensor, tau: Tensor, lam: float,
            backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    e = _empty_index(x)
    probs, stats, rx, rw = host(backend)[0](x, protos, _scale_of_tau(tau), 0.0, e, e, e, PROBS, 0)
    pbar = probs.mean(0)
    # SphericGAN Eq. (2); stats[1] is the per-row entropy computed by the softmax kernel
    loss = stats[1].mean() - lam * torch.log(pbar.clamp_min(PBAR_MIN)).mean()
    return loss, probs, stats[0].clone(), rx, rw


def _cl_fake(x, protos, tau, lam, backend):
    B, K = x.shape[0], protos.shape[0]
    cdt = compute_dtype(x, protos, backend)
    return (x.new_empty((), dtype=cdt), x.new_empty(B, K, dtype=cdt), x.new_empty(B, dtype=cdt),
            x.new_empty(B, dtype=cdt), x.new_empty(K, dtype=cdt))


def _cl_setup(ctx, inputs, output):
    x, protos, tau, lam, backend = inputs
    _, probs, lse, rx, rw = output
    ctx.backend, ctx.lam = backend, lam
    ctx.save_for_backward(x, protos, tau, probs, lse, rx, rw)


def _cl_grads(ctx, bwd, gloss, *_):
    x, protos, tau, probs, lse, rx, rw = ctx.saved_tensors
    B, K = probs.shape
    gloss = _zeros_if_none(gloss, (), probs)
    # dL/dphi_bk of Eq. (2): -(log phi_bk + 1) / B  -  lam / (K B pbar_k)  (0 where pbar is clamped)
    pbar = probs.mean(0)
    logp = torch.where(probs > 0, torch.log(probs), torch.zeros_like(probs))
    dprior = torch.where(pbar >= PBAR_MIN, ctx.lam / (K * B) / pbar.clamp_min(PBAR_MIN), torch.zeros_like(pbar))
    G = gloss.to(probs.dtype) * (-(logp + 1.0) / B - dprior[None, :])
    e = _empty_index(x)
    dx, dw, rd = bwd(x, protos, rx, rw, _scale_of_tau(tau), 0.0, e, e, e, PROBS, probs, lse, G, 0)
    return dx, dw, _dtau(rd, tau) if ctx.needs_input_grad[2] else None, None, None


clustering_loss_op = _define("clustering_loss", _cl_fwd, _cl_fake, _cl_setup, _cl_grads)


# aam_logits -------------------------------------------------------------------

def _al_fwd(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float,
            backend: str) -> tuple[Tensor, Tensor, Tensor]:
    e = _empty_index(x)
    dots, _, rx, rw = host(backend)[0](x, weight, _scale_of(s, x), m, target, e, e, LOGITS, 0)
    return dots.to(x.dtype), rx, rw


def _al_fake(x, weight, target, s, m, backend):
    B, C = x.shape[0], weight.shape[0]
    cdt = compute_dtype(x, weight, backend)
    return x.new_empty(B, C), x.new_empty(B, dtype=cdt), x.new_empty(C, dtype=cdt)


def _al_setup(ctx, inputs, output):
    x, weight, target, s, m, backend = inputs
    _, rx, rw = output
    ctx.backend, ctx.s, ctx.m = backend, s, m
    ctx.save_for_backward(x, weight, target, rx, rw)


def _al_grads(ctx, bwd, glogits, *_):
    x, weight, target, rx, rw = ctx.saved_tensors
    glogits = _zeros_if_none(glogits, (x.shape[0], weight.shape[0]), rx)
    e = _empty_index(x)
    dx, dw, _ = bwd(x, weight, rx, rw, _scale_of(ctx.s, x), ctx.m, target, e, e, LOGITS, rx.new_empty(0),
                    rx.new_empty(0), glogits, 0)
    return dx, dw, None, None, None, None


aam_logits_op = _define("aam_logits", _al_fwd, _al_fake, _al_setup, _al_grads)


# aam_cross_entropy ---------------------------------------------------------------
# reduction "mean" / "sum" with grad: the forward computes dx, dw for dL/dloss = 1 on row chunks
# (fused cross-entropy, the [B, C] tile never leaves the chunk) and backward only scales them.
# reduction "none", or no grad: the forward keeps lse [B] and backward recomputes the tile in
# column chunks.

def _ace_fwd(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float, reduction: str, need_grad: bool,
             backend: str, chunk: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    e = _empty_index(x)
    fwd, _, ce_fused = host(backend)
    B, C = x.shape[0], weight.shape[0]
    if need_grad and reduction != "none":
        w_row = 1.0 / B if reduction == "mean" else 1.0
        loss, lse, rx, rw, dx, dw = ce_fused(x, weight, _scale_of(s, x), m, target, w_row, default_row_chunk(B, C))
    else:
        loss, stats, rx, rw = fwd(x, weight, _scale_of(s, x), m, target, e, e, CROSS_ENTROPY, chunk)
        lse = stats[0].clone()
        dx, dw = x.new_empty(0), weight.new_empty(0)
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss, lse, rx, rw, dx, dw


def _ace_fake(x, weight, target, s, m, reduction, need_grad, backend, chunk):
    B, C = x.shape[0], weight.shape[0]
    cdt = compute_dtype(x, weight, backend)
    loss = x.new_empty(B, dtype=cdt) if reduction == "none" else x.new_empty((), dtype=cdt)
    fused = need_grad and reduction != "none"
    dx = torch.empty_like(x) if fused else x.new_empty(0)
    dw = torch.empty_like(weight) if fused else weight.new_empty(0)
    return loss, x.new_empty(B, dtype=cdt), x.new_empty(B, dtype=cdt), x.new_empty(C, dtype=cdt), dx, dw


def _ace_setup(ctx, inputs, output):
    x, weight, target, s, m, reduction, need_grad, backend, chunk = inputs
    _, lse, rx, rw, dx, dw = output
    ctx.backend, ctx.s, ctx.m, ctx.chunk, ctx.reduction = backend, s, m, chunk, reduction
    ctx.save_for_backward(x, weight, target, lse, rx, rw, dx, dw)


def _ace_grads(ctx, bwd, gloss, *_):
    x, weight, target, lse, rx, rw, dx, dw = ctx.saved_tensors
    gloss = _zeros_if_none(gloss, lse.shape if ctx.reduction == "none" else (), lse)
    if dx.numel():  # gradients written by the forward for dL/dloss = 1
        return gloss.to(dx.dtype) * dx, gloss.to(dw.dtype) * dw, None, None, None, None, None, None, None
    g = gloss.to(lse.dtype).expand(lse.shape)
    if ctx.reduction == "mean":
        g = g / lse.shape[0]
    e = _empty_index(x)
    dx, dw, _ = bwd(x, weight, rx, rw, _scale_of(ctx.s, x), ctx.m, target, e, e, CROSS_ENTROPY, lse.new_empty(0),
                    lse, g.contiguous(), ctx.chunk)
    return dx, dw, None, None, None, None, None, None, None


aam_cross_entropy_op = _define("aam_cross_entropy", _ace_fwd, _ace_fake, _ace_setup, _ace_grads)


# prototype_ema_update ---------------------------------------------------------

def _ema_impl(protos: Tensor, feats: Tensor, weights: Tensor, momentum: float, backend: str) -> None:
    w = weights.float()
    sums = torch.mm(w.t(), feats.float()).contiguous()  # float32 sums: the kernels' contract
    wsum = w.sum(0).contiguous()
    kernels(backend).ema_rows(protos, sums, wsum, momentum)


_ema_op = torch.library.custom_op("ssgan_fast::prototype_ema_update", mutates_args=("protos",))(_ema_impl)


@_ema_op.register_fake
def _(protos, feats, weights, momentum, backend):
    return None


def prototype_ema_update_op(protos, feats, weights, momentum, backend):
    if torch.compiler.is_compiling():
        return _ema_op(protos, feats, weights, momentum, backend)
    return _ema_impl(protos, feats, weights, momentum, backend)


prototype_ema_update_op.op = _ema_op

"""Host side of the fused cosine-logits core, and the autograd / custom ops built on it.

Both op families - prototype assignment (cosine softmax) and the AAM margin - are
"normalised linear + softmax" ops. With rx_b = 1 / max(||x_b||, eps), rw_k likewise,
  cos_bk  = rx_b rw_k (x_b . w_k)
  logit   = s * cos      (s = 1 / tau, or the AAM scale with cos(theta_y + m) at the target).
Every backend computes the raw dot products with the vendor GEMM (cuBLAS / MKL, fp32
accumulation) into a float32 tile, and one fused kernel per pass does the rest in place:
scaling, margin, masking, softmax / online log-sum-exp, entropy (forward); the logit
gradient, margin derivative and the row/column sums of dcos * cos (backward).
- softmax (mode 0): backward recovers cos = (log p + lse) / s from the saved probabilities,
  so fwd + bwd is three GEMMs, as in eager torch.
- cross-entropy (mode 2): no [B, C] tensor outlives the call. With a scalar loss, grads wanted
  and a weight of at most FUSED_CE_MAX_WEIGHT elements, the forward also writes dx, dW over row
  chunks of the tile (`ce_fused`: three GEMMs in all) and backward only scales them; otherwise
  only lse [B] is kept and backward recomputes the tile over class chunks (four GEMMs, but no
  second weight-sized tensor held between forward and backward).

Backward of the normalisation (k_x = rx^2 where ||x|| > eps, else 0):
  dx_b = sum_k e_bk w_k - k_x x_b sum_k dcos_bk cos_bk,    e_bk = dcos_bk rx_b rw_k
  dw_k = sum_b e_bk x_b - k_w w_k sum_b dcos_bk cos_bk.

The cpp / cuda backends run the host loop in C++ (csrc/cosine_logits_host.cpp); the Triton
backend's host below mirrors it line by line.
"""
from __future__ import annotations

import inspect
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._backends import kernels, named, op_scope
from ._checks import no_autocast
from .reference import NORM_EPS, PBAR_MIN

PROBS, LOGITS, CROSS_ENTROPY, CLUSTERING = 0, 1, 2, 3
_INV_EPS = 1.0 / NORM_EPS


def default_chunk(B: int, K: int) -> int:
    """Columns per cross-entropy chunk (no-grad / per-row-grad path): a float32 tile of ~16 MiB."""
    return int(max(1024, min(K, (1 << 22) // max(B, 1))))


def default_row_chunk(B: int, K: int) -> int:
    """Rows per chunk of the fused cross-entropy: a [rows, K] float32 tile of about 16 MiB."""
    return int(max(1, min(B, (1 << 22) // max(K, 1))))


# Above this many weight elements the cross-entropy does not precompute dW in the forward (it
# would hold a second weight-sized tensor from forward to backward): backward recomputes instead.
FUSED_CE_MAX_WEIGHT = 1 << 24


def fused_ce(reduction: str, need_grad: bool, weight: Tensor) -> bool:
    return need_grad and reduction != "none" and weight.numel() <= FUSED_CE_MAX_WEIGHT


def compute_dtype(x: Tensor, w: Tensor, backend: str) -> torch.dtype:
    """float64 when an input is float64 (C++ / CUDA kernels; Triton computes in float32), else float32.

    Losses and the internal statistics are returned in this dtype."""
    if backend != "triton" and torch.float64 in (x.dtype, w.dtype):
        return torch.float64
    return torch.float32


# ------------------------------------------------------------------------- Triton host

def _inv_norm(t: Tensor, dtype: torch.dtype) -> Tensor:
    if t.dtype.itemsize > dtype.itemsize:  # float64 inputs on the Triton backend (computed in float32)
        t = t.to(dtype)
    n = torch.linalg.vector_norm(t, dim=1, dtype=dtype)
    return n.clamp_min(NORM_EPS).reciprocal()


def _norm_backward_factor(r: Tensor) -> Tensor:
    # d(1/max(n, eps))/dv = -v / n^3 where n > eps (r < 1/eps), 0 where the clamp is active.
    return torch.where(r < _INV_EPS, r * r, torch.zeros_like(r))


def _index_or_empty(t, like):
    return t.contiguous() if t is not None else torch.empty(0, dtype=torch.int64, device=like.device)


def _scale_tensor(tau, scale, cdt, device):
    if tau is not None:
        return tau.to(device=device, dtype=cdt).reshape(1).reciprocal()
    return torch.full((1,), scale, dtype=cdt, device=device)


def triton_forward(x, w, tau, scale, margin, target, lo, hi, mode, chunk):
    """Same contract as ssgan_fast_C::cosine_logits_forward:
    (out in x's dtype, out as float where that differs else empty, stats[3, B], rx, rw)."""
    kern = kernels("triton")
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(tau, scale, cdt, x.device)
    if mode == PROBS and kern.fused_softmax_supported(x, w):
        # K <= 256: one launch does norms, dot products, softmax and entropy
        probs, stats, rx, rw = kern.fused_softmax(x, w, sc, lo, hi)
        out = probs.to(x.dtype)
        return out, (probs.new_empty(0) if out.dtype == probs.dtype else probs), stats, rx, rw
    xf = x.to(cdt).contiguous()
    target, lo, hi = (_index_or_empty(t, x) for t in (target, lo, hi))
    B, K = x.shape[0], w.shape[0]
    rx, rw = _inv_norm(xf, cdt), _inv_norm(w, cdt)
    stats = torch.zeros(3, B, dtype=cdt, device=x.device)
    none = xf.new_empty(0)
    if mode != CROSS_ENTROPY:
        dots = torch.mm(xf, w.to(cdt).t())
        kern.fwd_rows(dots, rx, rw, sc, margin, target, lo, hi, 0, mode, stats)
        out = dots.to(x.dtype)
        return out, (none if out.dtype == cdt else dots), stats, rx, rw
    stats[0].fill_(float("-inf"))
    for c0 in range(0, K, chunk):
        c1 = min(K, c0 + chunk)
        dots = torch.mm(xf, w[c0:c1].to(cdt).t())
        kern.fwd_rows(dots, rx, rw[c0:c1], sc, margin, target, lo, hi, c0, mode, stats)
    stats[0].add_(stats[1].log())
    return stats[0] - stats[2], none, stats, rx, rw


def _clustering_grad(probs, gloss, lam):
    """dL/dphi of SphericGAN Eq. (2): g (-(log phi + 1) / B - lam / (K B pbar)), 0 where pbar is clamped."""
    B, K = probs.shape
    pbar = probs.mean(0)
    logp = torch.where(probs > 0, probs.clamp_min(PBAR_MIN).log(), torch.zeros_like(probs))
    dprior = torch.where(pbar >= PBAR_MIN, lam / (K * B) / pbar.clamp_min(PBAR_MIN), torch.zeros_like(pbar))
    return (gloss.reshape(1, 1) * (-(logp + 1.0) / B - dprior[None, :])).contiguous()


def triton_backward(x, w, rx, rw, tau, scale, margin, target, lo, hi, mode, saved, lse, grad, lam, chunk):
    """Same contract as ssgan_fast_C::cosine_logits_backward: (dx, dw, rd) with rd.sum() = sum_bk dcos * cos
    (here a scalar; the C++ host returns the per-row sums [B] and leaves the sum to a caller that needs it)."""
    kern = kernels("triton")
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(tau, scale, cdt, x.device)
    none = torch.empty(0, dtype=cdt, device=x.device)
    saved = saved.to(cdt).contiguous() if saved is not None else none
    lse = lse.to(cdt).contiguous() if lse is not None else none
    grad = grad.to(cdt).contiguous()
    if mode == CLUSTERING:
        grad, mode = _clustering_grad(saved, grad, lam), PROBS
    if mode == PROBS and kern.fused_backward_supported(x, w):
        # K <= 128: one launch (dx complete per row block, dw by atomics)
        return kern.fused_softmax_backward(x, w, rx, rw, sc, saved, lse, grad)
    xf = x.to(cdt).contiguous()
    target, lo, hi = (_index_or_empty(t, x) for t in (target, lo, hi))
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
        kern.bwd_rows(dots, rx, rw[c0:c1], sc, margin, target, lo, hi, c0, mode, saved, lse, grad, rowdot, coldot)
        dx.addmm_(dots, wc)
        dwc = dw[c0:c1]
        torch.mm(dots.t(), xf, out=dwc)
        dwc.addcmul_(wc, (kw[c0:c1] * coldot)[:, None], value=-1.0)
    dx.addcmul_(xf, (_norm_backward_factor(rx) * rowdot)[:, None], value=-1.0)
    return dx.to(x.dtype), dw.to(w.dtype), rowdot.sum()


def triton_ce_fused(x, w, scale, margin, target, weight, chunk):
    """Same contract as ssgan_fast_C::cosine_logits_ce_fused: cross-entropy forward that also
    writes dx, dw for dL/dloss_b = weight, over row chunks of `chunk`. (loss, lse, rx, rw, dx, dw)"""
    kern = kernels("triton")
    if kern.fused_ce_supported(x, w):  # C <= 64: everything in one launch
        return kern.fused_ce(x, w, scale, margin, target.contiguous(), weight)
    cdt = compute_dtype(x, w, "triton")
    xf, wf = x.to(cdt).contiguous(), w.to(cdt).contiguous()
    sc = torch.full((1,), scale, dtype=cdt, device=x.device)
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
        kern.ce_rows(dots, rx[r0:r1], rw, sc, margin, target[r0:r1].contiguous(), weight, stats, rowdot, coldot)
        lse[r0:r1] = stats[0]
        loss[r0:r1] = stats[1]
        torch.mm(dots, wf, out=dx[r0:r1])
        dx[r0:r1].addcmul_(xc, (kx[r0:r1] * rowdot)[:, None], value=-1.0)
        dw.addmm_(dots.t(), xc)
    dw.addcmul_(wf, (kw * coldot)[:, None], value=-1.0)
    return loss, lse, rx, rw, dx.to(x.dtype), dw.to(w.dtype)


_MODE_OPS = {PROBS: "cosine_softmax / clustering_loss", LOGITS: "aam_logits", CROSS_ENTROPY: "aam_cross_entropy",
             CLUSTERING: "clustering_loss"}


_TRITON_HOST = (named(triton_forward, lambda a: _MODE_OPS[a[8]]),
                named(triton_backward, lambda a: _MODE_OPS[a[10]] + " (backward)"),
                named(triton_ce_fused, "aam_cross_entropy"))


def host(backend: str):
    """(forward, backward, ce_fused) host functions of a backend."""
    if backend == "triton":
        return _TRITON_HOST
    ops = torch.ops.ssgan_fast_C
    return ops.cosine_logits_forward, ops.cosine_logits_backward, ops.cosine_logits_ce_fused


# ------------------------------------------------------------------------------ autograd
# Every op exists twice with the same forward / setup / backward bodies:
#  - an eager torch.autograd.Function (a few microseconds of overhead), used outside compilation;
#  - a torch.library custom op with fake kernel and registered autograd, used while torch.compile
#    traces (one opaque graph node, no graph break).

@torch.library.custom_op("ssgan_fast::cosine_logits_backward", mutates_args=())
def _backward_op(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, tau: Optional[Tensor], scale: float, margin: float,
                 target: Optional[Tensor], lo: Optional[Tensor], hi: Optional[Tensor], mode: int,
                 saved: Optional[Tensor], lse: Optional[Tensor], grad: Tensor, lam: float, backend: str,
                 chunk: int) -> tuple[Tensor, Tensor, Tensor]:
    return host(backend)[1](x, w, rx, rw, tau, scale, margin, target, lo, hi, mode, saved, lse, grad, lam, chunk)


@_backward_op.register_fake
def _(x, w, rx, rw, tau, scale, margin, target, lo, hi, mode, saved, lse, grad, lam, backend, chunk):
    rd_shape = () if backend == "triton" else (x.shape[0],)
    return torch.empty_like(x), torch.empty_like(w), x.new_empty(rd_shape, dtype=compute_dtype(x, w, backend))


def _bwd_fn(backend: str, traced: bool):
    if not traced:
        return host(backend)[1]

    def call(*args):
        return _backward_op(*args[:-1], backend, args[-1])
    return call


def _dtau(rd: Tensor, tau: Tensor) -> Tensor:
    # logit = cos / tau: dL/dtau = -sum(dlogit * cos) / tau^2 = -sum(dcos * cos) / tau
    return (-rd.double().sum() / tau.detach().double()).reshape(tau.shape).to(tau.dtype)


def _define(name: str, fwd, fake, setup, grads, cxx=None):
    """The eager Function and the custom op of one op, from shared bodies.

    fwd(*inputs) -> outputs; setup(ctx, inputs, outputs) saves what backward needs;
    grads(ctx, bwd, *grad_outputs) -> input grads, with bwd the backward host call.
    cxx(*inputs): the eager call for the cpp / cuda backends - the same host calls wrapped in a C++
    autograd Function (csrc/autograd.cpp, no Python in forward or backward); the Python Function
    then serves the Triton backend."""
    back = f"{name} (backward)"
    op = torch.library.custom_op(f"ssgan_fast::{name}", mutates_args=())(fwd)
    op.register_fake(fake)
    op.register_autograd(lambda ctx, *g: grads(ctx, _bwd_fn(ctx.backend, True), *g), setup_context=setup)

    class Fn(torch.autograd.Function):
        # Eager path: only the op's first output leaves the Function (the others are saved in ctx),
        # so autograd tracks one output and materialises no zero gradients for the rest.
        @staticmethod
        def forward(ctx, *inputs):
            # the kernels take bf16 / fp16 inputs themselves and accumulate in fp32: autocast must not
            # recast the GEMMs inside (it would hand the fused kernels bf16 dot products)
            with no_autocast(inputs[0].device), op_scope(name, x=inputs[0], w=inputs[1]):
                out = fwd(*inputs)
            setup(ctx, inputs, out)
            return out[0]

        @staticmethod
        @once_differentiable  # the backward kernels are not differentiable: say so, never return wrong 2nd derivatives
        def backward(ctx, g):
            with no_autocast(g.device), op_scope(back, grad=g):
                return grads(ctx, _bwd_fn(ctx.backend, False), g)

    Fn.__name__ = f"{name}_function"

    backend_at = list(inspect.signature(fwd).parameters).index("backend")

    def call(*inputs, python_function: bool = False):
        """The op's first output (the probabilities, logits or loss), differentiable. python_function:
        the Python Function form on any backend (tests compare it with the C++ one)."""
        if torch.compiler.is_compiling():
            return op(*inputs)[0]
        if cxx is not None and not python_function and inputs[backend_at] != "triton":
            return cxx(*inputs)
        return Fn.apply(*inputs)
    return call


_C_OPS = None


def _c_ops():
    """torch.ops.ssgan_fast_C, resolved once (the cpp / cuda backends imply the extension is loaded)."""
    global _C_OPS
    if _C_OPS is None:
        import ssgan_fast._C  # noqa: F401  (registers the ops)
        _C_OPS = torch.ops.ssgan_fast_C
    return _C_OPS


def _probs_fake(x, w, backend, B, K):
    cdt = compute_dtype(x, w, backend)
    extra = x.new_empty(B, K, dtype=cdt) if x.dtype != cdt else x.new_empty(0, dtype=cdt)
    return x.new_empty(B, K), extra, x.new_empty(3, B, dtype=cdt), x.new_empty(B, dtype=cdt), x.new_empty(K, dtype=cdt)


# cosine_softmax ---------------------------------------------------------------

def _cs_fwd(x: Tensor, protos: Tensor, tau: Optional[Tensor], scale: float, lo: Optional[Tensor],
            hi: Optional[Tensor], backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return host(backend)[0](x, protos, tau, scale, 0.0, None, lo, hi, PROBS, 0)


def _cs_fake(x, protos, tau, scale, lo, hi, backend):
    return _probs_fake(x, protos, backend, x.shape[0], protos.shape[0])


def _cs_setup(ctx, inputs, output):
    x, protos, tau, scale, lo, hi, backend = inputs
    probs, probs_f, stats, rx, rw = output
    ctx.backend, ctx.scale = backend, scale
    ctx.save_for_backward(x, protos, tau, lo, hi, probs_f if probs_f.numel() else probs, stats, rx, rw)


def _cs_grads(ctx, bwd, gprobs, *_):
    x, protos, tau, lo, hi, probs, stats, rx, rw = ctx.saved_tensors
    if gprobs is None:
        gprobs = torch.zeros_like(probs)
    dx, dw, rd = bwd(x, protos, rx, rw, tau, ctx.scale, 0.0, None, lo, hi, PROBS, probs, stats[0], gprobs, 0.0, 0)
    dtau = _dtau(rd, tau) if tau is not None and ctx.needs_input_grad[2] else None
    return dx, dw, dtau, None, None, None, None


cosine_softmax_op = _define(
    "cosine_softmax", _cs_fwd, _cs_fake, _cs_setup, _cs_grads,
    lambda x, p, tau, scale, lo, hi, backend: _c_ops().cosine_softmax_autograd(x, p, tau, scale, lo, hi))


# clustering_loss --------------------------------------------------------------

def _cl_fwd(x: Tensor, protos: Tensor, tau: Optional[Tensor], scale: float, lam: float,
            backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    _, probs_f, stats, rx, rw = out = host(backend)[0](x, protos, tau, scale, 0.0, None, None, None, PROBS, 0)
    probs = probs_f if probs_f.numel() else out[0]
    # SphericGAN Eq. (2); stats[1] is the per-row entropy computed by the softmax kernel
    loss = stats[1].mean() - lam * torch.log(probs.mean(0).clamp_min(PBAR_MIN)).mean()
    return loss, probs, stats, rx, rw


def _cl_fake(x, protos, tau, scale, lam, backend):
    B, K = x.shape[0], protos.shape[0]
    cdt = compute_dtype(x, protos, backend)
    return (x.new_empty((), dtype=cdt), x.new_empty(B, K, dtype=cdt), x.new_empty(3, B, dtype=cdt),
            x.new_empty(B, dtype=cdt), x.new_empty(K, dtype=cdt))


def _cl_setup(ctx, inputs, output):
    x, protos, tau, scale, lam, backend = inputs
    _, probs, stats, rx, rw = output
    ctx.backend, ctx.scale, ctx.lam = backend, scale, lam
    ctx.save_for_backward(x, protos, tau, probs, stats, rx, rw)


def _cl_grads(ctx, bwd, gloss, *_):
    x, protos, tau, probs, stats, rx, rw = ctx.saved_tensors
    if gloss is None:
        gloss = probs.new_zeros(())
    dx, dw, rd = bwd(x, protos, rx, rw, tau, ctx.scale, 0.0, None, None, None, CLUSTERING, probs, stats[0], gloss,
                     ctx.lam, 0)
    dtau = _dtau(rd, tau) if tau is not None and ctx.needs_input_grad[2] else None
    return dx, dw, dtau, None, None, None


clustering_loss_op = _define(
    "clustering_loss", _cl_fwd, _cl_fake, _cl_setup, _cl_grads,
    lambda x, p, tau, scale, lam, backend: _c_ops().clustering_loss_autograd(x, p, tau, scale, lam))


# aam_logits -------------------------------------------------------------------

def _al_fwd(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float,
            backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return host(backend)[0](x, weight, None, s, m, target, None, None, LOGITS, 0)


def _al_fake(x, weight, target, s, m, backend):
    return _probs_fake(x, weight, backend, x.shape[0], weight.shape[0])


def _al_setup(ctx, inputs, output):
    x, weight, target, s, m, backend = inputs
    _, _, _, rx, rw = output
    ctx.backend, ctx.s, ctx.m = backend, s, m
    ctx.save_for_backward(x, weight, target, rx, rw)


def _al_grads(ctx, bwd, glogits, *_):
    x, weight, target, rx, rw = ctx.saved_tensors
    if glogits is None:
        glogits = rx.new_zeros(x.shape[0], weight.shape[0])
    dx, dw, _ = bwd(x, weight, rx, rw, None, ctx.s, ctx.m, target, None, None, LOGITS, None, None, glogits, 0.0, 0)
    return dx, dw, None, None, None, None


aam_logits_op = _define(
    "aam_logits", _al_fwd, _al_fake, _al_setup, _al_grads,
    lambda x, w, target, s, m, backend: _c_ops().aam_logits_autograd(x, w, target, s, m))


# aam_cross_entropy ---------------------------------------------------------------

def _ace_fwd(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float, reduction: str, need_grad: bool,
             backend: str, chunk: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    fwd, _, ce_fused = host(backend)
    B, C = x.shape[0], weight.shape[0]
    if fused_ce(reduction, need_grad, weight):
        # the forward writes dx, dW for dL/dloss = 1 (row chunks of the logits tile)
        w_row = 1.0 / B if reduction == "mean" else 1.0
        loss, lse, rx, rw, dx, dw = ce_fused(x, weight, s, m, target, w_row, default_row_chunk(B, C))
    else:
        loss, _, stats, rx, rw = fwd(x, weight, None, s, m, target, None, None, CROSS_ENTROPY, chunk)
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
    fused = fused_ce(reduction, need_grad, weight)
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
    if gloss is None:
        gloss = lse.new_zeros(lse.shape if ctx.reduction == "none" else ())
    if dx.numel():  # gradients written by the forward for dL/dloss = 1
        return gloss.to(dx.dtype) * dx, gloss.to(dw.dtype) * dw, None, None, None, None, None, None, None
    g = gloss.to(lse.dtype).expand(lse.shape)
    if ctx.reduction == "mean":
        g = g / lse.shape[0]
    dx, dw, _ = bwd(x, weight, rx, rw, None, ctx.s, ctx.m, target, None, None, CROSS_ENTROPY, None, lse,
                    g.contiguous(), 0.0, ctx.chunk)
    return dx, dw, None, None, None, None, None, None, None


_REDUCTION_CODE = {"mean": 0, "sum": 1, "none": 2}  # csrc/autograd.cpp's Reduction
aam_cross_entropy_op = _define(
    "aam_cross_entropy", _ace_fwd, _ace_fake, _ace_setup, _ace_grads,
    lambda x, w, target, s, m, reduction, need_grad, backend, chunk:
    _c_ops().aam_cross_entropy_autograd(x, w, target, s, m, _REDUCTION_CODE[reduction], need_grad, chunk))


# prototype_ema_update ---------------------------------------------------------

def _ema_impl(protos: Tensor, feats: Tensor, weights: Tensor, momentum: float, backend: str) -> None:
    w = weights.float()
    sums = torch.mm(w.t(), feats.float()).contiguous()  # float32 sums: the kernels' contract
    wsum = w.sum(0).contiguous()
    with op_scope("prototype_ema_update", protos=protos, feats=feats, weights=weights):
        kernels(backend).ema_rows(protos, sums, wsum, momentum)


_ema_op = torch.library.custom_op("ssgan_fast::prototype_ema_update", mutates_args=("protos",))(_ema_impl)


@_ema_op.register_fake
def _(protos, feats, weights, momentum, backend):
    return None


def prototype_ema_update_op(protos, feats, weights, momentum, backend):
    if torch.compiler.is_compiling():
        return _ema_op(protos, feats, weights, momentum, backend)
    with no_autocast(protos.device):
        return _ema_impl(protos, feats, weights, momentum, backend)


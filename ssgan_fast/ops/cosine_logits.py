"""Host functions of the fused cosine-logits core, and the autograd / custom ops built on it.

Op families prototype (cosine_softmax, clustering_loss) and aam (aam_logits, aam_cross_entropy)
are "normalised linear + softmax" ops. With rx_b = 1 / max(||x_b||, eps), rw_k likewise,
  cos_bk  = rx_b rw_k (x_b . w_k)
  logit   = s * cos      (s = 1 / tau, or the AAM scale with cos(theta_y + m) at the target).
The raw dot products come from the vendor GEMM (cuBLAS / MKL, fp32 accumulation) into a float32
tile; one fused kernel per pass does the rest in place (scaling, margin, masking, softmax / online
log-sum-exp, entropy; backward: the logit gradient, margin derivative and the row / column sums of
dcos * cos). Each op has one forward and one backward host function, in C++ for the cpp / cuda
backends (csrc/cosine_logits/cosine_logits_host.cpp, torch.ops.ssgan_fast_C.<name>) and here for Triton, with
the same names and contracts (``host(backend).<name>``).

More: docs/modules.md, section ssgan_fast.ops.cosine_logits.
"""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .._backends import EMULATION, c_ops, named, op_scope, triton_kernels
from .._constants import CE_MIN_COLS, CE_TILE_ELEMS, FUSED_CE_MAX_WEIGHT, NORM_EPS, PBAR_MIN
from ._checks import no_autocast

_INV_EPS = 1.0 / NORM_EPS


def default_chunk(B: int, K: int) -> int:
    """Columns per cross-entropy chunk (no-grad / per-row-grad path): a float32 tile of CE_TILE_ELEMS."""
    return int(max(CE_MIN_COLS, min(K, CE_TILE_ELEMS // max(B, 1))))


def default_row_chunk(B: int, K: int) -> int:
    """Rows per chunk of the fused cross-entropy (csrc/common/shared.h ce_row_chunk)."""
    return int(max(1, min(B, CE_TILE_ELEMS // max(K, 1))))


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


def _rows_forward(x, w, sc, rows):
    """norms, the GEMM and `rows(dots, rx, rw, stats)` over all K columns: (out, out_f, stats, rx, rw)."""
    cdt = sc.dtype
    xf = x.to(cdt).contiguous()
    rx, rw = _inv_norm(xf, cdt), _inv_norm(w, cdt)
    stats = torch.zeros(3, x.shape[0], dtype=cdt, device=x.device)
    dots = torch.mm(xf, w.to(cdt).t())
    rows(dots, rx, rw, stats)
    out = dots.to(x.dtype)
    return out, (xf.new_empty(0) if out.dtype == cdt else dots), stats, rx, rw


def _rows_backward(x, w, rx, rw, cdt, step, recompute, rows):
    """The backward GEMMs around `rows(dots, rwc, c0, rowdot, coldot)` over column chunks of `step`;
    recompute: dots are the chunk's raw dot products (else output only). (dx, dw, rowdot [B])."""
    xf = x.to(cdt).contiguous()
    B, D = xf.shape
    K = w.shape[0]
    dx = torch.zeros(B, D, dtype=cdt, device=x.device)
    dw = torch.empty(K, D, dtype=cdt, device=x.device)
    rowdot = torch.zeros(B, dtype=cdt, device=x.device)
    kw = _norm_backward_factor(rw)
    for c0 in range(0, K, step):
        c1 = min(K, c0 + step)
        wc = w[c0:c1].to(cdt)
        dots = torch.mm(xf, wc.t()) if recompute else torch.empty(B, c1 - c0, dtype=cdt, device=x.device)
        coldot = torch.zeros(c1 - c0, dtype=cdt, device=x.device)
        rows(dots, rw[c0:c1], c0, rowdot, coldot)
        dx.addmm_(dots, wc)
        dwc = dw[c0:c1]
        torch.mm(dots.t(), xf, out=dwc)
        dwc.addcmul_(wc, (kw[c0:c1] * coldot)[:, None], value=-1.0)
    dx.addcmul_(xf, (_norm_backward_factor(rx) * rowdot)[:, None], value=-1.0)
    return dx.to(x.dtype), dw.to(w.dtype), rowdot


def _rows():
    """The row kernels (kernels/cosine_logits.py)."""
    return triton_kernels("cosine_logits")


def _fused():
    """The single-launch kernels for small K / C (kernels/cosine_logits_fused.py)."""
    return triton_kernels("cosine_logits_fused")


def cosine_softmax_fwd(x, w, tau, scale, lo, hi):
    """(probs in x's dtype, probs as float where that differs else empty, stats [3, B], rx, rw)."""
    kern, fused = _rows(), _fused()
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(tau, scale, cdt, x.device)
    if fused.supported(x, w):
        # K <= 256: one launch does norms, dot products, softmax and entropy
        probs, stats, rx, rw = fused.fused_forward(x, w, sc, lo, hi)
        out = probs.to(x.dtype)
        return out, (probs.new_empty(0) if out.dtype == probs.dtype else probs), stats, rx, rw
    lo, hi = _index_or_empty(lo, x), _index_or_empty(hi, x)
    return _rows_forward(x, w, sc, lambda dots, rx, rw, stats: kern.softmax_rows(dots, rx, rw, sc, lo, hi, stats))


def cosine_softmax_bwd(x, w, rx, rw, tau, scale, probs, lse, grad):
    """(dx, dw, rd) with rd.sum() = sum_bk dcos * cos (a scalar here; the C++ host returns the per-row sums)."""
    kern, fused = _rows(), _fused()
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(tau, scale, cdt, x.device)
    probs, lse, grad = probs.to(cdt).contiguous(), lse.to(cdt).contiguous(), grad.to(cdt).contiguous()
    if fused.backward_supported(x, w):
        # K <= 128: one launch (dx complete per row block, dw by atomics)
        return fused.fused_backward(x, w, rx, rw, sc, probs, lse, grad)

    def rows(dots, rwc, c0, rowdot, coldot):
        kern.softmax_bwd_rows(dots, rx, rwc, sc, probs, lse, grad, rowdot, coldot)
    dx, dw, rowdot = _rows_backward(x, w, rx, rw, cdt, w.shape[0], False, rows)
    return dx, dw, rowdot.sum()


def _clustering_grad(probs, gloss, lam):
    """dL/dphi of SphericGAN Eq. (2): g (-(log phi + 1) / B - lam / (K B pbar)), 0 where pbar is clamped."""
    B, K = probs.shape
    pbar = probs.mean(0)
    logp = torch.where(probs > 0, probs.clamp_min(PBAR_MIN).log(), torch.zeros_like(probs))
    dprior = torch.where(pbar >= PBAR_MIN, lam / (K * B) / pbar.clamp_min(PBAR_MIN), torch.zeros_like(pbar))
    return (gloss.reshape(1, 1) * (-(logp + 1.0) / B - dprior[None, :])).contiguous()


def clustering_loss_bwd(x, w, rx, rw, tau, scale, probs, lse, grad, lam):
    """As cosine_softmax_bwd, for grad = dL/dloss of clustering_loss."""
    cdt = compute_dtype(x, w, "triton")
    probs = probs.to(cdt).contiguous()
    return cosine_softmax_bwd(x, w, rx, rw, tau, scale, probs, lse, _clustering_grad(probs, grad.to(cdt), lam))


def aam_logits_fwd(x, w, target, s, m):
    """(logits in x's dtype, logits as float where that differs else empty, stats, rx, rw)."""
    kern = _rows()
    sc = _scale_tensor(None, s, compute_dtype(x, w, "triton"), x.device)
    target = target.contiguous()
    return _rows_forward(x, w, sc, lambda dots, rx, rw, stats: kern.logits_rows(dots, rx, rw, sc, m, target, stats))


def aam_logits_bwd(x, w, rx, rw, target, s, m, grad):
    """(dx, dw) for grad = dL/dlogits."""
    kern = _rows()
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(None, s, cdt, x.device)
    target, grad = target.contiguous(), grad.to(cdt).contiguous()

    def rows(dots, rwc, c0, rowdot, coldot):
        kern.logits_bwd_rows(dots, rx, rwc, sc, m, target, grad, rowdot, coldot)
    return _rows_backward(x, w, rx, rw, cdt, w.shape[0], True, rows)[:2]


def aam_ce_fwd(x, w, target, s, m, chunk):
    """(loss [B], lse [B], rx, rw) over class chunks of `chunk`."""
    kern = _rows()
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(None, s, cdt, x.device)
    xf, target = x.to(cdt).contiguous(), target.contiguous()
    K = w.shape[0]
    rx, rw = _inv_norm(xf, cdt), _inv_norm(w, cdt)
    stats = torch.zeros(3, x.shape[0], dtype=cdt, device=x.device)
    stats[0].fill_(float("-inf"))
    for c0 in range(0, K, chunk):
        c1 = min(K, c0 + chunk)
        dots = torch.mm(xf, w[c0:c1].to(cdt).t())
        kern.lse_rows(dots, rx, rw[c0:c1], sc, m, target, c0, stats)
    stats[0].add_(stats[1].log())
    return stats[0] - stats[2], stats[0].clone(), rx, rw


def aam_ce_bwd(x, w, rx, rw, target, s, m, lse, grad, chunk):
    """(dx, dw) for grad = dL/dloss_b [B], the logits recomputed over class chunks of `chunk`."""
    kern = _rows()
    cdt = compute_dtype(x, w, "triton")
    sc = _scale_tensor(None, s, cdt, x.device)
    target, lse, grad = target.contiguous(), lse.to(cdt).contiguous(), grad.to(cdt).contiguous()

    def rows(dots, rwc, c0, rowdot, coldot):
        kern.ce_bwd_rows(dots, rx, rwc, sc, m, target, c0, lse, grad, rowdot, coldot)
    return _rows_backward(x, w, rx, rw, cdt, chunk, True, rows)[:2]


def aam_ce_fused(x, w, target, s, m, weight, chunk):
    """Cross-entropy forward that also writes dx, dw for dL/dloss_b = weight, over row chunks of
    `chunk`: (loss, lse, rx, rw, dx, dw)."""
    kern, fused = _rows(), _fused()
    if fused.ce_supported(x, w):  # C <= 64: everything in one launch
        return fused.fused_ce(x, w, s, m, target.contiguous(), weight)
    cdt = compute_dtype(x, w, "triton")
    xf, wf = x.to(cdt).contiguous(), w.to(cdt).contiguous()
    sc = torch.full((1,), s, dtype=cdt, device=x.device)
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
        kern.ce_rows(dots, rx[r0:r1], rw, sc, m, target[r0:r1].contiguous(), weight, stats, rowdot, coldot)
        lse[r0:r1] = stats[0]
        loss[r0:r1] = stats[1]
        torch.mm(dots, wf, out=dx[r0:r1])
        dx[r0:r1].addcmul_(xc, (kx[r0:r1] * rowdot)[:, None], value=-1.0)
        dw.addmm_(dots.t(), xc)
    dw.addcmul_(wf, (kw * coldot)[:, None], value=-1.0)
    return loss, lse, rx, rw, dx.to(x.dtype), dw.to(w.dtype)


HOST_FUNCTIONS = ("cosine_softmax_fwd", "cosine_softmax_bwd", "clustering_loss_bwd", "aam_logits_fwd",
                  "aam_logits_bwd", "aam_ce_fwd", "aam_ce_bwd", "aam_ce_fused")
_OP_OF = {"cosine_softmax_fwd": "cosine_softmax", "cosine_softmax_bwd": "cosine_softmax (backward)",
          "clustering_loss_bwd": "clustering_loss (backward)", "aam_logits_fwd": "aam_logits",
          "aam_logits_bwd": "aam_logits (backward)", "aam_ce_fwd": "aam_cross_entropy",
          "aam_ce_bwd": "aam_cross_entropy (backward)", "aam_ce_fused": "aam_cross_entropy"}
_TRITON_HOST = SimpleNamespace(**{n: named(globals()[n], _OP_OF[n]) for n in HOST_FUNCTIONS})


def host(backend: str):
    """The host functions of a backend, by name (HOST_FUNCTIONS): Python for Triton, C++ otherwise."""
    return _TRITON_HOST if backend == "triton" else _c_ops(backend)


# ------------------------------------------------------------------------------ autograd
# Each op is a torch.library custom op with fake kernel and registered autograd (what torch.compile
# traces: one opaque graph node, no graph break; its backward is a custom op too). Eager calls take a
# cheaper form of the same forward / setup / backward bodies: the cpp / cuda backends the same host
# calls wrapped in a C++ autograd Function (csrc/cosine_logits/cosine_logits_autograd.cpp), Triton a
# Python torch.autograd.Function. Why three forms: calling the custom op eagerly costs 50-250 us more
# per forward + backward than the C++ form, 7-80 % of the op at the papers' shapes on the CPU
# (bench/ops/cosine_logits.py, bench/results/cpu-x86_64/op_forms_*.json); the Python Function costs
# 40-100 us less than the custom op. tests/ops/test_cosine_logits.py checks that the three agree.

_C_OPS = None


def _c_ops(backend: str = "cpp"):
    """torch.ops.ssgan_fast_C, resolved once (the cpp / cuda backends imply the extension is loaded), or
    the emulation's torch.ops.ssgan_fast_emu (cuda_emu)."""
    global _C_OPS
    if backend == EMULATION:
        return c_ops(backend)
    if _C_OPS is None:
        import ssgan_fast._C  # noqa: F401  (registers the ops)
        _C_OPS = torch.ops.ssgan_fast_C
    return _C_OPS


def _backward_op(name: str, fake):
    """The custom op `ssgan_fast::<name>` running host(backend).<name> (the traced backward), and an
    accessor bwd(backend, traced) of the callable a grads body uses."""
    def impl(*args):
        *args, backend = args
        return getattr(host(backend), name)(*args)
    params = [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.annotation)
              for p in inspect.signature(fake).parameters.values()]
    impl.__signature__ = inspect.Signature(params, return_annotation=inspect.signature(fake).return_annotation)
    op = torch.library.custom_op(f"ssgan_fast::{name}", mutates_args=())(impl)
    op.register_fake(fake)

    def bwd(backend: str, traced: bool):
        if traced:
            return lambda *args: op(*args, backend)
        return getattr(host(backend), name)
    return bwd


def _rd_fake(x, w, backend):
    return x.new_empty(() if backend == "triton" else (x.shape[0],), dtype=compute_dtype(x, w, backend))


def _cs_bwd_fake(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, tau: Tensor | None, scale: float, probs: Tensor,
                 lse: Tensor, grad: Tensor, backend: str) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(w), _rd_fake(x, w, backend)


def _cl_bwd_fake(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, tau: Tensor | None, scale: float, probs: Tensor,
                 lse: Tensor, grad: Tensor, lam: float, backend: str) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(w), _rd_fake(x, w, backend)


def _al_bwd_fake(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, target: Tensor, s: float, m: float, grad: Tensor,
                 backend: str) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(w)


def _ace_bwd_fake(x: Tensor, w: Tensor, rx: Tensor, rw: Tensor, target: Tensor, s: float, m: float, lse: Tensor,
                  grad: Tensor, chunk: int, backend: str) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(w)


_cs_bwd = _backward_op("cosine_softmax_bwd", _cs_bwd_fake)
_cl_bwd = _backward_op("clustering_loss_bwd", _cl_bwd_fake)
_al_bwd = _backward_op("aam_logits_bwd", _al_bwd_fake)
_ace_bwd = _backward_op("aam_ce_bwd", _ace_bwd_fake)


def _dtau(rd: Tensor, tau: Tensor) -> Tensor:
    # logit = cos / tau: dL/dtau = -sum(dlogit * cos) / tau^2 = -sum(dcos * cos) / tau
    return (-rd.double().sum() / tau.detach().double()).reshape(tau.shape).to(tau.dtype)


def _define(name: str, fwd, fake, setup, grads, bwd, cxx=None):
    """The eager Function and the custom op of one op, from shared bodies.

    fwd(*inputs) -> outputs; setup(ctx, inputs, outputs) saves what backward needs;
    grads(ctx, backward, *grad_outputs) -> input grads, with backward = bwd(backend, traced), the
    op's backward host function (a custom op while tracing).
    cxx(*inputs): the eager call for the cpp / cuda backends - the same host calls wrapped in a C++
    autograd Function (csrc/cosine_logits/cosine_logits_autograd.cpp, no Python in forward or backward);
    the Python Function then serves the Triton backend."""
    back = f"{name} (backward)"
    op = torch.library.custom_op(f"ssgan_fast::{name}", mutates_args=())(fwd)
    op.register_fake(fake)
    op.register_autograd(lambda ctx, *g: grads(ctx, bwd(ctx.backend, True), *g), setup_context=setup)

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
                return grads(ctx, bwd(ctx.backend, False), g)

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
    call.custom_op = op  # the torch.library op (bench/ops/cosine_logits.py times it eagerly against the other forms)
    return call


def _probs_fake(x, w, backend, B, K):
    cdt = compute_dtype(x, w, backend)
    extra = x.new_empty(B, K, dtype=cdt) if x.dtype != cdt else x.new_empty(0, dtype=cdt)
    return x.new_empty(B, K), extra, x.new_empty(3, B, dtype=cdt), x.new_empty(B, dtype=cdt), x.new_empty(K, dtype=cdt)


# cosine_softmax ---------------------------------------------------------------

def _cs_fwd(x: Tensor, protos: Tensor, tau: Tensor | None, scale: float, lo: Tensor | None,
            hi: Tensor | None, backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return host(backend).cosine_softmax_fwd(x, protos, tau, scale, lo, hi)


def _cs_fake(x, protos, tau, scale, lo, hi, backend):
    return _probs_fake(x, protos, backend, x.shape[0], protos.shape[0])


def _cs_setup(ctx, inputs, output):
    x, protos, tau, scale, lo, hi, backend = inputs
    probs, probs_f, stats, rx, rw = output
    ctx.backend, ctx.scale = backend, scale
    ctx.save_for_backward(x, protos, tau, probs_f if probs_f.numel() else probs, stats, rx, rw)


def _cs_grads(ctx, bwd, gprobs, *_):
    x, protos, tau, probs, stats, rx, rw = ctx.saved_tensors
    if gprobs is None:
        gprobs = torch.zeros_like(probs)
    dx, dw, rd = bwd(x, protos, rx, rw, tau, ctx.scale, probs, stats[0], gprobs)
    dtau = _dtau(rd, tau) if tau is not None and ctx.needs_input_grad[2] else None
    return dx, dw, dtau, None, None, None, None


cosine_softmax_op = _define(
    "cosine_softmax", _cs_fwd, _cs_fake, _cs_setup, _cs_grads, _cs_bwd,
    lambda x, p, tau, scale, lo, hi, backend: _c_ops(backend).cosine_softmax_autograd(x, p, tau, scale, lo, hi))


# clustering_loss --------------------------------------------------------------

def _cl_fwd(x: Tensor, protos: Tensor, tau: Tensor | None, scale: float, lam: float,
            backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    _, probs_f, stats, rx, rw = out = host(backend).cosine_softmax_fwd(x, protos, tau, scale, None, None)
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
    dx, dw, rd = bwd(x, protos, rx, rw, tau, ctx.scale, probs, stats[0], gloss, ctx.lam)
    dtau = _dtau(rd, tau) if tau is not None and ctx.needs_input_grad[2] else None
    return dx, dw, dtau, None, None, None


clustering_loss_op = _define(
    "clustering_loss", _cl_fwd, _cl_fake, _cl_setup, _cl_grads, _cl_bwd,
    lambda x, p, tau, scale, lam, backend: _c_ops(backend).clustering_loss_autograd(x, p, tau, scale, lam))


# aam_logits -------------------------------------------------------------------

def _al_fwd(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float,
            backend: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    return host(backend).aam_logits_fwd(x, weight, target, s, m)


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
    dx, dw = bwd(x, weight, rx, rw, target, ctx.s, ctx.m, glogits)
    return dx, dw, None, None, None, None


aam_logits_op = _define(
    "aam_logits", _al_fwd, _al_fake, _al_setup, _al_grads, _al_bwd,
    lambda x, w, target, s, m, backend: _c_ops(backend).aam_logits_autograd(x, w, target, s, m))


# aam_cross_entropy ---------------------------------------------------------------

def _ace_fwd(x: Tensor, weight: Tensor, target: Tensor, s: float, m: float, reduction: str, need_grad: bool,
             backend: str, chunk: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    h = host(backend)
    B, C = x.shape[0], weight.shape[0]
    if fused_ce(reduction, need_grad, weight):
        # the forward writes dx, dW for dL/dloss = 1 (row chunks of the logits tile)
        w_row = 1.0 / B if reduction == "mean" else 1.0
        loss, lse, rx, rw, dx, dw = h.aam_ce_fused(x, weight, target, s, m, w_row, default_row_chunk(B, C))
    else:
        loss, lse, rx, rw = h.aam_ce_fwd(x, weight, target, s, m, chunk)
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
    dx, dw = bwd(x, weight, rx, rw, target, ctx.s, ctx.m, lse, g.contiguous(), ctx.chunk)
    return dx, dw, None, None, None, None, None, None, None


_REDUCTION_CODE = {"mean": 0, "sum": 1, "none": 2}  # csrc/cosine_logits/cosine_logits_autograd.cpp's Reduction
aam_cross_entropy_op = _define(
    "aam_cross_entropy", _ace_fwd, _ace_fake, _ace_setup, _ace_grads, _ace_bwd,
    lambda x, w, target, s, m, reduction, need_grad, backend, chunk:
    _c_ops(backend).aam_cross_entropy_autograd(x, w, target, s, m, _REDUCTION_CODE[reduction], need_grad, chunk))


# prototype_ema_update ---------------------------------------------------------

def _ema_impl(protos: Tensor, feats: Tensor, weights: Tensor, momentum: float, backend: str) -> None:
    w = weights.float()
    sums = torch.mm(w.t(), feats.float()).contiguous()  # float32 sums: the kernels' contract
    wsum = w.sum(0).contiguous()
    with op_scope("prototype_ema_update", protos=protos, feats=feats, weights=weights):
        ema = triton_kernels("prototype").ema_rows if backend == "triton" else c_ops(backend).prototype_ema_rows
        ema(protos, sums, wsum, momentum)


_ema_op = torch.library.custom_op("ssgan_fast::prototype_ema_update", mutates_args=("protos",))(_ema_impl)


@_ema_op.register_fake
def _(protos, feats, weights, momentum, backend):
    return None


def prototype_ema_update_op(protos, feats, weights, momentum, backend):
    if torch.compiler.is_compiling():
        return _ema_op(protos, feats, weights, momentum, backend)
    with no_autocast(protos.device):
        return _ema_impl(protos, feats, weights, momentum, backend)



# ------------------------------------------------------------------------------ AOT walk

def aot_grid(full: bool):
    """(dtype pair, B, D, K, label) of the prototype and aam families' AOT walks (tools/aot.py): B 1-256,
    D 64-2048 (plus odd sizes the tests use), K / C 2-100 000; the benchmarks' shapes are inside."""
    from ._meta import BF16, F16, F32, F64
    Bs = (1, 7, 256)  # the kernels do not specialise on B; row / column chunks follow it
    Ds = (3, 64, 100, 512, 2048) if full else (3, 128, 512)
    Ks = (2, 10, 16, 33, 64, 100, 128, 200, 256, 257, 1000, 10_000, 100_000) if full else (10, 33, 200, 257, 100_000)
    for xd, wd in [(F32, F32), (BF16, BF16), (F16, F16), (BF16, F32), (F64, F64)]:
        for B in Bs:
            for D in Ds:
                for K in Ks:
                    yield (xd, wd), B, D, K, f"B{B} D{D} K{K} {str(xd)[6:]}/{str(wd)[6:]}"

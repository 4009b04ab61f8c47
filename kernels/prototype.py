"""Triton kernel of the prototype moving-average update (LCP-GAN Eq. 2).

rho_k <- (1 - mu) rho_k + mu * sums_k / wsum_k where wsum_k > 0 (unchanged otherwise);
sums = weights^T feats and wsum come from the host GEMM. Same contract as csrc/prototype/prototype_cpu.cpp.
"""
import triton
import triton.language as tl

from ._launch import launch


@triton.jit(do_not_specialize=['D'])
def _ema_kernel(protos, sums, wsum, n, D, mu, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    w = tl.load(wsum + offs // D, mask=mask, other=0.0)
    upd = mask & (w > 0.0)
    p = tl.load(protos + offs, mask=upd, other=0.0).to(tl.float32)
    sv = tl.load(sums + offs, mask=upd, other=0.0)
    new = (1.0 - mu) * p + mu * sv / tl.where(upd, w, 1.0)
    tl.store(protos + offs, new.to(protos.dtype.element_ty), mask=upd)


def ema_rows(protos, sums, wsum, momentum):
    n = protos.numel()
    if n == 0:
        return
    BLOCK = 1024
    launch(_ema_kernel, (triton.cdiv(n, BLOCK),), (protos, sums, wsum, n, protos.shape[1], float(momentum)),
           dict(BLOCK=BLOCK))

"""Triton kernel of op family feature_stats: per-class moments of shifted features (FID / Intra-FID / cFID).

Same contract as csrc/feature_stats/feature_stats_cuda.cu: a segmented SYRK. Rows are ordered by class on the
device (stable sort, no host sync); program (tile pair ti <= tj, class c, row chunk z) gathers the
class's rows of its chunk (<= CHUNK rows), subtracts the class shift, accumulates the tile of
Y^T Y with tl.dot in float32 (IEEE, no TF32) and adds it to the float64 accumulator (mirrored off
the diagonal). Diagonal programs also sum the columns; pair 0 adds the count. Triton computes in
float32 (float64 features are rounded to float32 first).
"""
import torch
import triton
import triton.language as tl

from ssgan_fast._constants import FEATURE_STATS_CHUNK as CHUNK

from ._launch import launch


@triton.jit
def _moments_kernel(x, perm, start, shift, pairs, count, colsum, xtx, D, CHUNK: tl.constexpr, TILE: tl.constexpr,
                    BK: tl.constexpr):
    p = tl.program_id(0)
    c = tl.program_id(1).to(tl.int64)
    z = tl.program_id(2)
    s0 = tl.load(start + c)
    s1 = tl.load(start + c + 1)
    r0 = s0 + z * CHUNK
    r1 = tl.minimum(s1, r0 + CHUNK)
    if r1 > r0:
        ti = tl.load(pairs + 2 * p)
        tj = tl.load(pairs + 2 * p + 1)
        ci = ti * TILE + tl.arange(0, TILE)
        cj = tj * TILE + tl.arange(0, TILE)
        mi = ci < D
        mj = cj < D
        shi = tl.load(shift + c * D + ci, mask=mi, other=0.0)
        shj = tl.load(shift + c * D + cj, mask=mj, other=0.0)
        acc = tl.zeros([TILE, TILE], dtype=tl.float32)
        csum = tl.zeros([TILE], dtype=tl.float32)
        for k0 in range(r0, r1, BK):
            ks = k0 + tl.arange(0, BK)
            km = ks < r1
            rows = tl.load(perm + ks, mask=km, other=0)
            a = tl.load(x + rows[:, None] * D + ci[None, :], mask=km[:, None] & mi[None, :], other=0.0)
            b = tl.load(x + rows[:, None] * D + cj[None, :], mask=km[:, None] & mj[None, :], other=0.0)
            a = tl.where(km[:, None] & mi[None, :], a - shi[None, :], 0.0)
            b = tl.where(km[:, None] & mj[None, :], b - shj[None, :], 0.0)
            acc += tl.dot(tl.trans(a), b, input_precision="ieee")
            csum += tl.sum(a, axis=0)
        m2 = mi[:, None] & mj[None, :]
        base = xtx + c * D * D
        tl.atomic_add(base + ci[:, None] * D + cj[None, :], acc.to(tl.float64), mask=m2)
        if ti != tj:
            tl.atomic_add(base + cj[None, :] * D + ci[:, None], acc.to(tl.float64), mask=m2)
        else:
            tl.atomic_add(colsum + c * D + ci, csum.to(tl.float64), mask=mi)
        if p == 0:
            tl.atomic_add(count + c, (r1 - r0).to(tl.float64))


def _pairs(ntiles, device):
    ij = torch.triu_indices(ntiles, ntiles)  # (ti, tj) with ti <= tj; (0, 0) first
    return ij.t().contiguous().to(device=device, dtype=torch.int32)


def moments(x, labels, shift, count, colsum, xtx, tile=None):
    N, D = x.shape
    C = count.numel()
    if N == 0 or D == 0:
        return
    x = x.float().contiguous()
    shift = shift.float().contiguous()
    sorted_labels, perm = torch.sort(labels, stable=True)
    start = torch.searchsorted(sorted_labels, torch.arange(C + 1, dtype=labels.dtype, device=labels.device))
    TILE = tile or (16 if D <= 16 else 32 if D <= 32 else 64)
    ntiles = triton.cdiv(D, TILE)
    pairs = _pairs(ntiles, x.device)
    grid = (pairs.shape[0], C, triton.cdiv(N, CHUNK))
    launch(_moments_kernel, grid, (x, perm, start, shift, pairs, count, colsum, xtx, D),
           dict(CHUNK=CHUNK, TILE=TILE, BK=16))

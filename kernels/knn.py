"""Triton kernels of op family knn: k-th neighbour radii and radius counts (see ssgan_fast/ops/knn.py).

Same contract as csrc/knn/knn_cuda.cu. A program owns BM rows of a (x) and loops over every column tile of
BN rows of b (ref): the tile's inner products by tl.dot over BK-wide slices of D (float32, IEEE: no
TF32, whose 10-bit mantissa would move distances across radii), the squared distances
||a||^2 + ||b||^2 - 2 a.b clamped at 0, then
- knn_smallest: the row's k smallest so far live in a [BM, KP] register tile (KP = k rounded up to a power
  of two, the spare slots -inf so they are never replaced); k times per tile (a loop, k is a runtime
  argument) the row minimum of the tile replaces the row's largest kept value where smaller, and is
  masked out of the tile;
- knn_radius_count: row counts and minima accumulate in registers (a program owns its rows); column
  counts go to int32 atomics, one per column and program (the sums do not depend on their order).
float64 inputs are computed in float32 (the caller rounds them).
"""
import torch
import triton
import triton.language as tl

from ._launch import launch

# (BM, BN, BK, num_warps) of each kernel: ptxas on sm_80 / sm_90 without spills (tools/aot.py checks it)
RADIUS_TILES = (64, 64, 16, 8)
SMALLEST_TILES = (32, 32, 16, 4)


@triton.jit
def _tile_dot(a, b, rows, cols, M, N, D, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = rows < M
    cm = cols < N
    ks = tl.arange(0, BK)
    pa = a + rows[:, None] * D + ks[None, :]  # int32 offsets: the wrappers check rows * D < 2^31
    pb = b + cols[:, None] * D + ks[None, :]
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for k0 in range(0, D, BK):
        km = (k0 + ks) < D
        ta = tl.load(pa, mask=rm[:, None] & km[None, :], other=0.0)
        tb = tl.load(pb, mask=cm[:, None] & km[None, :], other=0.0)
        acc += tl.dot(ta, tl.trans(tb), input_precision="ieee")
        pa += BK
        pb += BK
    return acc


@triton.jit
def _smallest_kernel(x, r, nx, nr, out, M, N, D, K, KP: tl.constexpr, SELF: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rm = rows < M
    nxr = tl.load(nx + rows, mask=rm, other=0.0)
    slot = tl.arange(0, KP)
    best = tl.where(slot[None, :] < K, float("inf"), float("-inf")) + tl.zeros([BM, KP], dtype=tl.float32)
    lcol = tl.arange(0, BN)
    for c0 in range(0, N, BN):
        cols = c0 + lcol
        cm = cols < N
        g = _tile_dot(x, r, rows, cols, M, N, D, BM, BN, BK)
        nrc = tl.load(nr + cols, mask=cm, other=0.0)
        d = tl.maximum(nxr[:, None] + nrc[None, :] - 2.0 * g, 0.0)
        drop = ~cm[None, :]
        if SELF:
            drop = drop | (rows[:, None] == cols[None, :])
        d = tl.where(drop, float("inf"), d)
        for _ in range(K):  # a loop, not unrolled: k up to MAX_K = 64
            m = tl.min(d, axis=1)
            mi = tl.argmin(d, axis=1)
            worst = tl.max(best, axis=1)
            wi = tl.argmax(best, axis=1)
            take = (slot[None, :] == wi[:, None]) & (m < worst)[:, None]
            best = tl.where(take, m[:, None] + tl.zeros([BM, KP], dtype=tl.float32), best)
            d = tl.where(lcol[None, :] == mi[:, None], float("inf"), d)
    # the k smallest, unordered (the caller sorts them); the spare slots (-inf) are not stored
    tl.store(out + rows[:, None] * K + slot[None, :], best, mask=rm[:, None] & (slot[None, :] < K))


@triton.jit
def _radius_kernel(a, b, na, nb, ra2, rb2, cnt_a, cnt_b, nn_a, M, N, D, INCLUSIVE: tl.constexpr,
                   BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    rm = rows < M
    nar = tl.load(na + rows, mask=rm, other=0.0)
    rar = tl.load(ra2 + rows, mask=rm, other=float("-inf"))
    ca = tl.zeros([BM], dtype=tl.int32)
    mn = tl.full([BM], float("inf"), dtype=tl.float32)
    for c0 in range(0, N, BN):
        cols = c0 + tl.arange(0, BN)
        cm = cols < N
        g = _tile_dot(a, b, rows, cols, M, N, D, BM, BN, BK)
        nbc = tl.load(nb + cols, mask=cm, other=0.0)
        rbc = tl.load(rb2 + cols, mask=cm, other=float("-inf"))
        d = tl.maximum(nar[:, None] + nbc[None, :] - 2.0 * g, 0.0)
        valid = rm[:, None] & cm[None, :]
        if INCLUSIVE:
            in_b = d <= rbc[None, :]
            in_a = d <= rar[:, None]
        else:
            in_b = d < rbc[None, :]
            in_a = d < rar[:, None]
        ca += tl.sum((in_b & valid).to(tl.int32), axis=1)
        mn = tl.minimum(mn, tl.min(tl.where(valid, d, float("inf")), axis=1))
        cb = tl.sum((in_a & valid).to(tl.int32), axis=0)
        tl.atomic_add(cnt_b + cols, cb, mask=cm & (cb > 0))
    tl.store(cnt_a + rows, ca, mask=rm)
    tl.store(nn_a + rows, mn, mask=rm)


def _norms(t):
    return (t * t).sum(1).contiguous()


def _check_offsets(*ts):
    for t in ts:
        if t.numel() >= 2 ** 31:
            raise ValueError(f"knn (triton): {tuple(t.shape)} features exceed the kernels' 32-bit offsets "
                             "(rows x D < 2^31); pass fewer rows at a time")


def knn_smallest(x, ref, k):
    x = x.float().contiguous()
    self_ = ref is None
    r = x if self_ else ref.float().contiguous()
    M, D = x.shape
    N = r.shape[0]
    _check_offsets(x, r)
    nx = _norms(x)
    nr = nx if self_ else _norms(r)
    out = torch.empty(M, k, dtype=torch.float32, device=x.device)
    KP = max(2, triton.next_power_of_2(k))
    BM, BN, BK, W = SMALLEST_TILES
    launch(_smallest_kernel, (triton.cdiv(M, BM),), (x, r, nx, nr, out, M, N, D, k),
           dict(KP=KP, SELF=self_, BM=BM, BN=BN, BK=BK, num_warps=W))
    return out.sort(dim=1).values


def knn_radius_count(a, b, ra2, rb2, inclusive):
    a, b = a.float().contiguous(), b.float().contiguous()
    ra2, rb2 = ra2.float().contiguous(), rb2.float().contiguous()
    M, D = a.shape
    N = b.shape[0]
    _check_offsets(a, b)
    cnt_a = torch.empty(M, dtype=torch.int32, device=a.device)
    cnt_b = torch.zeros(N, dtype=torch.int32, device=a.device)
    nn_a = torch.empty(M, dtype=torch.float32, device=a.device)
    BM, BN, BK, W = RADIUS_TILES
    launch(_radius_kernel, (triton.cdiv(M, BM),), (a, b, _norms(a), _norms(b), ra2, rb2, cnt_a, cnt_b, nn_a, M, N, D),
           dict(INCLUSIVE=bool(inclusive), BM=BM, BN=BN, BK=BK, num_warps=W))
    return cnt_a.long(), cnt_b.long(), nn_a

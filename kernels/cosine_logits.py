"""Triton row kernels of the fused cosine-logits core (op families prototype and aam).

Same contract as ``csrc/cosine_logits/cosine_logits_cpu.cpp``: the kernels work in place on a float32 tile of
raw dot products ``dots[B, Kc]`` (x_b . w_{c0+k}, from the vendor GEMM).
- forward: ``softmax_rows`` (probabilities, optional per-row column ranges), ``logits_rows``
  (margin logits), ``lse_rows`` (online log-sum-exp statistics of the cross-entropy);
- backward: ``softmax_bwd_rows``, ``logits_bwd_rows``, ``ce_bwd_rows`` turn it into
  ``e = dcos * rx * rw`` and accumulate the row / column sums of ``dcos * cos``;
- ``ce_rows``: the cross-entropy forward and its gradient on whole rows.
A program owns BLOCK_B rows and walks the columns in BLOCK_K tiles (2-D tiles; online softmax).
"""
import math

import triton
import triton.language as tl

from ssgan_fast._constants import MARGIN_CLAMP_EPS

from ._launch import launch

# the kernels' MODE (one compiled variant each)
_PROBS, _LOGITS, _CROSS_ENTROPY = 0, 1, 2


def margin_constants(m: float):
    """(cos m, sin m, th, mm) of the ArcFace margin; see ``MarginT`` in csrc/common/shared.h."""
    return math.cos(m), math.sin(m), math.cos(math.pi - m), math.sin(math.pi - m) * m


@triton.jit
def _margin_fwd(c, cos_m, sin_m, th, mm, EPS: tl.constexpr):
    cc = tl.minimum(tl.maximum(c, -1.0 + EPS), 1.0 - EPS)
    return tl.where(c > th, cc * cos_m - tl.sqrt(1.0 - cc * cc) * sin_m, c - mm)


@triton.jit
def _margin_bwd(c, cos_m, sin_m, th, EPS: tl.constexpr):
    inside = (c >= -1.0 + EPS) & (c <= 1.0 - EPS)
    cc = tl.minimum(tl.maximum(c, -1.0 + EPS), 1.0 - EPS)
    d = tl.where(inside, cos_m + sin_m * cc / tl.sqrt(1.0 - cc * cc), 0.0)
    return tl.where(c > th, d, 1.0)


@triton.jit
def _tile(dots, ld, rw, rows, rmask, k0, K, xr, s, t, cos_m, sin_m, th, mm, EPS: tl.constexpr,
          BLOCK_K: tl.constexpr):
    """One [BLOCK_B, BLOCK_K] tile of raw dot products: its columns, masks and pointers, cos, the
    target mask and the logits (s cos, s cos(theta + m) at the target column)."""
    cols = k0 + tl.arange(0, BLOCK_K)
    cmask = cols < K
    iomask = rmask[:, None] & cmask[None, :]
    ptrs = dots + rows[:, None] * ld + cols[None, :]
    wr = tl.load(rw + cols, mask=cmask, other=0.0)
    c = tl.load(ptrs, mask=iomask, other=0.0) * xr[:, None] * wr[None, :]
    is_t = cols[None, :] == t[:, None]
    logit = s * tl.where(is_t, _margin_fwd(c, cos_m, sin_m, th, mm, EPS), c)
    return cols, cmask, iomask, ptrs, wr, c, is_t, logit


@triton.jit
def _lse_update(m_i, l_i, logit):
    """Online log-sum-exp: fold a tile of logits (-inf = masked) into the running (max, sum)."""
    m_new = tl.maximum(m_i, tl.max(logit, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    l_new = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(logit - m_safe[:, None]), 1)
    return m_new, l_new


@triton.jit
def _store_e_and_sums(ptrs, iomask, cols, cmask, dc, c, xr, wr, rd, coldot):
    """dots <- e = dcos * rx * rw; returns rd + row sums of dcos * cos; coldot += column sums."""
    dc = tl.where(iomask, dc, 0.0)
    dcc = dc * c
    tl.atomic_add(coldot + cols, tl.sum(dcc, 0), mask=cmask)
    tl.store(ptrs, dc * xr[:, None] * wr[None, :], mask=iomask)
    return rd + tl.sum(dcc, 1)


@triton.jit(do_not_specialize=['B', 'c0'])
def _fwd_rows_kernel(dots, ld, rx, rw, scale, target, lo, hi, stats, B, K, c0,
                     cos_m, sin_m, th, mm,
                     MODE: tl.constexpr, HAS_GROUP: tl.constexpr, EPS: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = rows < B
    s = tl.load(scale)
    xr = tl.load(rx + rows, mask=rmask, other=0.0)
    if MODE != 0:
        t = tl.load(target + rows, mask=rmask, other=-1) - c0
    else:
        t = tl.full([BLOCK_B], -1, tl.int64)
    if HAS_GROUP:
        g0 = tl.load(lo + rows, mask=rmask, other=0) - c0
        g1 = tl.load(hi + rows, mask=rmask, other=0) - c0
    else:
        g0 = tl.zeros([BLOCK_B], tl.int64)
        g1 = tl.zeros([BLOCK_B], tl.int64) + K
    m_i = tl.full([BLOCK_B], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_B], tl.float32)
    tl_i = tl.zeros([BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols, cmask, iomask, ptrs, wr, c, is_t, logit = _tile(dots, ld, rw, rows, rmask, k0, K, xr, s, t,
                                                              cos_m, sin_m, th, mm, EPS, BLOCK_K)
        valid = iomask & (cols[None, :] >= g0[:, None]) & (cols[None, :] < g1[:, None])
        logit = tl.where(valid, logit, float("-inf"))
        if MODE == 1:
            tl.store(ptrs, logit, mask=iomask)
        else:
            m_i, l_i = _lse_update(m_i, l_i, logit)
            tl_i += tl.sum(tl.where(is_t & valid, logit, 0.0), 1)
    if MODE == 0:
        lse = m_i + tl.log(tl.where(rmask, l_i, 1.0))
        acc = tl.zeros([BLOCK_B], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols, cmask, iomask, ptrs, wr, c, is_t, logit = _tile(dots, ld, rw, rows, rmask, k0, K, xr, s, t,
                                                                  cos_m, sin_m, th, mm, EPS, BLOCK_K)
            valid = iomask & (cols[None, :] >= g0[:, None]) & (cols[None, :] < g1[:, None])
            p = tl.where(valid, tl.exp(logit - lse[:, None]), 0.0)
            acc += tl.sum(tl.where(p > 0.0, p * logit, 0.0), 1)
            tl.store(ptrs, p, mask=iomask)
        tl.store(stats + rows, lse, mask=rmask)
        tl.store(stats + B + rows, lse - acc, mask=rmask)
    if MODE == 2:
        m_old = tl.load(stats + rows, mask=rmask, other=0.0)
        s_old = tl.load(stats + B + rows, mask=rmask, other=0.0)
        t_old = tl.load(stats + 2 * B + rows, mask=rmask, other=0.0)
        m_new = tl.maximum(m_old, m_i)
        s_new = s_old * tl.exp(m_old - m_new) + l_i * tl.exp(m_i - m_new)
        tl.store(stats + rows, m_new, mask=rmask)
        tl.store(stats + B + rows, s_new, mask=rmask)
        tl.store(stats + 2 * B + rows, t_old + tl_i, mask=rmask)


@triton.jit(do_not_specialize=['B', 'c0'])
def _bwd_rows_kernel(dots, ld, rx, rw, scale, target, saved, lse_ptr, grad, rowdot, coldot, B, K, c0,
                     cos_m, sin_m, th, mm,
                     MODE: tl.constexpr, EPS: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = rows < B
    s = tl.load(scale)
    xr = tl.load(rx + rows, mask=rmask, other=0.0)
    rd = tl.zeros([BLOCK_B], tl.float32)
    if MODE == 0:
        # dots is output only: cos = (log p + lse) / s from the saved probabilities (no recompute)
        lse = tl.load(lse_ptr + rows, mask=rmask, other=0.0)
        pg = tl.zeros([BLOCK_B], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            iomask = rmask[:, None] & (cols < K)[None, :]
            off = rows[:, None] * K + cols[None, :]
            pg += tl.sum(tl.load(saved + off, mask=iomask, other=0.0) * tl.load(grad + off, mask=iomask, other=0.0), 1)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            cmask = cols < K
            iomask = rmask[:, None] & cmask[None, :]
            off = rows[:, None] * K + cols[None, :]
            wr = tl.load(rw + cols, mask=cmask, other=0.0)
            p = tl.load(saved + off, mask=iomask, other=0.0)
            dc = s * p * (tl.load(grad + off, mask=iomask, other=0.0) - pg[:, None])
            c = tl.where(p > 0.0, (tl.log(tl.where(p > 0.0, p, 1.0)) + lse[:, None]) / s, 0.0)
            rd = _store_e_and_sums(dots + rows[:, None] * ld + cols[None, :], iomask, cols, cmask, dc, c, xr, wr,
                                   rd, coldot)
    else:
        t = tl.load(target + rows, mask=rmask, other=-1) - c0
        if MODE == 2:
            lse = tl.load(lse_ptr + rows, mask=rmask, other=0.0)
            g = tl.load(grad + rows, mask=rmask, other=0.0)
        for k0 in range(0, K, BLOCK_K):
            cols, cmask, iomask, ptrs, wr, c, is_t, logit = _tile(dots, ld, rw, rows, rmask, k0, K, xr, s, t,
                                                                  cos_m, sin_m, th, mm, EPS, BLOCK_K)
            if MODE == 1:
                dl = tl.load(grad + rows[:, None] * K + cols[None, :], mask=iomask, other=0.0)
            else:
                dl = g[:, None] * (tl.exp(logit - lse[:, None]) - tl.where(is_t, 1.0, 0.0))
            dc = s * dl * tl.where(is_t, _margin_bwd(c, cos_m, sin_m, th, EPS), 1.0)
            rd = _store_e_and_sums(ptrs, iomask, cols, cmask, dc, c, xr, wr, rd, coldot)
    old = tl.load(rowdot + rows, mask=rmask, other=0.0)
    tl.store(rowdot + rows, old + rd, mask=rmask)


@triton.jit(do_not_specialize=['B'])
def _ce_rows_kernel(dots, ld, rx, rw, scale, target, weight, stats, rowdot, coldot, B, K,
                    cos_m, sin_m, th, mm, EPS: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    """Cross-entropy forward + gradient on whole rows (see csrc/cosine_logits/cosine_logits_cpu.cpp)."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    rmask = rows < B
    s = tl.load(scale)
    xr = tl.load(rx + rows, mask=rmask, other=0.0)
    t = tl.load(target + rows, mask=rmask, other=-1)
    m_i = tl.full([BLOCK_B], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_B], tl.float32)
    tl_i = tl.zeros([BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols, cmask, iomask, ptrs, wr, c, is_t, logit = _tile(dots, ld, rw, rows, rmask, k0, K, xr, s, t,
                                                              cos_m, sin_m, th, mm, EPS, BLOCK_K)
        logit = tl.where(iomask, logit, float("-inf"))
        m_i, l_i = _lse_update(m_i, l_i, logit)
        tl_i += tl.sum(tl.where(is_t & iomask, logit, 0.0), 1)
    lse = m_i + tl.log(tl.where(rmask, l_i, 1.0))
    tl.store(stats + rows, lse, mask=rmask)
    tl.store(stats + B + rows, lse - tl_i, mask=rmask)
    rd = tl.zeros([BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols, cmask, iomask, ptrs, wr, c, is_t, logit = _tile(dots, ld, rw, rows, rmask, k0, K, xr, s, t,
                                                              cos_m, sin_m, th, mm, EPS, BLOCK_K)
        dl = weight * (tl.exp(logit - lse[:, None]) - tl.where(is_t, 1.0, 0.0))
        dc = s * dl * tl.where(is_t, _margin_bwd(c, cos_m, sin_m, th, EPS), 1.0)
        rd = _store_e_and_sums(ptrs, iomask, cols, cmask, dc, c, xr, wr, rd, coldot)
    old = tl.load(rowdot + rows, mask=rmask, other=0.0)
    tl.store(rowdot + rows, old + rd, mask=rmask)


def _blocks(B: int, K: int):
    """Heuristic tile for the interpreter (no autotuning on CPU)."""
    block_k = min(1024, max(16, triton.next_power_of_2(K)))
    block_b = max(1, min(16, 4096 // block_k, triton.next_power_of_2(B)))
    return block_b, block_k


# Autotune candidates (BLOCK_B, BLOCK_K, num_warps): at most 16 bytes of spills on sm_80 / sm_90 in every
# mode under Triton 3.6 and 3.8 (16 rows of 128 or 512 columns spill more, 4 rows of 1024 with 8 warps under
# 3.6; see tools/aot_tables/), from one row of 1024 columns
# (large C, small B) to 16 rows of 64 (large B, moderate C). A GPU compiles each on its first call: four.
_TILES = [(1, 1024, 4), (4, 512, 4), (4, 1024, 16), (16, 64, 8)]


def _configs():
    return [triton.Config({"BLOCK_B": bb, "BLOCK_K": bk}, num_warps=nw) for bb, bk, nw in _TILES]


# On a GPU the tile and warp count are autotuned per (B, K, mode); the kernels work in place, so
# the autotuner restores the tensors they write between trials.
_fwd_tuned = triton.autotune(_configs(), key=["B", "K", "MODE", "HAS_GROUP"], restore_value=["dots", "stats"])(
    _fwd_rows_kernel)
_bwd_tuned = triton.autotune(_configs(), key=["B", "K", "MODE"], restore_value=["dots", "rowdot", "coldot"])(
    _bwd_rows_kernel)
_ce_tuned = triton.autotune(_configs(), key=["B", "K"], restore_value=["dots", "stats", "rowdot", "coldot"])(
    _ce_rows_kernel)


def _ptr(t, dummy):
    """An argument the kernel never dereferences (its constexpr switch is off) must still be a real
    device pointer: empty tensors stand in as `dummy`."""
    return t if t.numel() else dummy


def _grid(B):
    return lambda META: (triton.cdiv(B, META["BLOCK_B"]),)


def _tiles(B, K):
    BB, BK = _blocks(B, K)
    return dict(BLOCK_B=BB, BLOCK_K=BK)


def _fwd_rows(dots, rx, rw, scale, margin, target, lo, hi, c0, mode, stats):
    B, K = dots.shape
    if B == 0 or K == 0:
        return
    cm, sm, th, mm = margin_constants(margin)
    args = (dots, dots.stride(0), rx, rw, scale, _ptr(target, rx), _ptr(lo, rx), _ptr(hi, rx), stats, B, K, c0,
            cm, sm, th, mm)
    meta = dict(MODE=mode, HAS_GROUP=lo.numel() > 0, EPS=MARGIN_CLAMP_EPS)
    launch(_fwd_rows_kernel, _grid(B), args, meta, tuned=_fwd_tuned, interp=_tiles(B, K))


def _bwd_rows(dots, rx, rw, scale, margin, target, c0, mode, saved, lse, grad, rowdot, coldot):
    B, K = dots.shape
    if B == 0 or K == 0:
        return
    cm, sm, th, mm = margin_constants(margin)
    args = (dots, dots.stride(0), rx, rw, scale, _ptr(target, rx), _ptr(saved, rx), _ptr(lse, rx), grad, rowdot,
            coldot, B, K, c0, cm, sm, th, mm)
    meta = dict(MODE=mode, EPS=MARGIN_CLAMP_EPS)
    launch(_bwd_rows_kernel, _grid(B), args, meta, tuned=_bwd_tuned, interp=_tiles(B, K))


def softmax_rows(dots, rx, rw, scale, lo, hi, stats):
    """dots <- probabilities (0 outside [lo_b, hi_b) where given); stats[0] = lse, stats[1] = entropy."""
    _fwd_rows(dots, rx, rw, scale, 0.0, lo.new_empty(0), lo, hi, 0, _PROBS, stats)


def logits_rows(dots, rx, rw, scale, margin, target, stats):
    """dots <- s cos, s cos(theta + m) at the target column."""
    _fwd_rows(dots, rx, rw, scale, margin, target, target.new_empty(0), target.new_empty(0), 0, _LOGITS, stats)


def lse_rows(dots, rx, rw, scale, margin, target, c0, stats):
    """Folds the margin logits of columns c0.. into stats = (running max, sum of exp, target logit)."""
    _fwd_rows(dots, rx, rw, scale, margin, target, target.new_empty(0), target.new_empty(0), c0, _CROSS_ENTROPY,
              stats)


def softmax_bwd_rows(dots, rx, rw, scale, probs, lse, grad, rowdot, coldot):
    """dots (output only) <- e of the softmax backward, cos recovered from the saved probabilities."""
    _bwd_rows(dots, rx, rw, scale, 0.0, probs.new_empty(0), 0, _PROBS, probs, lse, grad, rowdot,
              coldot)


def logits_bwd_rows(dots, rx, rw, scale, margin, target, grad, rowdot, coldot):
    """dots (raw dot products) <- e of the margin-logits backward for grad = dL/dlogits."""
    _bwd_rows(dots, rx, rw, scale, margin, target, 0, _LOGITS, rx.new_empty(0), rx.new_empty(0), grad, rowdot, coldot)


def ce_bwd_rows(dots, rx, rw, scale, margin, target, c0, lse, grad, rowdot, coldot):
    """dots (raw dot products of columns c0..) <- e of the cross-entropy backward for grad = dL/dloss_b."""
    _bwd_rows(dots, rx, rw, scale, margin, target, c0, _CROSS_ENTROPY, rx.new_empty(0), lse, grad, rowdot, coldot)


def ce_rows(dots, rx, rw, scale, margin, target, weight, stats, rowdot, coldot):
    """Cross-entropy forward + gradient on whole rows: stats[0] = lse, stats[1] = loss; dots <- e for
    dL/dloss_b = weight."""
    B, K = dots.shape
    if B == 0 or K == 0:
        return
    cm, sm, th, mm = margin_constants(margin)
    args = (dots, dots.stride(0), rx, rw, scale, target, float(weight), stats, rowdot, coldot, B, K, cm, sm, th, mm)
    launch(_ce_rows_kernel, _grid(B), args, dict(EPS=MARGIN_CLAMP_EPS), tuned=_ce_tuned, interp=_tiles(B, K))

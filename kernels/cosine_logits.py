"""Triton kernels of the fused cosine-logits core (op families 1 and 2).

Same contract as ``csrc/cpu/cosine_logits.cpp``: the kernels work in place on a float32 tile of
raw dot products ``dots[B, Kc]`` (x_b . w_{c0+k}, from the vendor GEMM) and
- ``fwd_rows``: turn it into probabilities (mode 0, with optional per-row column ranges),
  margin logits (mode 1), or update online log-sum-exp statistics (mode 2);
- ``bwd_rows``: turn it into ``e = dcos * rx * rw`` and accumulate the row / column sums of
  ``dcos * cos`` that the normalisation backward needs.
A program owns BLOCK_B rows and walks the columns in BLOCK_K tiles (2-D tiles; online softmax).
"""
import math

import torch
import triton
import triton.language as tl

MARGIN_CLAMP_EPS = 1e-7


def margin_constants(m: float):
    """(cos m, sin m, th, mm) of the ArcFace margin; see ``Margin`` in csrc/ops.h."""
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
        l = tl.load(lo + rows, mask=rmask, other=0) - c0
        h = tl.load(hi + rows, mask=rmask, other=0) - c0
    else:
        l = tl.zeros([BLOCK_B], tl.int64)
        h = tl.zeros([BLOCK_B], tl.int64) + K
    m_i = tl.full([BLOCK_B], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_B], tl.float32)
    tl_i = tl.zeros([BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        cmask = cols < K
        ptrs = dots + rows[:, None] * ld + cols[None, :]
        iomask = rmask[:, None] & cmask[None, :]
        d = tl.load(ptrs, mask=iomask, other=0.0)
        wr = tl.load(rw + cols, mask=cmask, other=0.0)
        c = d * xr[:, None] * wr[None, :]
        is_t = cols[None, :] == t[:, None]
        logit = s * tl.where(is_t, _margin_fwd(c, cos_m, sin_m, th, mm, EPS), c)
        valid = iomask & (cols[None, :] >= l[:, None]) & (cols[None, :] < h[:, None])
        logit = tl.where(valid, logit, float("-inf"))
        if MODE == 1:
            tl.store(ptrs, logit, mask=iomask)
        else:
            m_new = tl.maximum(m_i, tl.max(logit, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(logit - m_safe[:, None]), 1)
            m_i = m_new
            tl_i += tl.sum(tl.where(is_t & valid, logit, 0.0), 1)
    if MODE == 0:
        lse = m_i + tl.log(l_i)
        acc = tl.zeros([BLOCK_B], tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            cmask = cols < K
            ptrs = dots + rows[:, None] * ld + cols[None, :]
            iomask = rmask[:, None] & cmask[None, :]
            d = tl.load(ptrs, mask=iomask, other=0.0)
            wr = tl.load(rw + cols, mask=cmask, other=0.0)
            logit = s * (d * xr[:, None] * wr[None, :])
            valid = iomask & (cols[None, :] >= l[:, None]) & (cols[None, :] < h[:, None])
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


@triton.jit
def _bwd_rows_kernel(dots, ld, rx, rw, scale, target, saved, grad, rowdot, coldot, B, K, c0,
                     cos_m, sin_m, th, mm,
                     MODE: tl.constexpr, EPS: tl.constexpr,
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
    pg = tl.zeros([BLOCK_B], tl.float32)
    if MODE == 0:
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K)
            iomask = rmask[:, None] & (cols < K)[None, :]
            off = rows[:, None] * K + cols[None, :]
            pg += tl.sum(tl.load(saved + off, mask=iomask, other=0.0) * tl.load(grad + off, mask=iomask, other=0.0), 1)
    if MODE == 2:
        lse = tl.load(saved + rows, mask=rmask, other=0.0)
        g = tl.load(grad + rows, mask=rmask, other=0.0)
    rd = tl.zeros([BLOCK_B], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + tl.arange(0, BLOCK_K)
        cmask = cols < K
        iomask = rmask[:, None] & cmask[None, :]
        ptrs = dots + rows[:, None] * ld + cols[None, :]
        d = tl.load(ptrs, mask=iomask, other=0.0)
        wr = tl.load(rw + cols, mask=cmask, other=0.0)
        c = d * xr[:, None] * wr[None, :]
        if MODE == 0:
            off = rows[:, None] * K + cols[None, :]
            p = tl.load(saved + off, mask=iomask, other=0.0)
            gk = tl.load(grad + off, mask=iomask, other=0.0)
            dc = s * p * (gk - pg[:, None])
        else:
            is_t = cols[None, :] == t[:, None]
            if MODE == 1:
                dl = tl.load(grad + rows[:, None] * K + cols[None, :], mask=iomask, other=0.0)
            else:
                logit = s * tl.where(is_t, _margin_fwd(c, cos_m, sin_m, th, mm, EPS), c)
                dl = g[:, None] * (tl.exp(logit - lse[:, None]) - tl.where(is_t, 1.0, 0.0))
            dc = s * dl * tl.where(is_t, _margin_bwd(c, cos_m, sin_m, th, EPS), 1.0)
        dc = tl.where(iomask, dc, 0.0)
        dcc = dc * c
        rd += tl.sum(dcc, 1)
        tl.atomic_add(coldot + cols, tl.sum(dcc, 0), mask=cmask)
        tl.store(ptrs, dc * xr[:, None] * wr[None, :], mask=iomask)
    old = tl.load(rowdot + rows, mask=rmask, other=0.0)
    tl.store(rowdot + rows, old + rd, mask=rmask)


def _blocks(B: int, K: int):
    block_k = min(1024, max(16, triton.next_power_of_2(K)))
    block_b = max(1, min(16, 4096 // block_k, triton.next_power_of_2(B)))
    return block_b, block_k


def fwd_rows(dots, rx, rw, scale, margin, target, lo, hi, c0, mode, stats):
    B, K = dots.shape
    if B == 0 or K == 0:
        return
    BB, BK = _blocks(B, K)
    cm, sm, th, mm = margin_constants(margin)
    _fwd_rows_kernel[(triton.cdiv(B, BB),)](
        dots, dots.stride(0), rx, rw, scale, target, lo, hi, stats, B, K, c0, cm, sm, th, mm,
        MODE=mode, HAS_GROUP=lo.numel() > 0, EPS=MARGIN_CLAMP_EPS, BLOCK_B=BB, BLOCK_K=BK,
        num_warps=4 if BB * BK <= 2048 else 8)


def bwd_rows(dots, rx, rw, scale, margin, target, lo, hi, c0, mode, saved, grad, rowdot, coldot):
    B, K = dots.shape
    if B == 0 or K == 0:
        return
    BB, BK = _blocks(B, K)
    cm, sm, th, mm = margin_constants(margin)
    _bwd_rows_kernel[(triton.cdiv(B, BB),)](
        dots, dots.stride(0), rx, rw, scale, target, saved, grad, rowdot, coldot, B, K, c0,
        cm, sm, th, mm, MODE=mode, EPS=MARGIN_CLAMP_EPS, BLOCK_B=BB, BLOCK_K=BK,
        num_warps=4 if BB * BK <= 2048 else 8)

"""Single-launch Triton kernels of the cosine-logits core for the papers' sizes: the cosine_softmax
forward (K <= 256) and backward (K <= 128) (op family prototype: SphericGAN Eq. 1-2, LCP-GAN Eq. 3)
and the AAM cross-entropy with its gradients (C <= 64; op family aam: aam-discriminator Eq. 8).

Forward: one program owns BLOCK_B rows and all K columns; it walks D in BLOCK_D chunks
accumulating x.p^T with tl.dot together with the squared row norms of x and of the prototypes,
then scales by 1 / (||x|| ||p|| tau), masks the row's group, and writes probabilities, lse,
entropy, 1/||x|| and 1/||p||. No logits tensor, no separate norm or GEMM launches.
Gradients: dx rows are complete inside a row block; dw is accumulated with atomics.
Same results as the generic path (torch GEMM + kernels/cosine_logits row kernels), which the
Triton backend takes for larger K (the tiles of the backward kernels spill registers above 128).
"""
import torch
import triton
import triton.language as tl

from ssgan_fast import _constants

from ._launch import launch
from .cosine_logits import _margin_bwd, _margin_fwd, margin_constants

MARGIN_CLAMP_EPS = _constants.MARGIN_CLAMP_EPS
NORM_EPS = tl.constexpr(_constants.NORM_EPS)  # jit code reads module globals only when they are constexpr


@triton.jit
def _block(B, K, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's rows (a block of BLOCK_B) and all K columns, with their bounds masks."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_K)
    return pid, rows, cols, rows < B, cols < K


@triton.jit
def _softmax_rows(logit, valid, rmask):
    """Row softmax of logits (-inf where not valid): (unnormalised exp, row sums, lse)."""
    mx = tl.where(rmask, tl.max(logit, 1), 0.0)
    e = tl.where(valid, tl.exp(logit - mx[:, None]), 0.0)
    ssum = tl.where(rmask, tl.sum(e, 1), 1.0)
    return e, ssum, mx + tl.log(ssum)


@triton.jit
def _dots_and_norms(x, sxb, sxd, p, spk, spd, rows, rmask, cols, cmask, D,
                    BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """x_b . p_k for the block, and 1 / max(norm, eps) of its rows and columns. fp32 products for
    every input dtype: at K <= 256 the kernel is latency-bound, tensor-core precision buys nothing."""
    acc = tl.zeros([BLOCK_B, BLOCK_K], tl.float32)
    xs = tl.zeros([BLOCK_B], tl.float32)
    ps = tl.zeros([BLOCK_K], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        dmask = ds < D
        xf = tl.load(x + rows[:, None] * sxb + ds[None, :] * sxd, mask=rmask[:, None] & dmask[None, :],
                     other=0.0).to(tl.float32)
        pf = tl.load(p + cols[:, None] * spk + ds[None, :] * spd, mask=cmask[:, None] & dmask[None, :],
                     other=0.0).to(tl.float32)
        acc = tl.dot(xf, tl.trans(pf), acc, input_precision="ieee")
        xs += tl.sum(xf * xf, 1)
        ps += tl.sum(pf * pf, 1)
    return acc, 1.0 / tl.maximum(tl.sqrt(xs), NORM_EPS), 1.0 / tl.maximum(tl.sqrt(ps), NORM_EPS)


@triton.jit
def _input_grads(x, sxb, sxd, p, spk, spd, rows, rmask, cols, cmask, D, dc, c, xr, wr, dx, sdb, dw_acc,
                 BLOCK_D: tl.constexpr):
    """From dcos of the block (0 outside it): dx = e p - k_x (sum_k dcos cos) x for its rows
    (complete), dw += e^T x - k_w (sum_b dcos cos) p (atomic), with e = dcos rx rw and
    k = r^2 where the norm was not clamped. Returns the block's sum of dcos * cos."""
    dcc = dc * c
    rd = tl.sum(dcc, 1)
    cd = tl.sum(dcc, 0)
    e = dc * xr[:, None] * wr[None, :]
    kx = tl.where(xr < 1.0 / NORM_EPS, xr * xr, 0.0) * rd
    kw = tl.where(wr < 1.0 / NORM_EPS, wr * wr, 0.0) * cd
    for d0 in range(0, D, BLOCK_D):
        ds = d0 + tl.arange(0, BLOCK_D)
        dmask = ds < D
        xt = tl.load(x + rows[:, None] * sxb + ds[None, :] * sxd, mask=rmask[:, None] & dmask[None, :],
                     other=0.0).to(tl.float32)
        pt = tl.load(p + cols[:, None] * spk + ds[None, :] * spd, mask=cmask[:, None] & dmask[None, :],
                     other=0.0).to(tl.float32)
        dxt = tl.dot(e, pt, input_precision="ieee") - kx[:, None] * xt
        tl.store(dx + rows[:, None] * sdb + ds[None, :], dxt.to(dx.dtype.element_ty),
                 mask=rmask[:, None] & dmask[None, :])
        dwt = tl.dot(tl.trans(e), xt, input_precision="ieee") - kw[:, None] * pt
        tl.atomic_add(dw_acc + cols[:, None] * D + ds[None, :], dwt, mask=cmask[:, None] & dmask[None, :])
    return tl.sum(rd, 0)


@triton.jit(do_not_specialize=["B", "K"])
def _fused_fwd_kernel(x, sxb, sxd, p, spk, spd, scale, lo, hi, probs, stats, rx_out, rw_out, B, K, D,
                      HAS_GROUP: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
                      BLOCK_D: tl.constexpr):
    pid, rows, cols, rmask, cmask = _block(B, K, BLOCK_B, BLOCK_K)
    acc, rx, rw = _dots_and_norms(x, sxb, sxd, p, spk, spd, rows, rmask, cols, cmask, D, BLOCK_B, BLOCK_K, BLOCK_D)
    logit = tl.load(scale) * acc * rx[:, None] * rw[None, :]
    valid = rmask[:, None] & cmask[None, :]
    if HAS_GROUP:
        g0 = tl.load(lo + rows, mask=rmask, other=0)
        g1 = tl.load(hi + rows, mask=rmask, other=0)
        valid = valid & (cols[None, :] >= g0[:, None]) & (cols[None, :] < g1[:, None])
    logit = tl.where(valid, logit, float("-inf"))
    e, ssum, lse = _softmax_rows(logit, valid, rmask)
    pr = e / ssum[:, None]
    ent = lse - tl.sum(pr * tl.where(valid, logit, 0.0), 1)
    tl.store(probs + rows[:, None] * K + cols[None, :], pr, mask=rmask[:, None] & cmask[None, :])
    tl.store(stats + rows, lse, mask=rmask)
    tl.store(stats + B + rows, ent, mask=rmask)
    tl.store(rx_out + rows, rx, mask=rmask)
    if pid == 0:
        tl.store(rw_out + cols, rw, mask=cmask)


@triton.jit(do_not_specialize=["B", "K"])
def _fused_bwd_kernel(x, sxb, sxd, p, spk, spd, P, G, lse, rx, rw, scale, dx, sdb, dw_acc, rd_total, B, K, D,
                      BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """Softmax backward: dcos = s P (G - <P, G>), cos recovered as (log P + lse) / s."""
    pid, rows, cols, rmask, cmask = _block(B, K, BLOCK_B, BLOCK_K)
    m2 = rmask[:, None] & cmask[None, :]
    s = tl.load(scale)
    pr = tl.load(P + rows[:, None] * K + cols[None, :], mask=m2, other=0.0)
    g = tl.load(G + rows[:, None] * K + cols[None, :], mask=m2, other=0.0)
    ls = tl.load(lse + rows, mask=rmask, other=0.0)
    xr = tl.load(rx + rows, mask=rmask, other=0.0)
    wr = tl.load(rw + cols, mask=cmask, other=0.0)
    dc = s * pr * (g - tl.sum(pr * g, 1)[:, None])
    c = tl.where(pr > 0.0, (tl.log(tl.where(pr > 0.0, pr, 1.0)) + ls[:, None]) / s, 0.0)
    rd = _input_grads(x, sxb, sxd, p, spk, spd, rows, rmask, cols, cmask, D, dc, c, xr, wr, dx, sdb, dw_acc, BLOCK_D)
    tl.atomic_add(rd_total, rd)


@triton.jit(do_not_specialize=["B", "K"])
def _fused_ce_kernel(x, sxb, sxd, p, spk, spd, target, loss_out, lse_out, rx_out, rw_out, dx, sdb, dw_acc,
                     B, K, D, s, weight, cos_m, sin_m, th, mm, EPS: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    """AAM cross-entropy: loss, lse, and the gradients for dL/dloss_b = weight."""
    pid, rows, cols, rmask, cmask = _block(B, K, BLOCK_B, BLOCK_K)
    m2 = rmask[:, None] & cmask[None, :]
    acc, xr, wr = _dots_and_norms(x, sxb, sxd, p, spk, spd, rows, rmask, cols, cmask, D, BLOCK_B, BLOCK_K, BLOCK_D)
    c = acc * xr[:, None] * wr[None, :]
    t = tl.load(target + rows, mask=rmask, other=-1)
    is_t = cols[None, :] == t[:, None]
    logit = tl.where(m2, s * tl.where(is_t, _margin_fwd(c, cos_m, sin_m, th, mm, EPS), c), float("-inf"))
    ex, ssum, lse = _softmax_rows(logit, m2, rmask)
    tl.store(loss_out + rows, lse - tl.sum(tl.where(is_t & m2, logit, 0.0), 1), mask=rmask)
    tl.store(lse_out + rows, lse, mask=rmask)
    tl.store(rx_out + rows, xr, mask=rmask)
    if pid == 0:
        tl.store(rw_out + cols, wr, mask=cmask)
    dl = weight * (ex / ssum[:, None] - tl.where(is_t, 1.0, 0.0))
    dc = tl.where(m2, s * dl * tl.where(is_t, _margin_bwd(c, cos_m, sin_m, th, EPS), 1.0), 0.0)
    _input_grads(x, sxb, sxd, p, spk, spd, rows, rmask, cols, cmask, D, dc, c, xr, wr, dx, sdb, dw_acc, BLOCK_D)


# Autotune candidates per BLOCK_K (all K columns live in one [BLOCK_B, BLOCK_K] tile): (BLOCK_B, BLOCK_D,
# num_warps), each one that ptxas compiles on sm_80 and sm_90 for fp32 / bf16 / fp16 with at most 16 bytes
# of spills (tools/aot_tables/triton-*.json records registers, spills and shared memory of every one,
# tests/kernels/test_aot.py holds the bound). The
# backward and cross-entropy kernels hold several [BLOCK_B, BLOCK_K] tiles at once: above BLOCK_K 128
# every tile spills, so K > 128 takes the generic path there (vendor GEMMs + kernels/cosine_logits row
# kernels). At most four each: a GPU compiles every candidate on its first call.
_FWD_TILES = {16: [(16, 32, 4), (32, 32, 4), (64, 32, 4), (64, 16, 4)],
              32: [(16, 32, 4), (32, 32, 4), (64, 32, 8), (32, 64, 8)],
              64: [(16, 32, 4), (32, 32, 4), (64, 32, 8), (16, 64, 8)],
              128: [(16, 16, 8), (16, 32, 8), (16, 64, 8), (32, 32, 16)],
              256: [(16, 16, 8)]}
_BWD_TILES = {16: [(16, 32, 4), (32, 32, 4), (64, 32, 8), (32, 64, 8)],
              32: [(16, 32, 8), (32, 32, 8), (64, 32, 8), (16, 64, 8)],
              64: [(16, 32, 8), (32, 32, 8), (16, 16, 4), (16, 32, 16)],
              128: [(16, 16, 8)]}
# the cross-entropy at BLOCK_K 128 spills with every candidate on one of the Triton versions (8 warps:
# 24 B under 3.6 in fp32; 16 warps: 96-176 B under 3.8 in bf16 / fp16): C > 64 takes the generic path
_CE_TILES = {bk: t for bk, t in _BWD_TILES.items() if bk <= 64}
MAX_K, MAX_K_BWD, MAX_K_CE = max(_FWD_TILES), max(_BWD_TILES), max(_CE_TILES)


def _tuned(kernel, tiles, key, **kw):
    """{BLOCK_K: autotuner over that BLOCK_K's candidates}."""
    return {bk: triton.autotune([triton.Config({"BLOCK_B": bb, "BLOCK_D": bd}, num_warps=nw) for bb, bd, nw in cands],
                                key=key, **kw)(kernel)
            for bk, cands in tiles.items()}


_fused_tuned = _tuned(_fused_fwd_kernel, _FWD_TILES, ["B", "K", "D", "HAS_GROUP"])
_fused_ce_tuned = _tuned(_fused_ce_kernel, _CE_TILES, ["B", "K", "D"], reset_to_zero=["dw_acc"])
_fused_bwd_tuned = _tuned(_fused_bwd_kernel, _BWD_TILES, ["B", "K", "D"], reset_to_zero=["dw_acc", "rd_total"])


def _launch(kernel, tuned, B, K, args, **meta):
    """Autotuned tiles on a GPU, fixed ones under the interpreter; BLOCK_K covers all K columns."""
    meta["BLOCK_K"] = bk = max(16, triton.next_power_of_2(K))
    launch(kernel, lambda META: (triton.cdiv(B, META["BLOCK_B"]),), args, meta, tuned=tuned[bk],
           interp=dict(BLOCK_B=16, BLOCK_D=32))


def supported(x, w, max_k: int = MAX_K) -> bool:
    return w.shape[0] <= max_k and x.dtype == w.dtype and x.dtype != torch.float64


def backward_supported(x, w) -> bool:
    """The single-launch softmax backward (K <= MAX_K_BWD)."""
    return supported(x, w, MAX_K_BWD)


def ce_supported(x, w) -> bool:
    """The single-launch AAM cross-entropy with its gradients (C <= MAX_K_CE)."""
    return supported(x, w, MAX_K_CE)


def _views(x, w):
    return (x, x.stride(0), x.stride(1), w, w.stride(0), w.stride(1))


def fused_forward(x, w, scale, lo, hi):
    """(probs float32 [B, K], stats [3, B] with lse and entropy, rx [B], rw [K])."""
    B, D = x.shape
    K = w.shape[0]
    f32 = dict(dtype=torch.float32, device=x.device)
    probs, stats = torch.empty(B, K, **f32), torch.zeros(3, B, **f32)
    rx, rw = torch.empty(B, **f32), torch.empty(K, **f32)
    has_group = lo is not None and lo.numel() > 0
    lo_, hi_ = (lo, hi) if has_group else (rx, rx)  # never dereferenced without a group
    _launch(_fused_fwd_kernel, _fused_tuned, B, K,
            (*_views(x, w), scale, lo_, hi_, probs, stats, rx, rw, B, K, D), HAS_GROUP=has_group)
    return probs, stats, rx, rw


def fused_backward(x, w, rx, rw, scale, probs, lse, grad):
    """(dx in x's dtype, dw in w's dtype, sum_bk dcos * cos) of the softmax."""
    B, D = x.shape
    K = w.shape[0]
    dx = torch.empty(B, D, dtype=x.dtype, device=x.device)
    dw = torch.zeros(K, D, dtype=torch.float32, device=x.device)
    rd = torch.zeros(1, dtype=torch.float32, device=x.device)
    _launch(_fused_bwd_kernel, _fused_bwd_tuned, B, K,
            (*_views(x, w), probs, grad, lse, rx, rw, scale, dx, dx.stride(0), dw, rd, B, K, D))
    return dx, dw.to(w.dtype), rd[0]


def fused_ce(x, w, s, m, target, weight):
    """(loss, lse, rx, rw, dx, dw) of the AAM cross-entropy for dL/dloss_b = weight."""
    B, D = x.shape
    K = w.shape[0]
    f32 = dict(dtype=torch.float32, device=x.device)
    loss, lse, rx, rw = torch.empty(B, **f32), torch.empty(B, **f32), torch.empty(B, **f32), torch.empty(K, **f32)
    dx = torch.empty(B, D, dtype=x.dtype, device=x.device)
    dw = torch.zeros(K, D, **f32)
    cm, sm, th, mm = margin_constants(m)
    _launch(_fused_ce_kernel, _fused_ce_tuned, B, K,
            (*_views(x, w), target, loss, lse, rx, rw, dx, dx.stride(0), dw, B, K, D, float(s), float(weight),
             cm, sm, th, mm), EPS=MARGIN_CLAMP_EPS)
    return loss, lse, rx, rw, dx, dw.to(w.dtype)

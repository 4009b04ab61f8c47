"""Triton kernels of op family 3: CutMix (MED-GAN Eq. 1) and mask embedding (MED-GAN Eq. 2).

Same contract as csrc/cutmix/cutmix_cpu.cpp / cutmix_cuda.cu. Images are [B, C, H, W] in NCHW or
channels_last storage; element-wise kernels walk the storage order (coalesced in both layouts).
The mask-embedding backward runs one program per source row of emb: it walks the row's footprint
in feat (tiles of (channel, row) x columns through the storage strides), writes dfeat, and bins
g * feat by source column into demb (float32, atomics only where x-chunks share a column).
"""
import torch
import triton
import triton.language as tl

from ._launch import launch


def _storage(t, cl):
    return t.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)


def is_channels_last(t):
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


@triton.jit
def _decode(i, C, H, W, CL: tl.constexpr):
    if CL:
        c = i % C
        x = (i // C) % W
        y = (i // (C * W)) % H
        n = i // (C * W * H)
    else:
        x = i % W
        y = (i // W) % H
        c = (i // (W * H)) % C
        n = i // (W * H * C)
    return n, c, y, x


@triton.jit(do_not_specialize=['C', 'H', 'W'])
def _cutmix_kernel(a, b, out0, out1, mask, boxes, numel, C, H, W, CL: tl.constexpr, MODE: tl.constexpr,
                   BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = i < numel
    n, c, y, x = _decode(i, C, H, W, CL)
    y0 = tl.load(boxes + 4 * n, mask=valid, other=0)
    x0 = tl.load(boxes + 4 * n + 1, mask=valid, other=0)
    y1 = tl.load(boxes + 4 * n + 2, mask=valid, other=0)
    x1 = tl.load(boxes + 4 * n + 3, mask=valid, other=0)
    inside = (y >= y0) & (y < y1) & (x >= x0) & (x < x1)
    if MODE == 0:  # mixed = box ? a : b (each element read from one source only); mask where c == 0
        va = tl.load(a + i, mask=valid & inside, other=0.0)
        vb = tl.load(b + i, mask=valid & (~inside), other=0.0)
        tl.store(out0 + i, tl.where(inside, va, vb), mask=valid)
        mval = tl.where(inside, 1.0, 0.0).to(mask.dtype.element_ty)
        tl.store(mask + (n * H + y) * W + x, mval, mask=valid & (c == 0))
    else:  # backward: ga = box ? g : 0, gb = box ? 0 : g
        g = tl.load(a + i, mask=valid, other=0.0)
        zero = tl.zeros_like(g)
        tl.store(out0 + i, tl.where(inside, g, zero), mask=valid)
        tl.store(out1 + i, tl.where(inside, zero, g), mask=valid)


_BLOCK = 1024


def cutmix_forward(xa, xb, boxes):
    cl = is_channels_last(xa)
    xa, xb = _storage(xa, cl), _storage(xb, cl)
    B, C, H, W = xa.shape
    out = torch.empty_like(xa)
    mask = torch.empty(B, 1, H, W, dtype=xa.dtype, device=xa.device)
    n = xa.numel()
    if n:
        launch(_cutmix_kernel, (triton.cdiv(n, _BLOCK),), (xa, xb, out, out, mask, boxes, n, C, H, W),
               dict(CL=cl, MODE=0, BLOCK=_BLOCK))
    else:
        mask.zero_()
    return out, mask


def cutmix_backward(g, boxes):
    cl = is_channels_last(g)
    g = _storage(g, cl)
    B, C, H, W = g.shape
    ga, gb = torch.empty_like(g), torch.empty_like(g)
    n = g.numel()
    if n:
        launch(_cutmix_kernel, (triton.cdiv(n, _BLOCK),), (g, g, ga, gb, g, boxes, n, C, H, W),
               dict(CL=cl, MODE=1, BLOCK=_BLOCK))
    return ga, gb


@triton.jit(do_not_specialize=['C', 'H', 'W', 'Ce', 'h', 'w'])
def _mask_embed_fwd_kernel(f, e, out, numel, C, H, W, Ce, h, w, CL: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    valid = i < numel
    n, c, y, x = _decode(i, C, H, W, CL)
    ce = tl.where(Ce == 1, 0, c)
    ei = ((n * Ce + ce) * h + y * h // H) * w + x * w // W
    fv = tl.load(f + i, mask=valid, other=0.0).to(tl.float32)
    ev = tl.load(e + ei, mask=valid, other=0.0).to(tl.float32)
    tl.store(out + i, (fv * (1.0 + ev)).to(out.dtype.element_ty), mask=valid)


def mask_embed_forward(feat, emb):
    cl = is_channels_last(feat)
    feat = _storage(feat, cl)
    B, C, H, W = feat.shape
    _, Ce, h, w = emb.shape
    out = torch.empty_like(feat)
    n = feat.numel()
    if n:
        launch(_mask_embed_fwd_kernel, (triton.cdiv(n, _BLOCK),), (feat, emb, out, n, C, H, W, Ce, h, w),
               dict(CL=cl, BLOCK=_BLOCK))
    return out


@triton.jit(do_not_specialize=['C', 'H', 'W', 'Ce', 'h', 'w'])
def _mask_embed_bwd_kernel(g, f, e, df, de, C, H, W, Ce, h, w, sN, sC, sH, sW, BLOCK_R: tl.constexpr,
                           BLOCK_W: tl.constexpr, BLOCK_SB: tl.constexpr):
    er = tl.program_id(0)
    s = er % h
    ce = (er // h) % Ce
    n = er // (h * Ce)
    Y0 = (s * H + h - 1) // h
    Y1 = tl.minimum(H, ((s + 1) * H + h - 1) // h)
    ny = Y1 - Y0
    nc = tl.where(Ce == 1, C, 1)
    c_lo = tl.where(Ce == 1, 0, ce)
    total = nc * ny
    base = n.to(tl.int64) * sN  # the sample's offset in int64; offsets inside one sample fit int32 (host check)
    gp, fp, dfp = g + base, f + base, df + base
    for x0 in range(0, W, BLOCK_W):
        xs = x0 + tl.arange(0, BLOCK_W)
        xm = xs < W
        sx = xs * w // W
        ev = tl.load(e + er.to(tl.int64) * w + sx, mask=xm, other=0.0).to(tl.float32)
        colacc = tl.zeros([BLOCK_W], dtype=tl.float32)
        for r0 in range(0, total, BLOCK_R):
            rs = r0 + tl.arange(0, BLOCK_R)
            rm = rs < total
            cc = c_lo + rs // tl.maximum(ny, 1)
            yy = Y0 + rs % tl.maximum(ny, 1)
            off = (cc * sC + yy * sH)[:, None] + (xs * sW)[None, :]
            m2 = rm[:, None] & xm[None, :]
            gv = tl.load(gp + off, mask=m2, other=0.0).to(tl.float32)
            fv = tl.load(fp + off, mask=m2, other=0.0).to(tl.float32)
            tl.store(dfp + off, (gv * (1.0 + ev[None, :])).to(df.dtype.element_ty), mask=m2)
            colacc += tl.sum(gv * fv, axis=0)
        first = x0 * w // W
        bins = tl.arange(0, BLOCK_SB)
        rel = sx - first
        contrib = tl.sum(tl.where((rel[None, :] == bins[:, None]) & xm[None, :], colacc[None, :], 0.0), axis=1)
        last = (tl.minimum(x0 + BLOCK_W, W) - 1) * w // W
        tl.atomic_add(de + er.to(tl.int64) * w + first + bins, contrib, mask=first + bins <= last)


def mask_embed_backward(g, feat, emb):
    cl = is_channels_last(feat)
    feat, g = _storage(feat, cl), _storage(g, cl)
    B, C, H, W = feat.shape
    _, Ce, h, w = emb.shape
    dfeat = torch.empty_like(feat)
    demb = torch.zeros(emb.shape, dtype=torch.float32, device=emb.device)
    rows = B * Ce * h
    if C * H * W >= 2 ** 31:
        raise ValueError(f"mask_embed (triton): one sample of feat has C*H*W = {C * H * W} >= 2^31 elements")
    if rows and feat.numel():
        # the binning tile is [BLOCK_SB, BLOCK_W]: above 16 384 elements it spills (tools/aot_tables/)
        BW = min(triton.next_power_of_2(W), 128)
        while BW > 16 and triton.next_power_of_2(BW * w // W + 2) * BW > 16384:
            BW //= 2
        BR = max(1, min(triton.next_power_of_2(max(1, C * triton.cdiv(H, h))), 4096 // BW))
        SB = triton.next_power_of_2(BW * w // W + 2)
        sN, sC, sH, sW = feat.stride()
        # 8 warps for the large tiles: with 4, Triton 3.6 spills the [BLOCK_R, BLOCK_W] tiles (channels_last)
        launch(_mask_embed_bwd_kernel, (rows,), (g, feat, emb, dfeat, demb, C, H, W, Ce, h, w, sN, sC, sH, sW),
               dict(BLOCK_R=BR, BLOCK_W=BW, BLOCK_SB=SB, num_warps=8 if BR * BW >= 2048 else 4))
    return dfeat, demb.to(emb.dtype)

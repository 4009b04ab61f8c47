"""Op family 3: CutMix and mask embedding (MED-GAN Eq. 1, 2, 6).

    cutmix(xa, xb, boxes) -> (mixed, mask)           Eq. (1), one pass over the images
    sample_cutmix_boxes(B, H, W, alpha=0.2)          lambda ~ Beta(alpha, alpha), MED-GAN Sec. 3
    sample_region_boxes(B, H, W, area, aspect)       the G-side mask prior q_m of Eq. (6)
    mask_embed(feat, emb) -> feat + up(emb) * feat   Eq. (2), resize inside the kernel

The meaning of each op is its plain-torch definition in ``ssgan_fast.ops.reference``; the fused
implementations (C++ CPU, CUDA, Triton) are chosen by ``ssgan_fast._backends.pick_backend``.
Images may be NCHW-contiguous or channels_last (outputs keep the layout of the first input) and
any float dtype. First-order gradients use the fused backward kernels; with
``create_graph=True`` (e.g. an R1 penalty through a mask-embedded D) the backward is built from
differentiable ops instead, so second derivatives are exact.
"""
from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from .._backends import c_ops, named, pick_backend, triton_kernels
from . import reference
from ._checks import check_tensor, values_checkable

__all__ = ["cutmix", "mask_embed", "sample_cutmix_boxes", "sample_cutmix_boxes_standard", "mix_labels",
           "sample_region_boxes", "box_mask"]


def _is_cl(t: Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _like(t: Tensor) -> Tensor:
    return torch.empty_like(t, memory_format=torch.channels_last if _is_cl(t) else torch.contiguous_format)


_NAMES = ("cutmix", "cutmix (backward)", "mask_embed", "mask_embed (backward)")
_INPUTS = (("xa", "xb", "boxes"), ("grad", "boxes"), ("feat", "emb"), ("grad", "feat", "emb"))


@functools.cache
def _impl(backend: str):
    """(cutmix_forward, cutmix_backward, mask_embed_forward, mask_embed_backward) of a backend."""
    if backend == "triton":
        k = triton_kernels("cutmix")
        fns = k.cutmix_forward, k.cutmix_backward, k.mask_embed_forward, k.mask_embed_backward
        return tuple(named(f, n, i) for f, n, i in zip(fns, _NAMES, _INPUTS, strict=False))
    o = c_ops(backend)
    return o.cutmix_forward, o.cutmix_backward, o.mask_embed_forward, o.mask_embed_backward


def _check_images(t, name: str):
    check_tensor(t, name)
    if t.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W], got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B = 0)")


def _check_boxes(boxes, B: int, H: int, W: int, device) -> Tensor:
    check_tensor(boxes, "boxes")
    if boxes.dtype not in (torch.int32, torch.int64, torch.int16):
        raise TypeError(f"boxes must be an integer tensor (y0, x0, y1, x1), got {boxes.dtype}")
    if tuple(boxes.shape) != (B, 4):
        raise ValueError(f"boxes must have shape [B, 4] = [{B}, 4] (y0, x0, y1, x1), got {tuple(boxes.shape)}")
    if boxes.device != device:
        raise ValueError(f"boxes are on {boxes.device} but the images are on {device}")
    if values_checkable():
        b = boxes.long()
        bad = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > H) | (b[:, 3] > W) | (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise ValueError(f"box {i} = {b[i].tolist()} (y0, x0, y1, x1) is outside the {H}x{W} image or inverted; "
                             f"need 0 <= y0 <= y1 <= {H} and 0 <= x0 <= x1 <= {W}")
    return boxes.to(torch.int32).contiguous()


# --------------------------------------------------------------------------- cutmix

@torch.library.custom_op("ssgan_fast::cutmix", mutates_args=())
def _cutmix_op(xa: Tensor, xb: Tensor, boxes: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    return tuple(_impl(backend)[0](xa, xb, boxes))


@_cutmix_op.register_fake
def _(xa, xb, boxes, backend):
    B, _, H, W = xa.shape
    return _like(xa), xa.new_empty(B, 1, H, W)


@torch.library.custom_op("ssgan_fast::cutmix_backward", mutates_args=())
def _cutmix_bwd_op(g: Tensor, boxes: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    return tuple(_impl(backend)[1](g, boxes))


@_cutmix_bwd_op.register_fake
def _(g, boxes, backend):
    return _like(g), _like(g)


def _cutmix_setup(ctx, inputs, output):
    _, _, boxes, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(boxes)
    ctx.mark_non_differentiable(output[1])


def _cutmix_grads(ctx, g, _gmask):
    (boxes,) = ctx.saved_tensors
    ga, gb = _cutmix_bwd_op(g, boxes, ctx.backend)
    return ga, gb, None, None


_cutmix_op.register_autograd(_cutmix_grads, setup_context=_cutmix_setup)


class _CutmixFn(torch.autograd.Function):
    """Eager path (no custom-op dispatch overhead)."""

    @staticmethod
    def forward(ctx, xa, xb, boxes, backend):
        out, mask = _impl(backend)[0](xa, xb, boxes)
        ctx.backend = backend
        ctx.save_for_backward(boxes)
        ctx.mark_non_differentiable(mask)
        return out, mask

    @staticmethod
    def backward(ctx, g, _gmask):
        (boxes,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: build the gradient from the op itself (linear in g)
            ga = cutmix(g, torch.zeros_like(g), boxes)[0]
            return ga, g - ga, None, None
        ga, gb = _impl(ctx.backend)[1](g, boxes)
        return ga, gb, None, None


def cutmix(xa: Tensor, xb: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """MED-GAN Eq. (1): mixed = m * xa + (1 - m) * xb, m = 1 inside the box.

    Args:
        xa, xb: [B, C, H, W] images of one shape and dtype (NCHW or channels_last).
        boxes: int [B, 4] rows (y0, x0, y1, x1), half-open, 0 <= y0 <= y1 <= H, 0 <= x0 <= x1 <= W
            (see ``sample_cutmix_boxes`` / ``sample_region_boxes``).
    Returns:
        (mixed [B, C, H, W] in the layout of xa, mask [B, 1, H, W] in the dtype of xa, no grad).
        Gradients flow to xa (inside the box) and xb (outside).
    """
    _check_images(xa, "xa")
    check_tensor(xb, "xb")
    if xb.shape != xa.shape or xb.dtype != xa.dtype or xb.device != xa.device:
        raise ValueError(f"xb must match xa in shape, dtype and device: xa {tuple(xa.shape)} {xa.dtype} {xa.device}, "
                         f"xb {tuple(xb.shape)} {xb.dtype} {xb.device}")
    B, _, H, W = xa.shape
    boxes = _check_boxes(boxes, B, H, W, xa.device)
    backend = pick_backend(xa.device)
    if backend == "ref":
        return reference.cutmix(xa, xb, boxes)
    if torch.compiler.is_compiling():
        return _cutmix_op(xa, xb, boxes, backend)
    return _CutmixFn.apply(xa, xb, boxes, backend)


# --------------------------------------------------------------------------- mask_embed

@torch.library.custom_op("ssgan_fast::mask_embed", mutates_args=())
def _mask_embed_op(feat: Tensor, emb: Tensor, backend: str) -> Tensor:
    return _impl(backend)[2](feat, emb)


@_mask_embed_op.register_fake
def _(feat, emb, backend):
    return _like(feat)


@torch.library.custom_op("ssgan_fast::mask_embed_backward", mutates_args=())
def _mask_embed_bwd_op(g: Tensor, feat: Tensor, emb: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    return tuple(_impl(backend)[3](g, feat, emb))


@_mask_embed_bwd_op.register_fake
def _(g, feat, emb, backend):
    return _like(feat), torch.empty_like(emb)


def _me_setup(ctx, inputs, output):
    feat, emb, backend = inputs
    ctx.backend = backend
    ctx.save_for_backward(feat, emb)


def _me_grads(ctx, g):
    feat, emb = ctx.saved_tensors
    dfeat, demb = _mask_embed_bwd_op(g, feat, emb, ctx.backend)
    return dfeat, demb, None


_mask_embed_op.register_autograd(_me_grads, setup_context=_me_setup)


def _footprint_sum(t: Tensor, h: int, w: int, ce: int) -> Tensor:
    """Adjoint of the nearest resize [B, ce, h, w] -> [B, C, H, W] (differentiable torch ops)."""
    B, C, H, W = t.shape
    if ce == 1:
        t = t.sum(1, keepdim=True)
    iy = reference.nearest_index(H, h, t.device)
    ix = reference.nearest_index(W, w, t.device)
    t = torch.zeros(B, t.shape[1], h, W, dtype=t.dtype, device=t.device).index_add(2, iy, t)
    return torch.zeros(B, t.shape[1], h, w, dtype=t.dtype, device=t.device).index_add(3, ix, t)


class _MaskEmbedFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feat, emb, backend):
        ctx.backend = backend
        ctx.save_for_backward(feat, emb)
        return _impl(backend)[2](feat, emb)

    @staticmethod
    def backward(ctx, g):
        feat, emb = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiable form (mask_embed is bilinear)
            dfeat = mask_embed(g, emb)
            return dfeat, _footprint_sum(g * feat, emb.shape[2], emb.shape[3], emb.shape[1]), None
        dfeat, demb = _impl(ctx.backend)[3](g, feat, emb)
        return dfeat, demb, None


def mask_embed(feat: Tensor, emb: Tensor) -> Tensor:
    """MED-GAN Eq. (2): feat + up(emb) * feat, with up the nearest resize of emb to feat's (H, W).

    Args:
        feat: [B, C, H, W] discriminator features (NCHW or channels_last, any float dtype).
        emb: [B, 1 or C, h, w] weight maps A_mask(m) at any resolution (lower than feat, equal, or a
            raw mask at image resolution to be downsized): resized inside the kernel, source index
            floor(y * h / H), floor(x * w / W). Cast to feat's dtype.
    Returns:
        [B, C, H, W] in the layout of feat; gradients flow to feat and emb.
    """
    _check_images(feat, "feat")
    check_tensor(emb, "emb")
    if emb.dim() != 4 or not emb.is_floating_point():
        raise ValueError(f"emb must be a 4-D floating-point tensor [B, 1 or C, h, w], got {tuple(emb.shape)} "
                         f"{emb.dtype}")
    B, C = feat.shape[:2]
    if emb.shape[0] != B or emb.shape[1] not in (1, C) or emb.shape[2] == 0 or emb.shape[3] == 0:
        raise ValueError(f"emb must be [B, 1 or C, h, w] = [{B}, 1 or {C}, h > 0, w > 0], got {tuple(emb.shape)}")
    if emb.device != feat.device:
        raise ValueError(f"emb is on {emb.device} but feat is on {feat.device}")
    emb = emb.to(feat.dtype).contiguous()
    backend = pick_backend(feat.device)
    if backend == "ref":
        return reference.mask_embed(feat, emb)
    if torch.compiler.is_compiling():
        return _mask_embed_op(feat, emb, backend)
    return _MaskEmbedFn.apply(feat, emb, backend)


# --------------------------------------------------------------------------- box samplers

def _uniform(n: int, generator, device) -> Tensor:
    return torch.rand(n, generator=generator, device=device)


def _place(hh: Tensor, ww: Tensor, H: int, W: int, generator, device, clip: bool) -> tuple[Tensor, Tensor]:
    """Boxes of sizes (hh, ww) with a uniform top-left corner; clip=True: anywhere on the image plane,
    the box cut at the border (MED-GAN Sec. 3); clip=False: the box stays inside the image."""
    B = hh.shape[0]
    if clip:
        y0 = (_uniform(B, generator, device) * H).long().clamp_max(H - 1)
        x0 = (_uniform(B, generator, device) * W).long().clamp_max(W - 1)
    else:
        y0 = (_uniform(B, generator, device) * (H - hh + 1)).long().clamp_max(H - hh)
        x0 = (_uniform(B, generator, device) * (W - ww + 1)).long().clamp_max(W - ww)
    y1 = torch.minimum(y0 + hh, torch.full_like(y0, H))
    x1 = torch.minimum(x0 + ww, torch.full_like(x0, W))
    boxes = torch.stack([y0, x0, y1, x1], 1).to(torch.int32)
    area = ((y1 - y0) * (x1 - x0)).float() / float(H * W)
    return boxes, area


def _check_sampler(B, H, W, generator, device):
    for v, name in ((B, "B"), (H, "H"), (W, "W")):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if generator is not None and device is not None and generator.device != torch.device(device):
        raise ValueError(f"generator is on {generator.device} but device is {device}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    return torch.device(device)


def sample_cutmix_boxes(B: int, H: int, W: int, alpha: float = 0.2, *, generator: torch.Generator | None = None,
                        device=None) -> tuple[Tensor, Tensor]:
    """CutMix boxes of MED-GAN Sec. 3: lambda ~ Beta(alpha, alpha), box side sqrt(1 - lambda) * (H, W),
    top-left corner uniform on the image plane, the box cut at the image border.

    All sampling is on ``device`` (default: the generator's, else CPU) from ``generator`` (reproducible;
    no host sync, so it can run inside a captured CUDA graph). Returns (boxes int32 [B, 4] as
    (y0, x0, y1, x1), area float32 [B] = real fraction of the image inside the box).
    """
    device = _check_sampler(B, H, W, generator, device)
    if not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    conc = torch.full((B, 2), float(alpha), device=device)
    lam = torch._sample_dirichlet(conc, generator=generator)[:, 0]  # Beta(alpha, alpha)
    r = torch.sqrt(1.0 - lam)
    hh = (r * H).long()
    ww = (r * W).long()
    return _place(hh, ww, H, W, generator, device, clip=True)


def sample_cutmix_boxes_standard(B: int, H: int, W: int, alpha: float = 1.0, *,
                                 generator: torch.Generator | None = None, device=None) -> tuple[Tensor, Tensor]:
    """The standard CutMix box (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features", its reference code's rand_bbox): lambda ~ Beta(alpha, alpha), box side
    sqrt(1 - lambda) * (H, W), the box *centre* uniform on the image, the box cut at the border (mean area
    0.30 at alpha = 1, against 0.19 for MED-GAN's ``sample_cutmix_boxes``, whose top-left corner is
    uniform). Same returns and device rules as ``sample_cutmix_boxes``: (boxes int32 [B, 4] (y0, x0, y1,
    x1), area float32 [B] = the fraction inside the box after the cut). ``cutmix(xa, xb, boxes)`` puts xa
    inside the box; ``mix_labels`` gives the matching soft labels."""
    device = _check_sampler(B, H, W, generator, device)
    if not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    conc = torch.full((B, 2), float(alpha), device=device)
    lam = torch._sample_dirichlet(conc, generator=generator)[:, 0]
    r = torch.sqrt(1.0 - lam)
    hh, ww = (r * H).long(), (r * W).long()
    cy = (_uniform(B, generator, device) * H).long().clamp_max(H - 1)
    cx = (_uniform(B, generator, device) * W).long().clamp_max(W - 1)
    y0, x0 = (cy - hh // 2).clamp(0, H), (cx - ww // 2).clamp(0, W)
    y1, x1 = (cy + hh // 2).clamp(0, H), (cx + ww // 2).clamp(0, W)
    boxes = torch.stack([y0, x0, y1, x1], 1).to(torch.int32)
    area = ((y1 - y0) * (x1 - x0)).float() / float(H * W)
    return boxes, area


def mix_labels(ya: Tensor, yb: Tensor, area: Tensor, num_classes: int) -> Tensor:
    """Soft labels [B, num_classes] of ``cutmix(xa, xb, boxes)``: xa fills the box, so its class gets the
    box's area fraction and xb's class the rest (area from the box sampler, after the cut at the border)."""
    if ya.shape != yb.shape or ya.dim() != 1 or area.shape != ya.shape:
        raise ValueError(f"ya, yb and area must all be [B], got {tuple(ya.shape)}, {tuple(yb.shape)}, "
                         f"{tuple(area.shape)}")
    a = area.to(torch.float32)[:, None]
    return (torch.nn.functional.one_hot(ya.long(), num_classes).float() * a
            + torch.nn.functional.one_hot(yb.long(), num_classes).float() * (1 - a))


def sample_region_boxes(B: int, H: int, W: int, area=(0.75, 1.0), aspect=(3 / 4, 4 / 3), *,
                        generator: torch.Generator | None = None, device=None) -> tuple[Tensor, Tensor]:
    """The random region prior q_m of MED-GAN Eq. (6): area fraction uniform in ``area``, aspect ratio
    w/h log-uniform in ``aspect``, sides clipped to the image, the box placed uniformly inside it.
    Returns (boxes int32 [B, 4], area float32 [B] = the real fraction after rounding and clipping)."""
    device = _check_sampler(B, H, W, generator, device)
    a0, a1 = map(float, area)
    r0, r1 = map(float, aspect)
    if not 0 < a0 <= a1 <= 1:
        raise ValueError(f"area must satisfy 0 < lo <= hi <= 1, got {area!r}")
    if not 0 < r0 <= r1:
        raise ValueError(f"aspect must satisfy 0 < lo <= hi, got {aspect!r}")
    a = a0 + (a1 - a0) * _uniform(B, generator, device)
    logr = math.log(r0) + (math.log(r1) - math.log(r0)) * _uniform(B, generator, device)
    r = torch.exp(logr)
    ww = torch.sqrt(a * H * W * r).round().long().clamp(1, W)
    hh = torch.sqrt(a * H * W / r).round().long().clamp(1, H)
    return _place(hh, ww, H, W, generator, device, clip=False)


def box_mask(boxes: Tensor, H: int, W: int, dtype=torch.float32) -> Tensor:
    """[B, 1, H, W] mask of the boxes (1 inside (y0, x0, y1, x1), half-open), e.g. the regions of
    sample_region_boxes for MED-GAN's region regularisers; plain torch (``reference.box_mask``)."""
    check_tensor(boxes, "boxes")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be [B, 4] (y0, x0, y1, x1), got shape {tuple(boxes.shape)}")
    return reference.box_mask(boxes, H, W, dtype)


def aot_cases(full: bool):
    """(label, thunk) pairs over the Triton dispatch of this family's ops, on meta tensors (tools/aot.py):
    NCHW and channels_last, 16-256 px, images (C 1 / 3) and D features."""
    from ._meta import BF16, F16, F32, backward, t
    sizes = (16, 32, 64, 128, 256) if full else (16, 128)
    for dt in (F32, BF16, F16):
        for cl in (False, True):
            fmt = torch.channels_last if cl else torch.contiguous_format
            for B in (1, 8, 64):
                for C in (1, 3):
                    for H in sizes:
                        def mix(B=B, C=C, H=H, dt=dt, fmt=fmt):
                            a = t(B, C, H, H, dtype=dt).contiguous(memory_format=fmt).requires_grad_()
                            b = t(B, C, H, H, dtype=dt).contiguous(memory_format=fmt).requires_grad_()
                            boxes = torch.zeros(B, 4, dtype=torch.int32, device="meta")
                            backward(cutmix(a, b, boxes)[0])
                        yield f"cutmix B{B} C{C} {H}px {str(dt)[6:]} cl{int(cl)}", mix
                for C in (64, 128, 256):
                    for H in (8,) + sizes:  # deep features at 8 px too; emb from a quarter to 4x the size
                        for h in sorted({H // 2 or 1, H, 2 * H, 4 * H, 8} & set(range(1, 513))):
                            for ce in (1, C):
                                def me(B=B, C=C, H=H, h=h, ce=ce, dt=dt, fmt=fmt):
                                    feat = t(B, C, H, H, dtype=dt).contiguous(memory_format=fmt).requires_grad_()
                                    backward(mask_embed(feat, t(B, ce, h, h, dtype=dt, grad=True)))
                                yield f"mask_embed B{B} C{C} {H}px emb{ce}x{h} {str(dt)[6:]} cl{int(cl)}", me

"""Op family 3 (cutmix, mask_embed, box samplers, MaskEmbedding) vs the float64 reference."""
import importlib

import numpy as np
import pytest
import torch

from ssgan_fast.ops import cutmix, mask_embed, sample_cutmix_boxes, sample_region_boxes
from ssgan_fast.ops import reference as R

from .util import BACKENDS, DTYPES, assert_close, leaf, ref_leaf

# B, C, H, W: odd sizes, one channel, a multi-row C++ grain, 1x1 images
SHAPES = [(1, 1, 1, 1), (3, 5, 7, 9), (4, 3, 32, 33), (2, 64, 6, 5)]
LAYOUTS = [pytest.param(False, id="nchw"), pytest.param(True, id="channels_last")]


def _layout(t, cl):
    return t.contiguous(memory_format=torch.channels_last) if cl else t.contiguous()


def _boxes(B, H, W, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, H + 1, (B, 2), generator=g).sort(1).values
    x = torch.randint(0, W + 1, (B, 2), generator=g).sort(1).values
    boxes = torch.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], 1)
    boxes[0] = torch.tensor([0, 0, H, W])  # a full box
    if B > 1:
        boxes[1] = torch.tensor([H // 2, W // 2, H // 2, W])  # an empty box
    return boxes


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES + [pytest.param(torch.float64, 0, 0, id="fp64")])
@pytest.mark.parametrize("cl", LAYOUTS)
@pytest.mark.parametrize("B,C,H,W", SHAPES)
def test_cutmix_exact(device, backend, dtype, atol, rtol, cl, B, C, H, W, use_backend):
    """A selection: values and gradients are exactly the reference's in every dtype."""
    use_backend(backend)
    g = torch.Generator().manual_seed(B * H + W)
    xa = leaf(_layout(torch.randn(B, C, H, W, generator=g), cl), dtype, device)
    xb = leaf(_layout(torch.randn(B, C, H, W, generator=g), cl), dtype, device)
    boxes = _boxes(B, H, W, seed=W).to(device)
    out, mask = cutmix(xa, xb, boxes)
    assert out.dtype == dtype and mask.shape == (B, 1, H, W) and not mask.requires_grad
    assert out.is_contiguous(memory_format=torch.channels_last) == (cl and C > 1 and H * W > 1) or out.is_contiguous()
    ro, rm = R.cutmix(xa.detach().cpu(), xb.detach().cpu(), boxes.cpu())
    assert torch.equal(out.detach().cpu(), ro) and torch.equal(mask.cpu(), rm)
    go = torch.randn(B, C, H, W, generator=g).to(device, dtype)
    out.backward(go)
    assert torch.equal(xa.grad.cpu(), torch.where(rm.bool(), go.cpu(), 0))
    assert torch.equal(xb.grad.cpu(), torch.where(rm.bool(), 0, go.cpu()))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol,rtol", DTYPES)
@pytest.mark.parametrize("cl", LAYOUTS)
@pytest.mark.parametrize("B,C,H,W,emb", [
    (2, 5, 7, 9, (1, 7, 9)),      # same resolution, shared map
    (3, 6, 8, 8, (6, 4, 4)),      # lower resolution, per channel (integer factor)
    (2, 3, 12, 10, (1, 5, 3)),    # lower resolution, non-integer factors
    (2, 4, 5, 6, (1, 16, 13)),    # a raw mask at higher resolution (downsized)
    (1, 70, 3, 3, (70, 2, 3)),    # many channels, per channel
])
def test_mask_embed_values_and_grads(device, backend, dtype, atol, rtol, cl, B, C, H, W, emb, use_backend):
    use_backend(backend)
    g = torch.Generator().manual_seed(C + H)
    f0 = _layout(torch.randn(B, C, H, W, generator=g), cl)
    e0 = torch.randn(B, *emb, generator=g)
    g0 = torch.randn(B, C, H, W, generator=g)
    f, e = leaf(f0, dtype, device), leaf(e0, dtype, device)
    out = mask_embed(f, e)
    assert out.dtype == dtype and out.shape == (B, C, H, W)
    (out.float() * g0.to(device)).sum().backward()
    fr, er = ref_leaf(f), ref_leaf(e)
    ref = R.mask_embed(fr, er)
    (ref * g0.double()).sum().backward()
    assert_close(out, ref, atol, rtol, "mask_embed")
    assert_close(f.grad, fr.grad, atol, rtol, "grad feat")
    assert_close(e.grad, er.grad, atol, rtol * 4, "grad emb")  # sums over a footprint


def test_reference_resize_matches_interpolate():
    """Where one size divides the other the resize is F.interpolate(mode='nearest')."""
    e = torch.randn(2, 3, 4, 6)
    for H, W in ((8, 12), (4, 6), (2, 3), (16, 6)):
        want = torch.nn.functional.interpolate(e, size=(H, W), mode="nearest")
        assert torch.equal(R.resize_nearest(e, H, W), want)


@pytest.mark.parametrize("backend", ["cpp", "ref"])
def test_gradcheck_and_gradgradcheck(backend, use_backend):
    use_backend(backend)
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=g).requires_grad_()
    e = torch.randn(2, 1, 3, 2, dtype=torch.float64, generator=g).requires_grad_()
    xb = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=g).requires_grad_()
    boxes = torch.tensor([[1, 0, 4, 3], [0, 1, 5, 2]])
    assert torch.autograd.gradcheck(lambda a, b: mask_embed(a, b), (f, e))
    assert torch.autograd.gradgradcheck(lambda a, b: mask_embed(a, b), (f, e))
    assert torch.autograd.gradcheck(lambda a, b: cutmix(a, b, boxes)[0], (f, xb))
    assert torch.autograd.gradgradcheck(lambda a, b: cutmix(a, b, boxes)[0] ** 2, (f, xb))
    # R1-style: gradient penalty through a mask-embedded feature map
    cl = f.detach().to(memory_format=torch.channels_last).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda a, b: mask_embed(a, b) ** 2, (cl, e))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "triton" not in p.id])
def test_opcheck_and_compile(device, backend, use_backend):
    use_backend(backend)
    xa = torch.randn(3, 4, 6, 5, device=device, requires_grad=True)
    xb = torch.randn(3, 4, 6, 5, device=device, requires_grad=True)
    emb = torch.randn(3, 1, 3, 5, device=device, requires_grad=True)
    boxes = torch.tensor([[1, 1, 4, 3], [0, 0, 6, 5], [2, 2, 2, 2]], dtype=torch.int32, device=device)
    mod = importlib.import_module("ssgan_fast.ops.cutmix")
    torch.library.opcheck(mod._cutmix_op, (xa, xb, boxes, backend))
    torch.library.opcheck(mod._mask_embed_op, (xa, emb, backend))

    def f(a, b, e):
        mixed, mask = cutmix(a, b, boxes)
        return (mask_embed(mixed, e) * mask).sum()

    want = f(xa, xb, emb)
    gw = torch.autograd.grad(want, (xa, xb, emb))
    torch._dynamo.reset()
    got = torch.compile(f, backend="aot_eager", fullgraph=True)(xa, xb, emb)
    gg = torch.autograd.grad(got, (xa, xb, emb))
    torch.testing.assert_close(got, want)
    for a, b in zip(gg, gw, strict=False):
        torch.testing.assert_close(a, b)


def test_bad_inputs():
    x = torch.randn(2, 3, 4, 5)
    ok = torch.tensor([[0, 0, 4, 5], [1, 1, 2, 2]])
    with pytest.raises(ValueError, match="outside"):
        cutmix(x, x, torch.tensor([[0, 0, 5, 5], [1, 1, 2, 2]]))
    with pytest.raises(ValueError, match="inverted|outside"):
        cutmix(x, x, torch.tensor([[2, 0, 1, 5], [1, 1, 2, 2]]))
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        cutmix(x, x, ok[:1])
    with pytest.raises(TypeError, match="integer"):
        cutmix(x, x, ok.float())
    with pytest.raises(ValueError, match="match xa"):
        cutmix(x, x.double(), ok)
    with pytest.raises(ValueError, match="4-D"):
        cutmix(x[0], x[0], ok)
    with pytest.raises(ValueError, match="empty batch"):
        cutmix(x[:0], x[:0], ok[:0])
    with pytest.raises(ValueError, match=r"1 or C"):
        mask_embed(x, torch.randn(2, 2, 4, 5))
    with pytest.raises(ValueError, match=r"1 or C"):
        mask_embed(x, torch.randn(2, 1, 0, 5))
    with pytest.raises(ValueError, match="positive"):
        sample_cutmix_boxes(0, 4, 4)
    with pytest.raises(ValueError, match="alpha"):
        sample_cutmix_boxes(2, 4, 4, alpha=0)
    with pytest.raises(ValueError, match="area"):
        sample_region_boxes(2, 4, 4, area=(0.5, 1.5))


def test_samplers_reproducible_and_consistent():
    B, H, W = 4096, 32, 24
    b1, a1 = sample_cutmix_boxes(B, H, W, 0.2, generator=torch.Generator().manual_seed(3))
    b2, a2 = sample_cutmix_boxes(B, H, W, 0.2, generator=torch.Generator().manual_seed(3))
    b3, _ = sample_cutmix_boxes(B, H, W, 0.2, generator=torch.Generator().manual_seed(4))
    assert torch.equal(b1, b2) and torch.equal(a1, a2) and not torch.equal(b1, b3)
    for boxes, area in ((b1, a1), sample_region_boxes(B, H, W, generator=torch.Generator().manual_seed(5))):
        assert boxes.dtype == torch.int32 and boxes.shape == (B, 4)
        y0, x0, y1, x1 = boxes.long().unbind(1)
        assert bool(((0 <= y0) & (y0 <= y1) & (y1 <= H) & (0 <= x0) & (x0 <= x1) & (x1 <= W)).all())
        torch.testing.assert_close(area, ((y1 - y0) * (x1 - x0)).float() / (H * W))
        mask = R.box_mask(boxes, H, W)
        torch.testing.assert_close(mask.mean((1, 2, 3)), area)
    # independent Monte Carlo of MED-GAN Sec. 3 (numpy's Beta): same mean area and box-side law
    rng = np.random.default_rng(0)
    r = np.sqrt(1 - rng.beta(0.2, 0.2, 200000))
    y0, x0 = rng.integers(0, H, r.size), rng.integers(0, W, r.size)
    hh = np.minimum(y0 + np.floor(r * H), H) - y0
    ww = np.minimum(x0 + np.floor(r * W), W) - x0
    assert abs(a1.mean().item() - (hh * ww).mean() / (H * W)) < 0.01
    assert abs((a1 < 0.05).float().mean().item() - ((hh * ww) / (H * W) < 0.05).mean()) < 0.03
    # region prior: area in [0.75, 1] up to rounding, aspect within [3/4, 4/3] up to rounding and clipping
    rb, ra = sample_region_boxes(B, 32, 32, generator=torch.Generator().manual_seed(6))  # square: no clipping loss
    assert ra.min() > 0.68 and ra.max() <= 1.0 and abs(ra.mean().item() - 0.875) < 0.03
    asp = (rb[:, 3] - rb[:, 1]).float() / (rb[:, 2] - rb[:, 0]).float()
    assert asp.min() > 0.6 and asp.max() < 1.6




def test_standard_cutmix_boxes_and_soft_labels():
    """The standard CutMix rand_bbox (box centre uniform; mean area 0.30 at alpha 1, against 0.19 for
    MED-GAN's sampler) and the soft labels of cutmix(xa, xb, boxes): xa's class gets the box's area."""
    from ssgan_fast.ops import cutmix, mix_labels, sample_cutmix_boxes, sample_cutmix_boxes_standard
    g = torch.Generator().manual_seed(0)
    assert abs(sample_cutmix_boxes_standard(20000, 32, 32, 1.0, generator=g)[1].mean().item() - 0.30) < 0.015
    assert abs(sample_cutmix_boxes(20000, 32, 32, 1.0, generator=g)[1].mean().item() - 0.19) < 0.015
    boxes, area = sample_cutmix_boxes_standard(20000, 16, 20, 1.0, generator=g)  # odd sizes: the cut is exact
    y0, x0, y1, x1 = boxes.long().unbind(1)
    assert (y0 >= 0).all() and (y1 <= 16).all() and (x0 >= 0).all() and (x1 <= 20).all()
    assert (y0 <= y1).all() and (x0 <= x1).all()
    torch.testing.assert_close(area, ((y1 - y0) * (x1 - x0)).float() / 320)
    xa, xb = torch.ones(6, 1, 16, 20), torch.zeros(6, 1, 16, 20)
    mixed, _ = cutmix(xa, xb, boxes[:6])
    ya, yb = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 0, 2, 2, 3])
    soft = mix_labels(ya, yb, area[:6], 5)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))
    inside = mixed.mean((1, 2, 3))  # the fraction of pixels taken from xa
    for i in range(6):
        expect = torch.zeros(5)
        expect[ya[i]] += inside[i]
        expect[yb[i]] += 1 - inside[i]
        torch.testing.assert_close(soft[i], expect)
    with pytest.raises(ValueError, match="alpha"):
        sample_cutmix_boxes_standard(2, 4, 4, 0.0)

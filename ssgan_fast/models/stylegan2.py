"""A StyleGAN2-ADA-style conditional generator and discriminator and ADA-style augmentation (the
second LCP-GAN base).

More: docs/modules.md, section ssgan_fast.models.stylegan2.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.blocks import blocks_for
from .base import one_hot


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate of StyleGAN (weights ~ N(0, 1) / lr_mul, scaled at run time)."""

    def __init__(self, din, dout, bias_init=0.0, lr_mul=1.0, act=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dout, din) / lr_mul)
        self.bias = nn.Parameter(torch.full((dout,), float(bias_init)))
        self.scale, self.lr_mul, self.act = lr_mul / math.sqrt(din), lr_mul, act

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * math.sqrt(2) if self.act else out


def _pixel_norm(x, eps=1e-8):
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + eps)


def fir_filter() -> torch.Tensor:
    """StyleGAN2's separable [1, 3, 3, 1] low-pass filter, [1, 1, 4, 4], summing to 1."""
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = f[:, None] * f[None, :]
    return (f / f.sum())[None, None]


def upsample2d(x, f):
    """upfirdn2d(x, f, up=2, gain=4, padding (2, 1)): zero insertion, then the filter; [B, C, 2H, 2W].
    One depthwise transposed convolution (stride 2, padding 1) computes exactly that."""
    C = x.shape[1]
    return F.conv_transpose2d(x, (f * 4).to(x.dtype).expand(C, 1, 4, 4), stride=2, padding=1, groups=C)


def downsample2d(x, f):
    """upfirdn2d(x, f, down=2, padding 1): the filter, then every second pixel; [B, C, H/2, W/2]."""
    C = x.shape[1]
    return F.conv2d(x, f.to(x.dtype).expand(C, 1, 4, 4), stride=2, padding=1, groups=C)


class ModConv(nn.Module):
    """Modulated convolution (StyleGAN2 Eq. 1-3): w' = w * s, demodulated per output channel."""

    def __init__(self, cin, cout, k, w_dim, demod=True, up=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.scale, self.demod, self.up, self.pad = 1 / math.sqrt(cin * k * k), demod, up, k // 2
        if up:
            self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x, w):
        B, cin, H, W = x.shape
        s = self.affine(w)  # [B, cin] styles
        wt = self.weight[None] * self.scale * s[:, None, :, None, None]  # [B, cout, cin, k, k]
        if self.demod:
            wt = wt * torch.rsqrt(wt.pow(2).sum((2, 3, 4), keepdim=True) + 1e-8)
        if self.up:
            x = upsample2d(x, self.fir)
            H, W = 2 * H, 2 * W
        out = F.conv2d(x.reshape(1, B * cin, H, W), wt.reshape(-1, cin, *wt.shape[3:]).to(x.dtype), padding=self.pad,
                       groups=B)
        return out.reshape(B, -1, H, W)


class StyleLayer(nn.Module):
    def __init__(self, cin, cout, w_dim, up=False):
        super().__init__()
        self.conv = ModConv(cin, cout, 3, w_dim, up=up)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, w):
        x = self.conv(x, w)
        noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        x = x + self.noise_strength * noise + self.bias.view(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, cin, cout, w_dim):
        super().__init__()
        self.conv = ModConv(cin, cout, 1, w_dim, demod=False)
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, w):
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


class StyleGenerator(nn.Module):
    """(z, condition embedding) -> image in [-1, 1]. Same calling convention as ResNetGenerator:
    ``forward(z, y)`` with class / cluster indices, or ``forward(z, emb=...)`` with a blended embedding
    (rows of ``self.embed.weight``); ``mix`` = style-mixing probability (training only).
    ``mapping_ws`` + ``synthesis`` are the two halves (the path-length penalty needs the ws)."""

    def __init__(self, z_dim, num_classes, resolution=32, ch=64, out_channels=3, emb_dim=128, w_dim=256,
                 map_layers=4):
        super().__init__()
        n = blocks_for(resolution)
        widths = [min(ch * m, 512) for m in (8, 8, 4, 2, 1, 1)[-(n + 1):]]
        self.embed = nn.Embedding(num_classes, emb_dim)
        self.embed_map = EqualLinear(emb_dim, z_dim)
        layers, d = [], 2 * z_dim
        for _ in range(map_layers):
            layers.append(EqualLinear(d, w_dim, lr_mul=0.01, act=True))
            d = w_dim
        self.mapping = nn.Sequential(*layers)
        self.const = nn.Parameter(torch.randn(1, widths[0], 4, 4))
        self.layers = nn.ModuleList([StyleLayer(widths[0], widths[0], w_dim)])
        self.rgbs = nn.ModuleList([ToRGB(widths[0], out_channels, w_dim)])
        for i in range(n):
            self.layers.append(StyleLayer(widths[i], widths[i + 1], w_dim, up=True))
            self.layers.append(StyleLayer(widths[i + 1], widths[i + 1], w_dim))
            self.rgbs.append(ToRGB(widths[i + 1], out_channels, w_dim))
        self.register_buffer("fir", fir_filter(), persistent=False)
        self.n = n
        self.num_ws = 2 * n + 2  # layer j reads ws[:, j]; toRGB i reads ws[:, 2 i + 1]

    def _w(self, z, e):
        return self.mapping(torch.cat([_pixel_norm(z), _pixel_norm(self.embed_map(e))], 1))

    def mapping_ws(self, z, y=None, emb=None, mix: float = 0.0):
        """ws [B, num_ws, w_dim]: w(z, c) at every layer, or with probability `mix` per row w(z, c) up to a
        random cut-off in [1, num_ws) and w(z', c) of a fresh latent z' after it (style mixing)."""
        e = self.embed(y) if emb is None else emb.to(z.dtype)
        w = self._w(z, e)
        ws = w[:, None].expand(-1, self.num_ws, -1)
        if mix > 0:
            B = z.shape[0]
            w2 = self._w(torch.randn_like(z), e)
            cut = torch.randint(1, self.num_ws, (B,), device=z.device)
            cut = torch.where(torch.rand(B, device=z.device) < mix, cut, self.num_ws)
            first = torch.arange(self.num_ws, device=z.device)[None, :, None] < cut[:, None, None]
            ws = torch.where(first, ws, w2[:, None])
        return ws

    def synthesis(self, ws):
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0])
        img = self.rgbs[0](x, ws[:, 1])
        for i in range(self.n):
            x = self.layers[1 + 2 * i](x, ws[:, 1 + 2 * i])
            x = self.layers[2 + 2 * i](x, ws[:, 2 + 2 * i])
            img = upsample2d(img, self.fir) + self.rgbs[i + 1](x, ws[:, 3 + 2 * i])
        return torch.tanh(img)

    def forward(self, z, y=None, emb=None, mix: float = 0.0):
        return self.synthesis(self.mapping_ws(z, y, emb, mix))


def path_lengths(G: StyleGenerator, ws, pl_noise):
    """|J_w^T n| per row (StyleGAN2 Sec. 5): the gradient of <G.synthesis(ws), pl_noise> w.r.t. ws,
    squares summed over the w dimensions and averaged over the layers, square root; differentiable
    (create_graph) for the penalty."""
    img = G.synthesis(ws)
    grad, = torch.autograd.grad((img * pl_noise.to(img.dtype)).sum(), ws, create_graph=True)
    return grad.float().pow(2).sum(2).mean(1).sqrt()


class EqualConv2d(nn.Module):
    """Conv with the equalised learning rate (weights ~ N(0, 1), scaled by 1/sqrt(fan_in) at run time),
    optional 2x downsampling after it and leaky ReLU * sqrt(2) (StyleGAN2's lrelu gain)."""

    def __init__(self, cin, cout, k, bias=True, act=True, down=False, gain=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale, self.act, self.down, self.gain, self.pad = 1 / math.sqrt(cin * k * k), act, down, gain, k // 2
        if down:
            self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, x):
        b = None if self.bias is None else self.bias.to(x.dtype)
        x = F.conv2d(x, (self.weight * self.scale).to(x.dtype), b, padding=self.pad)
        if self.down:
            x = downsample2d(x, self.fir)
        if self.act:
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        return x * self.gain if self.gain != 1 else x


class _DBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        g = math.sqrt(0.5)
        self.conv0 = EqualConv2d(cin, cin, 3)
        self.conv1 = EqualConv2d(cin, cout, 3, down=True, gain=g)
        self.skip = EqualConv2d(cin, cout, 1, bias=False, act=False, down=True, gain=g)

    def forward(self, x):
        return self.skip(x) + self.conv1(self.conv0(x))


def minibatch_std(x, group: int = 4):
    """Append the mean over features of the per-group standard deviation as one channel."""
    B, C, H, W = x.shape
    g = next(k for k in range(min(group, B), 0, -1) if B % k == 0)
    y = x.float().reshape(g, -1, C, H, W)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt().mean((1, 2, 3))  # [B / g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, H, W).to(x.dtype)
    return torch.cat([x, y], 1)


class StyleDiscriminator(nn.Module):
    """Conditional StyleGAN2(-ADA) D. ``forward(x, y)`` -> (logit [B], features h [B, F]); y = class
    indices (projection onto the label's cmap) or None (an unconditional logit)."""

    def __init__(self, num_classes, resolution=32, ch=64, in_channels=3, map_layers=2, cmap_dim=0):
        super().__init__()
        n = blocks_for(resolution)
        widths = [min(ch * m, 512) for m in (1, 2, 4, 8, 8, 8, 8)[:n + 1]]
        self.from_rgb = EqualConv2d(in_channels, widths[0], 1)
        self.blocks = nn.ModuleList([_DBlock(widths[i], widths[i + 1]) for i in range(n)])
        c = widths[n]
        self.conv = EqualConv2d(c + 1, c, 3)
        self.fc = EqualLinear(c * 16, c, act=True)
        self.feat_dim = c
        self.cmap_dim = cmap_dim or c
        self.out = EqualLinear(c, self.cmap_dim if num_classes else 1)
        if num_classes:
            self.embed = EqualLinear(num_classes, self.cmap_dim)
            self.mapping = nn.Sequential(*[EqualLinear(self.cmap_dim, self.cmap_dim, lr_mul=0.01, act=True)
                                           for _ in range(map_layers)])
        self.num_classes = num_classes

    def features(self, x):
        h = self.from_rgb(x)
        for b in self.blocks:
            h = b(h)
        h = self.conv(minibatch_std(h))
        return self.fc(h.flatten(1))

    def forward(self, x, y=None, u=None):
        """y [B] class indices, or u [B, num_classes] soft memberships in place of their one-hot rows."""
        h = self.features(x)
        out = self.out(h)
        if not self.num_classes:
            return out.squeeze(1), h
        if y is None and u is None:
            raise ValueError("a conditional StyleDiscriminator needs the labels y (or memberships u)")
        c = u.to(h.dtype) if u is not None else one_hot(y, self.num_classes, h.dtype)
        cmap = self.mapping(_pixel_norm(self.embed(c)))
        return (out * cmap.to(out.dtype)).sum(1) / math.sqrt(self.cmap_dim), h


class ADAugment(nn.Module):
    """Adaptive discriminator augmentation (StyleGAN2-ADA's idea, a small differentiable subset)."""

    def __init__(self, target: float = 0.6, ada_kimg: float = 500.0):
        super().__init__()
        if not 0 < target < 1:
            raise ValueError(f"ADA target must be in (0, 1), got {target}")
        self.target, self.ada_kimg = float(target), float(ada_kimg)
        self.register_buffer("p", torch.zeros(()))

    def forward(self, x):
        B = x.shape[0]
        p = self.p.to(x.dtype)

        def pick():
            return (torch.rand(B, 1, 1, 1, device=x.device) < p).to(x.dtype)
        x = torch.lerp(x, x.flip(3), pick())  # x-flip
        H, W = x.shape[2:]
        shift = max(1, H // 8)
        pad = F.pad(x, (shift, shift, shift, shift), mode="reflect")
        dy = torch.randint(-shift, shift + 1, (B,), device=x.device)
        dx = torch.randint(-shift, shift + 1, (B,), device=x.device)
        iy = (torch.arange(H, device=x.device)[None] + shift + dy[:, None])  # [B, H]
        ix = (torch.arange(W, device=x.device)[None] + shift + dx[:, None])
        rows = torch.arange(B, device=x.device)[:, None, None]
        moved = pad[rows, :, iy[:, :, None], ix[:, None, :]].permute(0, 3, 1, 2)
        x = torch.lerp(x, moved, pick())  # integer translation
        x = x + pick() * (torch.randn(B, 1, 1, 1, device=x.device, dtype=x.dtype) * 0.2)  # brightness
        mean = x.mean((1, 2, 3), keepdim=True)
        x = torch.lerp(x, (x - mean) * torch.exp2(torch.randn(B, 1, 1, 1, device=x.device) * 0.5).to(x.dtype) + mean,
                       pick())  # contrast
        if x.shape[1] == 3:
            gray = x.mean(1, keepdim=True)
            sat = torch.exp2(torch.randn(B, 1, 1, 1, device=x.device) * 1.0).to(x.dtype)
            x = torch.lerp(x, (x - gray) * sat + gray, pick())  # saturation
        return x

    @torch.no_grad()
    def update(self, real_logits):
        """p += sign(E[sign(D(real))] - target) * batch / (ada_kimg * 1000), clamped to [0, 1]."""
        r = torch.sign(real_logits.float()).mean()
        step = real_logits.shape[0] / (self.ada_kimg * 1000)
        self.p.add_(torch.sign(r - self.target) * step).clamp_(0, 1)

"""Building blocks: spectral-norm layers, conditional BN, BigGAN-style ResNet generator /
discriminator (32 / 64 / 128 px) with optional self-attention and projection head, a ResNet
classifier, and MLPs for 2-D data. Widths, depth and attention resolution come from the preset.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm

__all__ = ["SNConv2d", "SNLinear", "CondBN", "GBlock", "DBlock", "SelfAttention", "ResNetGenerator",
           "ResNetDiscriminator", "ResNetClassifier", "MLP", "blocks_for"]


@torch.library.custom_op("ssgan_fast::sn_power_", mutates_args=("u", "v"))
def _sn_power_(weight_mat: torch.Tensor, u: torch.Tensor, v: torch.Tensor, n: int, eps: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """n power iterations updating u, v in place (torch's _power_method); returns fresh copies."""
    for _ in range(n):
        F.normalize(torch.mv(weight_mat, v), dim=0, eps=eps, out=u)
        F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=eps, out=v)
    return u.clone(memory_format=torch.contiguous_format), v.clone(memory_format=torch.contiguous_format)


@_sn_power_.register_fake
def _(weight_mat, u, v, n, eps):
    return torch.empty_like(u), torch.empty_like(v)


class _CompilableSpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrization (same buffers, init, power iteration and values) made
    torch.compile-able: with the in-place iteration traced inline, inductor's backward saves the u / v
    buffers that the next forward of the same layer updates ("modified by an inplace operation" when
    D runs twice before one backward, torch 2.14). Here the iteration is one opaque op that mutates
    the buffers and returns fresh copies, which is what sigma = u^T W v uses and backward saves."""

    def forward(self, weight):
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            u, v = _sn_power_(weight_mat.detach(), self._u, self._v, self.n_power_iterations, self.eps)
        else:
            u = self._u.clone(memory_format=torch.contiguous_format)
            v = self._v.clone(memory_format=torch.contiguous_format)
        sigma = torch.vdot(u, torch.mv(weight_mat, v))
        return weight / sigma


def spectral_norm(m: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Spectral normalisation of m.weight (one power iteration per training forward), as
    torch.nn.utils.parametrizations.spectral_norm - same state_dict keys - but torch.compile-able."""
    dim = 1 if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    parametrize.register_parametrization(m, "weight", _CompilableSpectralNorm(m.weight, n_power_iterations, dim, eps))
    return m


def SNConv2d(*a, sn: bool = True, **k) -> nn.Module:
    m = nn.Conv2d(*a, **k)
    nn.init.xavier_uniform_(m.weight)
    return spectral_norm(m) if sn else m


def SNLinear(*a, sn: bool = True, **k) -> nn.Module:
    m = nn.Linear(*a, **k)
    nn.init.xavier_uniform_(m.weight)
    return spectral_norm(m) if sn else m


class CondBN(nn.Module):
    """BatchNorm without affine, then gain (1 + Wg c) and bias (Wb c) from a condition vector c."""

    def __init__(self, ch: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=False)
        self.gain = nn.Linear(cond_dim, ch)
        self.bias = nn.Linear(cond_dim, ch)
        for lin in (self.gain, self.bias):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x, c):
        return self.bn(x) * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class GBlock(nn.Module):
    def __init__(self, cin, cout, cond_dim, sn=True):
        super().__init__()
        self.bn1, self.bn2 = CondBN(cin, cond_dim), CondBN(cout, cond_dim)
        self.c1 = SNConv2d(cin, cout, 3, padding=1, sn=sn)
        self.c2 = SNConv2d(cout, cout, 3, padding=1, sn=sn)
        self.sc = SNConv2d(cin, cout, 1, sn=sn)

    def forward(self, x, c):
        h = F.interpolate(F.relu(self.bn1(x, c)), scale_factor=2, mode="nearest")
        h = self.c2(F.relu(self.bn2(self.c1(h), c)))
        return h + self.sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    def __init__(self, cin, cout, down=True, preact=True, sn=True, bn=False):
        super().__init__()
        self.c1 = SNConv2d(cin, cout, 3, padding=1, sn=sn)
        self.c2 = SNConv2d(cout, cout, 3, padding=1, sn=sn)
        self.sc = SNConv2d(cin, cout, 1, sn=sn) if (cin != cout or down) else None
        self.bn1 = nn.BatchNorm2d(cin) if bn and preact else None
        self.bn2 = nn.BatchNorm2d(cout) if bn else None
        self.down, self.preact = down, preact

    def forward(self, x):
        h = x
        if self.preact:
            h = F.relu(self.bn1(h) if self.bn1 is not None else h)
        h = self.c1(h)
        h = F.relu(self.bn2(h) if self.bn2 is not None else h)
        h = self.c2(h)
        s = x
        if self.preact:
            s = self.sc(s) if self.sc is not None else s
            s = F.avg_pool2d(s, 2) if self.down else s
        else:  # first block: pool, then 1x1 (BigGAN order for the input block)
            s = F.avg_pool2d(s, 2) if self.down else s
            s = self.sc(s) if self.sc is not None else s
        return (F.avg_pool2d(h, 2) if self.down else h) + s


class SelfAttention(nn.Module):
    """SAGAN self-attention (BigGAN form): 1x1 SN convs, 2x2 max-pooled keys / values, gamma = 0 at init."""

    def __init__(self, ch, sn=True):
        super().__init__()
        if ch < 8:
            raise ValueError(f"self-attention needs >= 8 channels at its resolution, got {ch} (raise model.ch or set "
                             "model.attn_res=0)")
        self.theta = SNConv2d(ch, ch // 8, 1, bias=False, sn=sn)
        self.phi = SNConv2d(ch, ch // 8, 1, bias=False, sn=sn)
        self.g = SNConv2d(ch, ch // 2, 1, bias=False, sn=sn)
        self.o = SNConv2d(ch // 2, ch, 1, bias=False, sn=sn)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        B, C, H, W = x.shape
        q = self.theta(x).flatten(2)
        k = F.max_pool2d(self.phi(x), 2).flatten(2)
        v = F.max_pool2d(self.g(x), 2).flatten(2)
        attn = torch.softmax(q.transpose(1, 2) @ k, -1)
        o = (v @ attn.transpose(1, 2)).reshape(B, C // 2, H, W)
        return x + self.gamma * self.o(o)


def blocks_for(resolution: int) -> int:
    """Number of 2x up / down stages: 4 -> resolution (32: 3, 64: 4, 128: 5); 8 / 16 px: 1 / 2."""
    n = int(round(math.log2(resolution / 4)))
    if n < 1 or 4 * 2 ** n != resolution:
        raise ValueError(f"resolution must be 4 * 2^n with n >= 1 (8, 16, 32, 64, 128), got {resolution}")
    return n


class ResNetGenerator(nn.Module):
    """BigGAN-style: z (or a latent code) -> 4x4 -> [GBlock (up)] x n -> BN-ReLU-conv3 -> tanh.
    Conditional BN from cat(latent, class embedding); `num_classes=0` for unconditional."""

    def __init__(self, latent_dim, num_classes, resolution=32, ch=64, out_channels=3, emb_dim=128, attn_res=0,
                 sn=True, widths=None):
        super().__init__()
        n = blocks_for(resolution)
        widths = widths or [ch * m for m in (8, 8, 4, 2, 1, 1)[-(n + 1):]] if n <= 5 else None
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, emb_dim) if num_classes else None
        cond = latent_dim + (emb_dim if num_classes else 0)
        self.lin = SNLinear(latent_dim, 16 * widths[0], sn=sn)
        self.blocks = nn.ModuleList()
        res = 4
        for i in range(n):
            self.blocks.append(GBlock(widths[i], widths[i + 1], cond, sn=sn))
            res *= 2
            if attn_res and res == attn_res:
                self.blocks.append(SelfAttention(widths[i + 1], sn=sn))
        self.bn = nn.BatchNorm2d(widths[-1])
        self.out = SNConv2d(widths[-1], out_channels, 3, padding=1, sn=sn)
        self.w0 = widths[0]

    def forward(self, z, y=None, emb=None):
        """z [B, latent]; y [B] class indices, or ``emb`` [B, emb_dim] a class embedding given
        directly (e.g. a blend of two classes' rows of ``self.embed.weight`` for morphing)."""
        if self.embed is None:
            c = z
        else:
            c = torch.cat([z, self.embed(y) if emb is None else emb.to(z.dtype)], 1)
        h = self.lin(z).view(z.shape[0], self.w0, 4, 4)
        for b in self.blocks:
            h = b(h, c) if isinstance(b, GBlock) else b(h)
        return torch.tanh(self.out(F.relu(self.bn(h))))


class ResNetDiscriminator(nn.Module):
    """BigGAN-style: [DBlock (down)] x n + DBlock -> ReLU -> sum pooling = features h [B, F];
    ``forward(x, y)`` -> (logit [B], h): linear(h) + projection <embed(y), h> when y is given."""

    def __init__(self, num_classes, resolution=32, ch=64, in_channels=3, attn_res=0, sn=True, widths=None):
        super().__init__()
        n = blocks_for(resolution)
        widths = widths or [ch * m for m in (1, 2, 4, 8, 8, 16)[:n + 1]]
        self.blocks = nn.ModuleList()
        cin, res = in_channels, resolution
        for i in range(n):
            self.blocks.append(DBlock(cin, widths[i], down=True, preact=i > 0, sn=sn))
            cin = widths[i]
            res //= 2
            if attn_res and res == attn_res:
                self.blocks.append(SelfAttention(cin, sn=sn))
        self.blocks.append(DBlock(cin, widths[n], down=False, sn=sn))
        self.feat_dim = widths[n]
        self.lin = SNLinear(self.feat_dim, 1, sn=sn)
        self.embed = SNLinear(num_classes, self.feat_dim, bias=False, sn=sn) if num_classes else None

    def features(self, x):
        h = x
        for b in self.blocks:
            h = b(h)
        return F.relu(h).sum((2, 3))

    def forward(self, x, y=None, u=None):
        """y [B] class indices, or u [B, num_classes] soft memberships (a blend of the embedding rows)."""
        h = self.features(x)
        out = self.lin(h).squeeze(1)
        if self.embed is not None and u is not None:
            out = out + ((u.to(h.dtype) @ self.embed.weight.t()) * h).sum(1)
        elif y is not None and self.embed is not None:
            out = out + (self.embed.weight.t()[y] * h).sum(1)
        return out, h


class ResNetClassifier(nn.Module):
    """Classifier C: ResNet stages with BatchNorm (no SN), global pooling, dropout, linear."""

    def __init__(self, num_classes, resolution=32, ch=32, in_channels=3, dropout=0.2):
        super().__init__()
        n = blocks_for(resolution)
        widths = [ch * m for m in (1, 2, 4, 8, 8, 8)[:n + 1]]
        layers, cin = [], in_channels
        for i in range(n):
            layers.append(DBlock(cin, widths[i], down=True, preact=i > 0, sn=False, bn=True))
            cin = widths[i]
        layers.append(DBlock(cin, widths[n], down=False, sn=False, bn=True))
        self.body = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[n])
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(widths[n], num_classes)

    def features(self, x):
        """Input of the last FC layer (the f_C of CVAE-GAN Eq. 4 / 6)."""
        return F.relu(self.bn(self.body(x))).mean((2, 3))

    def forward(self, x):
        return self.fc(self.drop(self.features(x)))


class MLP(nn.Module):
    def __init__(self, din, dout, hidden=(128, 128), act=nn.LeakyReLU, sn=False):
        super().__init__()
        layers, d = [], din
        for h in hidden:
            layers += [SNLinear(d, h, sn=sn), act(0.2) if act is nn.LeakyReLU else act()]
            d = h
        layers.append(SNLinear(d, dout, sn=sn))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def thumbnail(x: torch.Tensor) -> torch.Tensor:
    """8x8 grayscale thumbnails, flattened (64-d): cheap image features for clustering small images."""
    return F.adaptive_avg_pool2d(x.float().mean(1, keepdim=True), 8).flatten(1)

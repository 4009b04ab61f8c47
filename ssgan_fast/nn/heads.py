"""Classifier heads with learnable prototypes / class weights on the unit hypersphere."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import aam_cross_entropy, aam_logits, clustering_loss, cosine_softmax


class PrototypeHead(nn.Module):
    """K learnable prototypes and a cosine-softmax assignment (SphericGAN Eq. 1-2, LCP-GAN Eq. 3).

    Replaces a softmax classifier head ``nn.Linear(D, K)`` + ``softmax`` by angle-only
    assignments to prototypes::

        # before:  probs = torch.softmax(self.fc(feat), dim=1)
        head = PrototypeHead(D, K, tau=0.1)
        probs = head(feat)                      # [B, K], rows sum to 1
        loss = head.clustering_loss(feat)       # SphericGAN Eq. (2), lam = 4 by default
        probs = head(feat, group=(y, offsets))  # LCP-GAN: only the clusters of class y

    Args:
        in_features: D. num_prototypes: K.
        tau: softmax temperature; ``learn_tau=True`` makes it a parameter (kept positive through
            its logarithm).
    """

    def __init__(self, in_features: int, num_prototypes: int, tau: float = 1.0, learn_tau: bool = False):
        super().__init__()
        if in_features < 1 or num_prototypes < 1:
            raise ValueError("in_features and num_prototypes must be >= 1")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.prototypes = nn.Parameter(torch.randn(num_prototypes, in_features) / math.sqrt(in_features))
        log_tau = torch.tensor(math.log(tau))
        if learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def forward(self, x: torch.Tensor, group=None) -> torch.Tensor:
        return cosine_softmax(x, self.prototypes, self.tau, group)

    def clustering_loss(self, x: torch.Tensor, lam: float = 4.0) -> torch.Tensor:
        return clustering_loss(x, self.prototypes, self.tau, lam)

    def extra_repr(self) -> str:
        K, D = self.prototypes.shape
        return f"in_features={D}, num_prototypes={K}, learn_tau={isinstance(self.log_tau, nn.Parameter)}"


class AAMHead(nn.Module):
    """Additive angular margin classifier (aam-discriminator Eq. 8, ArcFace) - no bias.

    Replaces the softmax auxiliary classifier of an ACGAN / StarGAN discriminator::

        # before:  cls_loss = F.cross_entropy(self.fc(feat), y)
        head = AAMHead(D, num_classes, s=30.0, m=0.5)
        cls_loss = head.loss(feat, y)          # fused: no [B, C] logits kept for backward
        logits = head(feat)                    # s * cos(theta) for prediction (no margin)
        logits = head(feat, y)                 # training logits with the margin at y
    """

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0, m: float = 0.5):
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise ValueError("AAMHead needs in_features >= 1 and num_classes >= 2")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.s, self.m = float(s), float(m)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if target is None:
            target = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
            return aam_logits(x, self.weight, target, self.s, 0.0)
        return aam_logits(x, self.weight, target, self.s, self.m)

    def loss(self, x: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return aam_cross_entropy(x, self.weight, target, self.s, self.m, reduction)

    def extra_repr(self) -> str:
        C, D = self.weight.shape
        return f"in_features={D}, num_classes={C}, s={self.s}, m={self.m}"


def _up(t: torch.Tensor) -> torch.Tensor:
    """Half / bfloat16 -> float32 for losses and probabilities; float32 / float64 unchanged."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class AuxClassifier(nn.Module):
    """The auxiliary classifier D_cls of an ACGAN / StarGAN discriminator (aam-discriminator
    Eq. 3-4), either the paper's AAM head (Eq. 8: no bias, unit weights and features, margin m,
    scale s) or the softmax baseline (Eq. 7: a plain linear layer + cross-entropy).

    Single-label: ``loss(h, y)`` with y [B] int64. Multi-attribute (``num_attrs = A``): y [B, A]
    in {0, 1}; the softmax baseline is StarGAN's per-attribute BCE, the AAM form is one 2-class
    AAM problem per attribute (weights [A, 2, D]) averaged over attributes.
    ``probs(h)`` gives class probabilities [B, C] (single label) or attribute probabilities [B, A].
    """

    def __init__(self, in_features: int, num_classes: int, kind: str = "aam", s: float = 30.0, m: float = 0.5,
                 num_attrs: int = 0, bias: bool = False):
        super().__init__()
        if kind not in ("aam", "softmax"):
            raise ValueError(f"aux classifier kind must be 'aam' or 'softmax', got {kind!r}")
        self.kind, self.num_attrs = kind, num_attrs
        if num_attrs:
            if kind == "aam":
                self.heads = nn.ModuleList(AAMHead(in_features, 2, s, m) for _ in range(num_attrs))
            else:
                self.fc = nn.Linear(in_features, num_attrs, bias=bias)
        elif kind == "aam":
            self.head = AAMHead(in_features, num_classes, s, m)
        else:
            self.fc = nn.Linear(in_features, num_classes, bias=bias)

    def loss(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.num_attrs:
            if self.kind == "aam":
                t = y.round().long()
                return sum(head.loss(h, t[:, a]) for a, head in enumerate(self.heads)) / self.num_attrs
            lg = _up(self.fc(h))
            return nn.functional.binary_cross_entropy_with_logits(lg, y.to(lg.dtype))
        if self.kind == "aam":
            return self.head.loss(h, y)
        return nn.functional.cross_entropy(_up(self.fc(h)), y)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Prediction logits (no margin): [B, C], or [B, A] log-odds of each attribute."""
        if self.num_attrs:
            if self.kind == "aam":
                pairs = [_up(head(h)) for head in self.heads]  # [B, 2] logits per attribute: (off, on)
                return torch.stack([p[:, 1] - p[:, 0] for p in pairs], 1)
            return _up(self.fc(h))
        return _up(self.head(h) if self.kind == "aam" else self.fc(h))

    def probs(self, h: torch.Tensor) -> torch.Tensor:
        lg = self.logits(h)
        return torch.sigmoid(lg) if self.num_attrs else torch.softmax(lg, 1)

"""Classifier heads with learnable prototypes / class weights on the unit hypersphere."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import aam_chance_loss, aam_cross_entropy, aam_logits, clustering_loss, cosine_softmax


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
    """Additive angular margin classifier (ArcFace; Eq. 8 of "Label Geometry Aware Discriminator for
    Conditional Generative Networks") - no bias, unit class weights and features.

    Replaces the softmax auxiliary classifier of an ACGAN / StarGAN discriminator::

        # before:  cls_loss = F.cross_entropy(self.fc(feat), y)
        head = AAMHead(D, num_classes)         # s = 30, m = 0.5, calibrated loss
        cls_loss = head.loss(feat, y)          # fused: no [B, C] logits kept for backward
        logits = head(feat)                    # s * cos(theta) for prediction (no margin)
        logits = head(feat, y)                 # training logits with the margin at y

    Args:
        in_features: D, the width of the features the head takes ([B, D], or [B, D, 1, 1] as a conv
            classifier gives them).
        num_classes: C >= 2.
        s: the logit scale (the radius of the hypersphere the features are put on).
        m: the additive angular margin on the target angle, in radians, in [0, pi).
        calibrate: divide the loss by ``aam_chance_loss(C, s, m) / log C``, so that an untrained
            head's loss is log C, where a softmax cross-entropy starts. At s = 30, m = 0.5 the raw
            Eq. 8 loss starts about 7x higher (16.6 against 2.3 for C = 10), and a lambda_cls tuned
            for softmax then overweights the class term: on the examples' ACGAN the raw head left the
            class pixels far off (Frechet distance 5x the softmax run's), the calibrated head beat the
            softmax baseline (docs: "Dropping AAM into your GAN"). False gives the paper's raw loss.
            Only ``loss`` is scaled; the logits are Eq. 8's.
        learn_s: learn the scale (a parameter ``log_s``, s = exp(log_s) > 0, starting at `s`; the calibration
            factor stays that of the starting s). The ops then take the unfused path (the [B, C] logits of
            s = 1, times s, into torch's cross-entropy).
    """

    def __init__(self, in_features: int, num_classes: int, s: float = 30.0, m: float = 0.5,
                 calibrate: bool = True, learn_s: bool = False):
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise ValueError("AAMHead needs in_features >= 1 and num_classes >= 2")
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.s, self.m = float(s), float(m)
        self.calibrate = bool(calibrate)
        self.loss_scale = math.log(num_classes) / aam_chance_loss(num_classes, self.s, self.m) if calibrate else 1.0
        self.log_s = nn.Parameter(torch.tensor(math.log(self.s))) if learn_s else None

    @property
    def scale(self):
        """The logit scale the ops take: the float s, or exp(log_s) (a tensor in the graph) with learn_s."""
        return self.s if self.log_s is None else self.log_s.exp()

    def _feat(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[2:] == (1, 1):  # [B, D, 1, 1]: a conv classifier's pooled output
            return x.flatten(1)
        return x

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, C]: s cos(theta_j) (no margin) without `target`; with target [B] (int64 class
        indices) the target column is s cos(theta_y + m), as in training."""
        x = self._feat(x)
        if target is None:
            target = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
            return aam_logits(x, self.weight, target, self.scale, 0.0)
        return aam_logits(x, self.weight, target, self.scale, self.m)

    def loss(self, x: torch.Tensor, target: torch.Tensor, reduction: str = "mean",
             ignore_index: int | None = None, margin: float | None = None) -> torch.Tensor:
        """The AAM cross-entropy of features x [B, D] (or [B, D, 1, 1]) against target [B] (int64
        class indices): a float32 scalar ("mean", "sum") or [B] ("none"), times the calibration
        factor when ``calibrate``. ignore_index (e.g. -1 for unlabeled rows): those rows add nothing;
        "mean" averages over the others (0 when none is left). margin: this call's m in place of the
        head's (e.g. 0 for a generator's term; the calibration factor stays the head's)."""
        x = self._feat(x)
        m = self.m if margin is None else float(margin)
        if ignore_index is not None:
            if target.shape[:1] != x.shape[:1]:
                raise ValueError(f"target must have one label per row of x ({x.shape[0]}), got {tuple(target.shape)}")
            keep = target != ignore_index
            if reduction == "none":
                safe = torch.where(keep, target, torch.zeros_like(target))
                per = aam_cross_entropy(x, self.weight, safe, self.scale, m, "none")
                return torch.where(keep, per, torch.zeros_like(per)) * self.loss_scale
            x, target = x[keep], target[keep]
            if x.shape[0] == 0:
                return (self.weight.sum() * 0.0).float()
        return aam_cross_entropy(x, self.weight, target, self.scale, m, reduction) * self.loss_scale

    def extra_repr(self) -> str:
        C, D = self.weight.shape
        learned = "" if self.log_s is None else ", learn_s=True"
        return f"in_features={D}, num_classes={C}, s={self.s}, m={self.m}, calibrate={self.calibrate}{learned}"


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
    ``calibrate`` (AAM only): the loss scaled to start at log C, as ``AAMHead``'s (False: Eq. 8 raw,
    the paper's).
    """

    def __init__(self, in_features: int, num_classes: int, kind: str = "aam", s: float = 30.0, m: float = 0.5,
                 num_attrs: int = 0, bias: bool = False, calibrate: bool = False):
        super().__init__()
        if kind not in ("aam", "softmax"):
            raise ValueError(f"aux classifier kind must be 'aam' or 'softmax', got {kind!r}")
        self.kind, self.num_attrs = kind, num_attrs
        if num_attrs:
            if kind == "aam":
                self.heads = nn.ModuleList(AAMHead(in_features, 2, s, m, calibrate) for _ in range(num_attrs))
            else:
                self.fc = nn.Linear(in_features, num_attrs, bias=bias)
        elif kind == "aam":
            self.head = AAMHead(in_features, num_classes, s, m, calibrate)
        else:
            self.fc = nn.Linear(in_features, num_classes, bias=bias)

    def loss(self, h: torch.Tensor, y: torch.Tensor, margin: bool = True) -> torch.Tensor:
        """margin=False: the AAM heads' loss without the margin (m = 0); no effect on softmax."""
        mm = None if margin else 0.0
        if self.num_attrs:
            if self.kind == "aam":
                t = y.round().long()
                return sum(head.loss(h, t[:, a], margin=mm) for a, head in enumerate(self.heads)) / self.num_attrs
            lg = _up(self.fc(h))
            return nn.functional.binary_cross_entropy_with_logits(lg, y.to(lg.dtype))
        if self.kind == "aam":
            return self.head.loss(h, y, margin=mm)
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

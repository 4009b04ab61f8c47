"""Fused ops of ssgan_fast. Each is defined by its plain-torch reference in ``reference``.

Backends are picked by the input's device (CUDA: Triton, else CUDA; CPU: C++); force one with
``SSGAN_FAST_BACKEND=ref|cpp|cuda|triton``.

Index: each op family has one name in every place (kernels/, csrc/cpu, csrc/cuda, ssgan_fast/ops,
tests/ops, bench/):
    prototype      cosine_softmax, clustering_loss, prototype_ema_update, group_offsets
    aam            aam_logits, aam_cross_entropy, aam_chance_loss
    cutmix         cutmix, mask_embed, sample_cutmix_boxes, sample_region_boxes, box_mask
    feature_stats  FeatureStats, frechet_distance, trace_sqrt_product
    knn            knn_smallest, knn_radius_count (P/R, D/C: k-NN radii and radius counts in tiles)
prototype and aam share one kernel core, cosine_logits ("normalised linear + softmax"):
kernels/cosine_logits.py (row kernels), kernels/cosine_logits_fused.py (single-launch kernels),
csrc/cpu/cosine_logits.cpp, csrc/cuda/cosine_logits.cu, csrc/cosine_logits_host.cpp and
ops/_cosine_logits.py (the per-op host functions: cosine_softmax_fwd / _bwd, clustering_loss_bwd,
aam_logits_fwd / _bwd, aam_ce_fwd / _bwd / _fused). The prototype EMA has its own kernels
(kernels/prototype.py, csrc/*/prototype.*). Constants and the margin math: csrc/shared.h
(generated into ssgan_fast/_constants.py).
"""
from ._checks import emulated_capture
from .aam import aam_chance_loss, aam_cross_entropy, aam_logits
from .cutmix import (
                     box_mask,
                     cutmix,
                     mask_embed,
                     mix_labels,
                     sample_cutmix_boxes,
                     sample_cutmix_boxes_standard,
                     sample_region_boxes,
)
from .feature_stats import FeatureStats, frechet_distance, trace_sqrt_product
from .knn import knn_radius_count, knn_smallest
from .prototype import clustering_loss, cosine_softmax, group_offsets, prototype_ema_update

__all__ = ["cosine_softmax", "clustering_loss", "prototype_ema_update", "group_offsets", "aam_logits",
           "aam_cross_entropy", "aam_chance_loss", "cutmix", "mask_embed", "sample_cutmix_boxes",
           "sample_cutmix_boxes_standard", "mix_labels",
           "sample_region_boxes", "box_mask",
           "FeatureStats", "frechet_distance", "trace_sqrt_product", "knn_smallest", "knn_radius_count",
           "emulated_capture"]

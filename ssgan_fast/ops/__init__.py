"""Fused ops of ssgan_fast. Each is defined by its plain-torch reference in ``reference``.

Backends are picked by the input's device (CUDA: Triton, else CUDA; CPU: C++); force one with
``SSGAN_FAST_BACKEND=ref|cpp|cuda|triton``.

Index: an op family has one name in every place -
kernels/<family>.py (Triton), csrc/<family>/ (schema, registration, C++ CPU and CUDA kernels),
ssgan_fast/ops/<family>.py, tests/ops/test_<family>.py, bench/ops/<family>.py:
    cosine_logits  the shared core of prototype and aam ("normalised linear + softmax"): the per-op
                   host functions (cosine_softmax_fwd / _bwd, clustering_loss_bwd, aam_logits_fwd / _bwd,
                   aam_ce_fwd / _bwd / _fused) and each op's autograd; kernels/cosine_logits.py (row
                   kernels) and kernels/cosine_logits_fused.py (single-launch kernels)
    prototype      cosine_softmax, clustering_loss, prototype_ema_update, group_offsets
    aam            aam_logits, aam_cross_entropy, aam_chance_loss
    cutmix         cutmix, mask_embed, sample_cutmix_boxes, sample_region_boxes, box_mask
    feature_stats  FeatureStats, frechet_distance, trace_sqrt_product
    knn            knn_smallest, knn_radius_count (P/R, D/C: k-NN radii and radius counts in tiles)
Each family registers its own backends: its C++ schema and kernels in csrc/<family>/<family>_ops.cpp, its
Triton kernels by name (``_backends.triton_kernels("<family>")``), its AOT walk as ``aot_cases`` here.
Adding a family adds its own files and one line to FAMILIES. Constants and the margin math:
csrc/common/shared.h (generated into ssgan_fast/_constants.py). How to add a family: docs/design.md.
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

# the op families (modules of this package), for the tools that walk every family (tools/aot.py)
FAMILIES = ("cosine_logits", "prototype", "aam", "cutmix", "feature_stats", "knn")

__all__ = ["cosine_softmax", "clustering_loss", "prototype_ema_update", "group_offsets", "aam_logits",
           "aam_cross_entropy", "aam_chance_loss", "cutmix", "mask_embed", "sample_cutmix_boxes",
           "sample_cutmix_boxes_standard", "mix_labels",
           "sample_region_boxes", "box_mask",
           "FeatureStats", "frechet_distance", "trace_sqrt_product", "knn_smallest", "knn_radius_count",
           "emulated_capture"]

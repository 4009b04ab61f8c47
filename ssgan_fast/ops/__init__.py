"""Fused ops of ssgan_fast. Each is defined by its plain-torch reference in ``reference``.

Backends are picked by the input's device (CUDA: Triton, else CUDA; CPU: C++); force one with
``SSGAN_FAST_BACKEND=ref|cpp|cuda|triton``.
"""
from .aam import aam_cross_entropy, aam_logits
from .cutmix import cutmix, mask_embed, sample_cutmix_boxes, sample_region_boxes
from .prototype import clustering_loss, cosine_softmax, group_offsets, prototype_ema_update
from .stats import FeatureStats, frechet_distance, trace_sqrt_product

__all__ = ["cosine_softmax", "clustering_loss", "prototype_ema_update", "group_offsets", "aam_logits",
           "aam_cross_entropy", "cutmix", "mask_embed", "sample_cutmix_boxes", "sample_region_boxes", "FeatureStats",
           "frechet_distance", "trace_sqrt_product"]

"""The ops' scalar constants. GENERATED from csrc/common/shared.h by tools/gen_constants.py: edit the header."""

# F.normalize semantics: v / max(||v||, NORM_EPS)
NORM_EPS = 1e-12
# the ArcFace margin clamps cos to [-1 + eps, 1 - eps] inside the square root (finite gradient at |c| = 1)
MARGIN_CLAMP_EPS = 1e-07
# SphericGAN Eq. (2): log(mean_b phi) is taken of max(mean_b phi, PBAR_MIN) (a cluster with no mass at all)
PBAR_MIN = 1e-30
# above this many weight elements aam_cross_entropy does not precompute dW in the forward
FUSED_CE_MAX_WEIGHT = 16777216
# float32 elements of one logits tile of the chunked cross-entropy (16 MiB)
CE_TILE_ELEMS = 4194304
# fewest columns per chunk of the no-grad / per-row-grad cross-entropy
CE_MIN_COLS = 1024
# rows per float32 GEMM of the feature statistics before the float64 accumulation
FEATURE_STATS_CHUNK = 4096

__all__ = [
    'NORM_EPS',
    'MARGIN_CLAMP_EPS',
    'PBAR_MIN',
    'FUSED_CE_MAX_WEIGHT',
    'CE_TILE_ELEMS',
    'CE_MIN_COLS',
    'FEATURE_STATS_CHUNK',
]

// The one source of the ops' scalar constants and of the ArcFace margin math, for the C++ (CPU)
// and CUDA code (__host__ __device__). Python and Triton read the same values from
// ssgan_fast/_constants.py, generated from this file (python tools/gen_constants.py);
// tests/ops/test_constants.py checks that every language sees the same values.
//
// Constant lines have the form `SSGAN_CONST(type, NAME, value)  // comment`: the generator reads them.
#pragma once
#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

#define SSGAN_CONST(type, name, value) constexpr type name = value;

namespace ssgan_fast {

// F.normalize semantics: v / max(||v||, NORM_EPS)
SSGAN_CONST(double, NORM_EPS, 1e-12)
// the ArcFace margin clamps cos to [-1 + eps, 1 - eps] inside the square root (finite gradient at |c| = 1)
SSGAN_CONST(double, MARGIN_CLAMP_EPS, 1e-7)
// SphericGAN Eq. (2): log(mean_b phi) is taken of max(mean_b phi, PBAR_MIN) (a cluster with no mass at all)
SSGAN_CONST(double, PBAR_MIN, 1e-30)
// above this many weight elements aam_cross_entropy does not precompute dW in the forward
SSGAN_CONST(int64_t, FUSED_CE_MAX_WEIGHT, int64_t{1} << 24)
// float32 elements of one logits tile of the chunked cross-entropy (16 MiB)
SSGAN_CONST(int64_t, CE_TILE_ELEMS, int64_t{1} << 22)
// fewest columns per chunk of the no-grad / per-row-grad cross-entropy
SSGAN_CONST(int64_t, CE_MIN_COLS, 1024)
// rows per float32 GEMM of the feature statistics before the float64 accumulation
SSGAN_CONST(int64_t, FEATURE_STATS_CHUNK, 4096)

// Rows per chunk of the fused cross-entropy: a [rows, K] float32 tile of CE_TILE_ELEMS.
inline int64_t ce_row_chunk(int64_t B, int64_t K) {
  const int64_t k = K > 1 ? K : 1;
  const int64_t r = CE_TILE_ELEMS / k, n = B < r ? B : r;
  return n < 1 ? 1 : n;
}

// ArcFace additive angular margin (aam-discriminator Eq. 8), insightface's non-"easy" form:
//   phi(c) = cos(acos(c) + m)          if c > th = cos(pi - m)
//          = c - mm, mm = sin(pi - m)*m otherwise (keeps phi monotone once theta + m > pi).
template <typename T>
struct MarginT {
  T cos_m, sin_m, th, mm;
};
template <typename T>
inline MarginT<T> make_margin_t(double m) {
  const double pi = 3.14159265358979323846;
  return MarginT<T>{(T)std::cos(m), (T)std::sin(m), (T)std::cos(pi - m), (T)(std::sin(pi - m) * m)};
}

C10_HOST_DEVICE inline float margin_sqrt(float v) { return sqrtf(v); }
C10_HOST_DEVICE inline double margin_sqrt(double v) { return sqrt(v); }

// phi(c)
template <typename T>
C10_HOST_DEVICE inline T margin_fwd(T c, const MarginT<T>& M) {
  const T lo = T(-1) + static_cast<T>(MARGIN_CLAMP_EPS), hi = T(1) - static_cast<T>(MARGIN_CLAMP_EPS);
  T cc = c < lo ? lo : c;
  cc = hi < cc ? hi : cc;
  return c > M.th ? cc * M.cos_m - margin_sqrt(T(1) - cc * cc) * M.sin_m : c - M.mm;
}
// dphi / dc (0 where the clamp is active)
template <typename T>
C10_HOST_DEVICE inline T margin_bwd(T c, const MarginT<T>& M) {
  const T eps = static_cast<T>(MARGIN_CLAMP_EPS);
  if (!(c > M.th)) return T(1);
  if (c < T(-1) + eps || c > T(1) - eps) return T(0);
  return M.cos_m + M.sin_m * c / margin_sqrt(T(1) - c * c);
}

}  // namespace ssgan_fast

#undef SSGAN_CONST

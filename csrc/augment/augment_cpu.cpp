// C++ CPU kernel of the loaders' batched augmentation (ssgan_fast/data/augment.py): one pass that
// shifts each uint8 image by (dy[b], dx[b]) with reflected borders (mode 0) or a constant fill
// (mode 1), mirrors it where flip[b], and writes float(double(v) / divisor + shift) as float32
// (or v as uint8 when to_float is false). It replaces torch.gather (int64 index per element) + dtype conversion +
// two elementwise passes on the CPU; the GPU uses the torch ops.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstring>
#include <vector>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "augment/augment.h"


namespace ssgan_fast {
namespace {
inline int64_t reflect(int64_t v, int64_t n) { return v < 0 ? -v : (v >= n ? 2 * (n - 1) - v : v); }

// The inside of a row, where the shifted columns need no reflection or fill: o[j] = lut[s[j]]
// (ascending source) or lut[s[-j]] (mirrored). Table lookups, so every path gives the LUT's exact
// values; AVX2: 8 bytes widened and gathered from the table per step.
void run_base(const uint8_t* s, bool mirrored, float* __restrict__ o, int64_t n, const float* __restrict__ lut) {
  if (mirrored) {
    for (int64_t j = 0; j < n; ++j) o[j] = lut[s[-j]];
  } else {
    for (int64_t j = 0; j < n; ++j) o[j] = lut[s[j]];
  }
}
#if defined(__x86_64__) && defined(__GNUC__)
// 8 source bytes starting at s + j (ascending) or ending at s - j (mirrored, reversed), as int32 lanes
__attribute__((target("avx2"))) inline __m256i load8(const uint8_t* s, bool mirrored, int64_t j) {
  if (!mirrored) return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + j)));
  const __m128i rev = _mm_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, -1, -1, -1, -1, -1, -1, -1, -1);
  return _mm256_cvtepu8_epi32(_mm_shuffle_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s - j - 7)), rev));
}
// (v + c) / d in float: an exact subtraction and one correctly rounded division - the LUT's values
// wherever affine_matches_lut says so (checked for all 256 inputs with these same instructions).
__attribute__((target("avx2"))) inline __m256 affine8(__m256i v, __m256 c, __m256 d) {
  return _mm256_div_ps(_mm256_add_ps(_mm256_cvtepi32_ps(v), c), d);
}
__attribute__((target("avx2"))) bool affine_matches_lut(const float* lut, float c, float d) {
  alignas(32) float got[8];
  for (int v0 = 0; v0 < 256; v0 += 8) {
    _mm256_store_ps(got, affine8(_mm256_setr_epi32(v0, v0 + 1, v0 + 2, v0 + 3, v0 + 4, v0 + 5, v0 + 6, v0 + 7),
                                 _mm256_set1_ps(c), _mm256_set1_ps(d)));
    if (std::memcmp(got, lut + v0, sizeof(got)) != 0) return false;
  }
  return true;
}
__attribute__((target("avx2"))) void run_avx2(const uint8_t* s, bool mirrored, float* __restrict__ o, int64_t n,
                                               const float* __restrict__ lut, bool affine, float c, float d) {
  int64_t j = 0;
  if (affine) {
    const __m256 vc = _mm256_set1_ps(c), vd = _mm256_set1_ps(d);
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(o + j, affine8(load8(s, mirrored, j), vc, vd));
  } else {
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(o + j, _mm256_i32gather_ps(lut, load8(s, mirrored, j), 4));
  }
  for (; j < n; ++j) o[j] = lut[mirrored ? s[-j] : s[j]];
}
bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}
#endif

// The LUT is float(double(v) / divisor + shift); where (v + shift * divisor) / divisor in float
// gives exactly those values (it does for the loaders' 127.5, -1), the AVX2 path computes instead of
// gathering. Otherwise - and without AVX2 - table lookups.
struct RunConverter {
  const float* lut;
  bool avx2 = false, affine = false;
  float c = 0.f, d = 1.f;
  RunConverter(const float* lut_, double divisor, double shift) : lut(lut_) {
#if defined(__x86_64__) && defined(__GNUC__)
    avx2 = has_avx2();
    const double cd = shift * divisor;
    c = static_cast<float>(cd);
    d = static_cast<float>(divisor);
    affine = avx2 && static_cast<double>(c) == cd && static_cast<double>(d) == divisor && affine_matches_lut(lut, c, d);
#endif
  }
  void operator()(const uint8_t* s, bool mirrored, float* o, int64_t n) const {
#if defined(__x86_64__) && defined(__GNUC__)
    if (avx2) return run_avx2(s, mirrored, o, n, lut, affine, c, d);
#endif
    run_base(s, mirrored, o, n, lut);
  }
};
}  // namespace

at::Tensor augment_shift_cpu(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& dx, const at::Tensor& flip,
                             int64_t mode, double fill, double divisor, double shift, bool to_float) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kByte && x.dim() == 4 && x.is_contiguous(),
              "augment_shift: x must be a contiguous uint8 CPU tensor [B, C, H, W]");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK(dy.scalar_type() == at::kLong && dx.scalar_type() == at::kLong && dy.numel() == B && dx.numel() == B &&
                  dy.is_contiguous() && dx.is_contiguous(),
              "augment_shift: dy, dx must be contiguous int64 [B]");
  TORCH_CHECK(flip.numel() == 0 || (flip.scalar_type() == at::kBool && flip.numel() == B && flip.is_contiguous()),
              "augment_shift: flip must be empty or contiguous bool [B]");
  TORCH_CHECK(mode == 0 || mode == 1, "augment_shift: mode must be 0 (reflect) or 1 (fill)");
  at::Tensor out = at::empty({B, C, H, W}, x.options().dtype(to_float ? at::kFloat : at::kByte));
  if (out.numel() == 0) return out;
  const uint8_t* src = x.const_data_ptr<uint8_t>();
  const int64_t* pdy = dy.const_data_ptr<int64_t>();
  const int64_t* pdx = dx.const_data_ptr<int64_t>();
  const bool* pf = flip.numel() ? flip.const_data_ptr<bool>() : nullptr;
  float lut[256];  // the conversion, exactly as ssgan_fast.data.augment.UNIT_LUT defines it
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<float>(static_cast<double>(i) / divisor + shift);
  const float fill_f = static_cast<float>(fill);
  const RunConverter convert_run(lut, divisor, shift);
  void* dst = out.data_ptr();
  at::parallel_for(0, B * C, 1, [&](int64_t p0, int64_t p1) {
    std::vector<int64_t> cols(W);
    std::vector<uint8_t> ok(W);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t b = p / C;
      const bool f = pf != nullptr && pf[b];
      for (int64_t j = 0; j < W; ++j) {
        int64_t c = pdx[b] + j;
        if (f) c = W - 1 - c;
        ok[j] = mode == 1 ? (c >= 0 && c < W) : 1;
        cols[j] = mode == 0 ? reflect(c, W) : (ok[j] ? c : 0);
      }
      const uint8_t* plane = src + p * H * W;
      for (int64_t i = 0; i < H; ++i) {
        int64_t r = pdy[b] + i;
        const bool row_ok = mode == 0 || (r >= 0 && r < H);
        r = mode == 0 ? reflect(r, H) : (row_ok ? r : 0);
        const uint8_t* srow = plane + r * W;
        if (to_float) {
          float* o = static_cast<float*>(dst) + (p * H + i) * W;
          // columns j0 .. j1 - 1 map inside the row without reflection / fill: one contiguous run
          const int64_t j0 = std::min<int64_t>(W, std::max<int64_t>(0, -pdx[b]));
          const int64_t j1 = std::max<int64_t>(j0, std::min<int64_t>(W, W - pdx[b]));
          if (!row_ok) {
            std::fill(o, o + W, fill_f);
            continue;
          }
          for (int64_t j = 0; j < j0; ++j) o[j] = ok[j] ? lut[srow[cols[j]]] : fill_f;
          if (j1 > j0) convert_run(srow + cols[j0], f, o + j0, j1 - j0);
          for (int64_t j = j1; j < W; ++j) o[j] = ok[j] ? lut[srow[cols[j]]] : fill_f;
        } else {
          uint8_t* o = static_cast<uint8_t*>(dst) + (p * H + i) * W;
          const uint8_t fu = static_cast<uint8_t>(fill);
          for (int64_t j = 0; j < W; ++j) o[j] = row_ok && ok[j] ? srow[cols[j]] : fu;
        }
      }
    }
  });
  return out;
}

}  // namespace ssgan_fast

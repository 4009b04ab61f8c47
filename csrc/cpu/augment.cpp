// C++ CPU kernel of the loaders' batched augmentation (ssgan_fast/data/augment.py): one pass that
// shifts each uint8 image by (dy[b], dx[b]) with reflected borders (mode 0) or a constant fill
// (mode 1), mirrors it where flip[b], and writes float(double(v) / divisor + shift) as float32
// (or v as uint8 when to_float is false). It replaces torch.gather (int64 index per element) + dtype conversion +
// two elementwise passes on the CPU; the GPU uses the torch ops.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <vector>

#include "../image_ops.h"

namespace ssgan_fast {
namespace {
inline int64_t reflect(int64_t v, int64_t n) { return v < 0 ? -v : (v >= n ? 2 * (n - 1) - v : v); }
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
          for (int64_t j = 0; j < W; ++j) o[j] = row_ok && ok[j] ? lut[srow[cols[j]]] : fill_f;
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

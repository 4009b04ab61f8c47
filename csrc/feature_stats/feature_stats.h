// Op family "feature_stats": per-class feature moments for FID / Intra-FID / cFID.
// Kernels: cpu/feature_stats.cpp, cuda/feature_stats.cu.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>

#include "common/shared.h"

namespace ssgan_fast {

// Per-class moments of shifted features, accumulated in place (float64 accumulators):
//   count[c] += n_c,  sum[c] += sum_{i in c} (x_i - shift_c),  xtx[c] += sum_{i in c} (x_i - shift_c)(x_i - shift_c)^T
// Only the upper triangle of xtx (j >= i) is defined after the call: kernels may skip the lower
// blocks of the symmetric product (the CPU one does) or mirror them (CUDA, Triton).
// x [N, D] float32/float64 (products in the dtype of x, i.e. float32 products for float32 features,
// accumulated in float64 once per call); labels int64 [N] in [0, C) (the caller checks); shift [C, D].
void feature_stats_moments_cpu(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift, const at::Tensor& count,
                       const at::Tensor& sum, const at::Tensor& xtx);

#ifdef WITH_CUDA
void feature_stats_moments_cuda(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift, const at::Tensor& count,
                        const at::Tensor& sum, const at::Tensor& xtx);
#endif

inline void check_feature_stats_moments(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift,
                                const at::Tensor& count, const at::Tensor& sum, const at::Tensor& xtx) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              "feature_stats_moments: x must be contiguous float32/float64 [N, D]");
  const int64_t N = x.size(0), D = x.size(1), C = count.numel();
  TORCH_CHECK(labels.scalar_type() == at::kLong && labels.is_contiguous() && labels.numel() == N,
              "feature_stats_moments: labels must be int64 contiguous [N]");
  TORCH_CHECK(shift.scalar_type() == x.scalar_type() && shift.is_contiguous() && shift.dim() == 2 && shift.size(0) == C &&
                  shift.size(1) == D,
              "feature_stats_moments: shift must be contiguous [C, D] with the dtype of x");
  TORCH_CHECK(count.scalar_type() == at::kDouble && count.is_contiguous() && count.dim() == 1,
              "feature_stats_moments: count must be float64 contiguous [C]");
  TORCH_CHECK(sum.scalar_type() == at::kDouble && sum.is_contiguous() && sum.dim() == 2 && sum.size(0) == C && sum.size(1) == D,
              "feature_stats_moments: sum must be float64 contiguous [C, D]");
  TORCH_CHECK(xtx.scalar_type() == at::kDouble && xtx.is_contiguous() && xtx.dim() == 3 && xtx.size(0) == C &&
                  xtx.size(1) == D && xtx.size(2) == D,
              "feature_stats_moments: xtx must be float64 contiguous [C, D, D]");
  for (const at::Tensor* t : {&labels, &shift, &count, &sum, &xtx}) {
    TORCH_CHECK(t->device() == x.device(), "feature_stats_moments: all tensors must be on the device of x");
  }
}

}  // namespace ssgan_fast

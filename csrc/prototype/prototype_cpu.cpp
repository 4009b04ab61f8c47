// C++ CPU kernel of the prototype moving-average update (LCP-GAN Eq. 2):
//   rho_k <- (1 - mu) rho_k + mu * sums_k / wsum_k  where wsum_k > 0, unchanged otherwise.
// sums = weights^T feats and wsum = column sums of weights come from the host (GEMM).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "prototype/prototype.h"

namespace ssgan_fast {

void prototype_ema_rows_cpu(const at::Tensor& protos, const at::Tensor& sums, const at::Tensor& wsum,
                            double momentum) {
  check_ema_args(protos, sums, wsum);
  const int64_t K = protos.size(0), D = protos.size(1);
  const float mu = static_cast<float>(momentum);
  const float* ps = sums.data_ptr<float>();
  const float* pw = wsum.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, protos.scalar_type(), "prototype_ema_rows_cpu", [&] {
    scalar_t* pp = protos.data_ptr<scalar_t>();
    at::parallel_for(0, K, 16, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        if (!(pw[k] > 0.f)) continue;
        const float inv = 1.f / pw[k];
        for (int64_t j = 0; j < D; ++j) {
          const float p = static_cast<float>(pp[k * D + j]);
          pp[k * D + j] = static_cast<scalar_t>((1.f - mu) * p + mu * ps[k * D + j] * inv);
        }
      }
    });
  });
}

}  // namespace ssgan_fast

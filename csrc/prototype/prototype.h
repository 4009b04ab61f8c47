// Op family "prototype": the moving-average prototype update of LCP-GAN Eq. (2) (ema_rows).
// The prototype assignment ops (cosine_softmax, clustering_loss) run on the shared cosine-logits
// core: cosine_logits.h.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace ssgan_fast {

void prototype_ema_rows_cpu(const at::Tensor& protos, const at::Tensor& sums, const at::Tensor& wsum,
                            double momentum);
#ifdef WITH_CUDA
void prototype_ema_rows_cuda(const at::Tensor& protos, const at::Tensor& sums, const at::Tensor& wsum,
                             double momentum);
#endif

inline void check_ema_args(const at::Tensor& protos, const at::Tensor& sums, const at::Tensor& wsum) {
  TORCH_CHECK(protos.dim() == 2 && protos.is_contiguous() && at::isFloatingType(protos.scalar_type()),
              "prototype_ema: protos must be a contiguous floating [K, D] tensor");
  TORCH_CHECK(sums.scalar_type() == at::kFloat && sums.is_contiguous() && sums.sizes() == protos.sizes(),
              "prototype_ema: sums must have the dtype of dots and be contiguous with the shape of protos");
  TORCH_CHECK(wsum.scalar_type() == at::kFloat && wsum.is_contiguous() && wsum.numel() == protos.size(0),
              "prototype_ema: wsum must have the dtype of dots and be contiguous [K]");
  TORCH_CHECK(sums.device() == protos.device() && wsum.device() == protos.device(),
              "prototype_ema: all tensors must be on the same device");
}

}  // namespace ssgan_fast

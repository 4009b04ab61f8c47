// CUDA kernel of the prototype moving-average update (LCP-GAN Eq. 2); see csrc/cpu/prototype.cpp.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "prototype/prototype.h"
#include "common/common.cuh"

namespace ssgan_fast {
namespace {

template <typename scalar_t>
__global__ void ema_kernel(scalar_t* __restrict__ protos, const float* __restrict__ sums,
                           const float* __restrict__ wsum, int64_t D, int64_t n, float mu) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float w = wsum[i / D];
  if (!(w > 0.f)) return;
  const float p = static_cast<float>(protos[i]);
  protos[i] = static_cast<scalar_t>((1.f - mu) * p + mu * sums[i] / w);
}

}  // namespace

void prototype_ema_rows_cuda(const at::Tensor& protos, const at::Tensor& sums, const at::Tensor& wsum,
                             double momentum) {
  check_ema_args(protos, sums, wsum);
  TORCH_CHECK(on_device(protos), "prototype_ema (cuda): protos must be a CUDA tensor");
  const int64_t n = protos.numel();
  if (n == 0) return;
  c10::cuda::CUDAGuard guard(protos.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int blocks = static_cast<int>((n + kThreads - 1) / kThreads);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, protos.scalar_type(), "prototype_ema_rows_cuda", [&] {
    SSGAN_LAUNCH(blocks, kThreads, 0, stream, ema_kernel<scalar_t>)(protos.data_ptr<scalar_t>(), sums.data_ptr<float>(),
                                                          wsum.data_ptr<float>(), protos.size(1), n,
                                                          static_cast<float>(momentum));
  });
  SSGAN_CHECK_LAUNCH("prototype_ema_update", "ema_kernel", {"protos", protos}, {"sums", sums}, {"wsum", wsum});
}

}  // namespace ssgan_fast

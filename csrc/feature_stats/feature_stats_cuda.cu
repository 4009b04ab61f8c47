// CUDA kernel of op family 4: per-class moments of shifted features (see csrc/cpu/feature_stats.cpp).
//
// A segmented SYRK: rows are ordered by class (stable sort on the device, no host sync); block
// (tile pair ti <= tj, class c, row chunk z) gathers the class's rows of its chunk (<= FEATURE_STATS_CHUNK
// rows), subtracts the class shift, and accumulates the 64 x 64 tile of Y^T Y in registers in the
// dtype of x (float32 products for float32 features, so float32 accumulation runs over at most
// FEATURE_STATS_CHUNK rows); the tile is then added to the float64 accumulator (and mirrored).  Diagonal blocks
// also sum the columns and the first block of a class adds its count: one pass over the features.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/searchsorted.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "feature_stats/feature_stats.h"
#include "common/common.cuh"

namespace ssgan_fast {
namespace {

constexpr int kTile = 64, kBK = 16, kMomentThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kMomentThreads, 2) feature_stats_moments_kernel(
    const T* __restrict__ x, const int64_t* __restrict__ perm, const int64_t* __restrict__ start,
    const T* __restrict__ shift, double* __restrict__ count, double* __restrict__ sum, double* __restrict__ xtx, int64_t D,
    int64_t ntiles) {
  const int64_t c = blockIdx.y;
  const int64_t r0 = start[c] + (int64_t)blockIdx.z * FEATURE_STATS_CHUNK;
  const int64_t r1 = min(start[c + 1], r0 + FEATURE_STATS_CHUNK);
  if (r1 <= r0) return;
  int64_t p = blockIdx.x, ti = 0;
  while (p >= ntiles - ti) {
    p -= ntiles - ti;
    ++ti;
  }
  const int64_t tj = ti + p;
  const bool diag = ti == tj;
  __shared__ T As[kBK][kTile];
  __shared__ T Bs[kBK][kTile];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
  double csum = 0.0;
  const T* sh = shift + c * D;
  for (int64_t k0 = r0; k0 < r1; k0 += kBK) {
    for (int l = threadIdx.x; l < kBK * kTile; l += kMomentThreads) {
      const int kk = l / kTile, col = l % kTile;
      const int64_t r = k0 + kk, ci = ti * kTile + col, cj = tj * kTile + col;
      T va = T(0), vb = T(0);
      if (r < r1) {
        const T* row = x + perm[r] * D;
        if (ci < D) va = row[ci] - sh[ci];
        if (cj < D) vb = row[cj] - sh[cj];
      }
      As[kk][col] = va;
      Bs[kk][col] = vb;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    if (diag && threadIdx.x < kTile) {
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) csum += static_cast<double>(As[kk][threadIdx.x]);
    }
    __syncthreads();
  }
  double* out = xtx + c * D * D;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t gi = ti * kTile + ty * 4 + i, gj = tj * kTile + tx * 4 + j;
      if (gi < D && gj < D) {
        atomicAdd(out + gi * D + gj, static_cast<double>(acc[i][j]));
        if (!diag) atomicAdd(out + gj * D + gi, static_cast<double>(acc[i][j]));
      }
    }
  }
  if (diag && threadIdx.x < kTile && ti * kTile + threadIdx.x < D) atomicAdd(sum + c * D + ti * kTile + threadIdx.x, csum);
  if (ti == 0 && tj == 0 && threadIdx.x == 0) atomicAdd(count + c, static_cast<double>(r1 - r0));
}

}  // namespace

void feature_stats_moments_cuda(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift, const at::Tensor& count,
                        const at::Tensor& sum, const at::Tensor& xtx) {
  check_feature_stats_moments(x, labels, shift, count, sum, xtx);
  TORCH_CHECK(on_device(x), "feature_stats_moments (cuda): tensors must be CUDA tensors");
  const int64_t N = x.size(0), D = x.size(1), C = count.numel();
  if (N == 0 || D == 0) return;
  TORCH_CHECK(C <= 65535, "feature_stats_moments (cuda): at most 65535 classes, got ", C);
  c10::cuda::CUDAGuard guard(x.device());
  // class-sorted row order and class starts, on the device (no host sync: graph-capturable)
  // (at::bincount would read the largest label on the host)
  const auto sorted = at::sort(labels, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor perm = std::get<1>(sorted);
  const at::Tensor start = at::searchsorted(std::get<0>(sorted).contiguous(), at::arange(C + 1, labels.options()));
  const int64_t ntiles = (D + kTile - 1) / kTile;
  const int64_t pairs = ntiles * (ntiles + 1) / 2;
  const int64_t chunks = (N + FEATURE_STATS_CHUNK - 1) / FEATURE_STATS_CHUNK;
  TORCH_CHECK(pairs < (int64_t(1) << 31) && chunks <= 65535, "feature_stats_moments (cuda): problem too large for one launch");
  const dim3 grid(static_cast<unsigned>(pairs), static_cast<unsigned>(C), static_cast<unsigned>(chunks));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "feature_stats_moments_cuda", [&] {
    SSGAN_LAUNCH(grid, kMomentThreads, 0, stream, feature_stats_moments_kernel<scalar_t>)(
        x.const_data_ptr<scalar_t>(), perm.const_data_ptr<int64_t>(), start.const_data_ptr<int64_t>(),
        shift.const_data_ptr<scalar_t>(), count.data_ptr<double>(), sum.data_ptr<double>(), xtx.data_ptr<double>(), D,
        ntiles);
  });
  SSGAN_CHECK_LAUNCH("FeatureStats.update", "feature_stats_moments_kernel", {"x", x}, {"labels", labels}, {"xtx", xtx});
}

}  // namespace ssgan_fast

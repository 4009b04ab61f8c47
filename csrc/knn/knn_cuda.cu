// CUDA kernels of op family knn (see csrc/knn.h and csrc/cpu/knn.cpp).
//
// A block owns kBM rows of a (x) and loops over every column tile of kBN rows of b (ref): the tile's
// inner products by a shared-memory tiled GEMM (kBK-deep slices, 2 x 2 outputs per thread, in the
// dtype of the inputs), then the squared distances ||a||^2 + ||b||^2 - 2 a.b (clamped at 0):
//   knn_smallest: written to shared memory; thread r < kBM merges its row's kBN values into the row's
//            sorted k-list, kept in shared memory (k <= KNN_MAX_K; no local arrays, no spills).
//   knn_radius_count: per thread, counts and minima of its rows over its columns, reduced over the
//            16 lanes of a row at the end (a block owns its rows: plain stores); the column counts of
//            a tile are summed in shared memory and added to the global ones with one integer atomic
//            per column and block (order-independent: the result is deterministic).
// No [M, N] matrix is allocated; one launch per op, no host sync.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "knn/knn.h"
#include "common/common.cuh"

namespace ssgan_fast {
namespace {

constexpr int kBM = 32, kBN = 32, kBK = 16, kKnnThreads = 256;

// acc[2][2] += a_tile . b_tile^T for rows r0.., columns c0..; thread (ty, tx) = (tid / 16, tid % 16)
// owns rows ty * 2 + {0, 1} and columns tx * 2 + {0, 1}
template <typename T>
__device__ __forceinline__ void tile_dot(const T* __restrict__ a, const T* __restrict__ b, int64_t M, int64_t N,
                                         int64_t D, int64_t r0, int64_t c0, T (&As)[kBK][kBM], T (&Bs)[kBK][kBN],
                                         T (&acc)[2][2]) {
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) acc[i][j] = T(0);
  for (int64_t k0 = 0; k0 < D; k0 += kBK) {
    for (int l = tid; l < kBK * kBM; l += kKnnThreads) {  // kBM rows x kBK features, coalesced along D
      const int row = l / kBK, kk = l % kBK;
      const int64_t gr = r0 + row, gk = k0 + kk;
      As[kk][row] = (gr < M && gk < D) ? a[gr * D + gk] : T(0);
      const int64_t gc = c0 + row;
      Bs[kk][row] = (gc < N && gk < D) ? b[gc * D + gk] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; ++kk) {
      const T a0 = As[kk][ty * 2], a1 = As[kk][ty * 2 + 1], b0 = Bs[kk][tx * 2], b1 = Bs[kk][tx * 2 + 1];
      acc[0][0] += a0 * b0;
      acc[0][1] += a0 * b1;
      acc[1][0] += a1 * b0;
      acc[1][1] += a1 * b1;
    }
    __syncthreads();
  }
}

template <typename T>
__device__ __forceinline__ T sq_dist(T na, T nb, T g) {
  const T d = na + nb - T(2) * g;
  return d > T(0) ? d : T(0);
}

template <typename T>
__global__ void __launch_bounds__(kKnnThreads) knn_smallest_kernel(const T* __restrict__ x, const T* __restrict__ r,
                                                              const T* __restrict__ nx, const T* __restrict__ nr,
                                                              T* __restrict__ out, int64_t M, int64_t N, int64_t D,
                                                              int k, bool self) {
  static_assert(kBM * kBN == 4 * kKnnThreads, "2 x 2 outputs per thread");
  __shared__ T As[kBK][kBM];
  __shared__ T Bs[kBK][kBN];
  __shared__ T Ds[kBM][kBN + 1];
  __shared__ T best[kBM][KNN_MAX_K];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kBM;
  for (int l = tid; l < kBM * KNN_MAX_K; l += kKnnThreads) best[l / KNN_MAX_K][l % KNN_MAX_K] = INFINITY;
  T acc[2][2];
  for (int64_t c0 = 0; c0 < N; c0 += kBN) {
    tile_dot(x, r, M, N, D, r0, c0, As, Bs, acc);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int li = ty * 2 + i, lj = tx * 2 + j;
        const int64_t gi = r0 + li, gj = c0 + lj;
        T d = INFINITY;
        if (gi < M && gj < N && !(self && gi == gj)) d = sq_dist(nx[gi], nr[gj], acc[i][j]);
        Ds[li][lj] = d;
      }
    }
    __syncthreads();
    if (tid < kBM) {
      T* b = best[tid];
      for (int j = 0; j < kBN; ++j) knn_push(b, k, Ds[tid][j]);
    }
    __syncthreads();
  }
  for (int l = tid; l < kBM * k; l += kKnnThreads) {
    const int64_t gi = r0 + l / k;
    if (gi < M) out[gi * k + l % k] = best[l / k][l % k];
  }
}

template <typename T>
__global__ void __launch_bounds__(kKnnThreads) knn_radius_count_kernel(
    const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ na, const T* __restrict__ nb,
    const T* __restrict__ ra2, const T* __restrict__ rb2, int64_t* __restrict__ cnt_a, int64_t* __restrict__ cnt_b,
    T* __restrict__ nn_a, int64_t M, int64_t N, int64_t D, bool inclusive) {
  __shared__ T As[kBK][kBM];
  __shared__ T Bs[kBK][kBN];
  __shared__ int colcnt[kBN];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kBM;
  int ca[2] = {0, 0};
  T mn[2] = {INFINITY, INFINITY};
  T nai[2], rai[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t gi = r0 + ty * 2 + i;
    nai[i] = gi < M ? na[gi] : T(0);
    rai[i] = gi < M ? ra2[gi] : -INFINITY;  // rows past M hold no b
  }
  T acc[2][2];
  for (int64_t c0 = 0; c0 < N; c0 += kBN) {
    if (tid < kBN) colcnt[tid] = 0;
    tile_dot(a, b, M, N, D, r0, c0, As, Bs, acc);  // ends with __syncthreads: colcnt is zeroed
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int64_t gj = c0 + tx * 2 + j;
      if (gj >= N) continue;
      const T nbj = nb[gj], rbj = rb2[gj];
      int cb = 0;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (r0 + ty * 2 + i >= M) continue;
        const T d = sq_dist(nai[i], nbj, acc[i][j]);
        ca[i] += inclusive ? (d <= rbj) : (d < rbj);
        mn[i] = d < mn[i] ? d : mn[i];
        cb += inclusive ? (d <= rai[i]) : (d < rai[i]);
      }
      if (cb) atomicAdd(&colcnt[tx * 2 + j], cb);
    }
    __syncthreads();
    if (tid < kBN && c0 + tid < N && colcnt[tid])
      atomicAdd(reinterpret_cast<unsigned long long*>(cnt_b + c0 + tid), static_cast<unsigned long long>(colcnt[tid]));
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {  // reduce over the 16 lanes (tx) of this row pair: one half-warp
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
      ca[i] += __shfl_xor_sync(0xffffffffu, ca[i], o);
      const T m = __shfl_xor_sync(0xffffffffu, mn[i], o);
      mn[i] = m < mn[i] ? m : mn[i];
    }
    const int64_t gi = r0 + ty * 2 + i;
    if (tx == 0 && gi < M) {
      cnt_a[gi] = ca[i];
      nn_a[gi] = mn[i];
    }
  }
}

inline unsigned row_blocks(int64_t M, const char* op) {
  const int64_t g = (M + kBM - 1) / kBM;
  TORCH_CHECK(g < (int64_t(1) << 31), op, " (cuda): too many rows for one launch");
  return static_cast<unsigned>(g);
}

}  // namespace

at::Tensor knn_smallest_cuda(const at::Tensor& x, const std::optional<at::Tensor>& ref, int64_t k) {
  check_knn_smallest(x, ref, k);
  TORCH_CHECK(on_device(x), "knn_smallest (cuda): tensors must be CUDA tensors");
  TORCH_CHECK(k <= KNN_MAX_K, "knn_smallest (cuda): k = ", k, " > KNN_MAX_K = ", KNN_MAX_K);
  c10::cuda::CUDAGuard guard(x.device());
  const bool self = !ref.has_value();
  const at::Tensor& r = self ? x : *ref;
  const int64_t M = x.size(0), N = r.size(0), D = x.size(1);
  const at::Tensor nx = at::sum(at::mul(x, x), {1});
  const at::Tensor nr = self ? nx : at::sum(at::mul(r, r), {1});
  at::Tensor out = at::empty({M, k}, x.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "knn_smallest_cuda", [&] {
    SSGAN_LAUNCH(row_blocks(M, "knn_smallest"), kKnnThreads, 0, stream, knn_smallest_kernel<scalar_t>)(
        x.const_data_ptr<scalar_t>(), r.const_data_ptr<scalar_t>(), nx.const_data_ptr<scalar_t>(),
        nr.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), M, N, D, static_cast<int>(k), self);
  });
  SSGAN_CHECK_LAUNCH("knn_smallest", "knn_smallest_kernel", {"x", x}, {"ref", r});
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> knn_radius_count_cuda(const at::Tensor& a, const at::Tensor& b,
                                                                     const at::Tensor& ra2, const at::Tensor& rb2,
                                                                     bool inclusive) {
  check_knn_radius_count(a, b, ra2, rb2);
  TORCH_CHECK(on_device(a), "knn_radius_count (cuda): tensors must be CUDA tensors");
  c10::cuda::CUDAGuard guard(a.device());
  const int64_t M = a.size(0), N = b.size(0), D = a.size(1);
  const at::Tensor na = at::sum(at::mul(a, a), {1});
  const at::Tensor nb = at::sum(at::mul(b, b), {1});
  at::Tensor cnt_a = at::empty({M}, a.options().dtype(at::kLong));
  at::Tensor cnt_b = at::zeros({N}, a.options().dtype(at::kLong));
  at::Tensor nn_a = at::empty({M}, a.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "knn_radius_count_cuda", [&] {
    SSGAN_LAUNCH(row_blocks(M, "knn_radius_count"), kKnnThreads, 0, stream, knn_radius_count_kernel<scalar_t>)(
        a.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), na.const_data_ptr<scalar_t>(),
        nb.const_data_ptr<scalar_t>(), ra2.const_data_ptr<scalar_t>(), rb2.const_data_ptr<scalar_t>(),
        cnt_a.data_ptr<int64_t>(), cnt_b.data_ptr<int64_t>(), nn_a.data_ptr<scalar_t>(), M, N, D, inclusive);
  });
  SSGAN_CHECK_LAUNCH("knn_radius_count", "knn_radius_count_kernel", {"a", a}, {"b", b});
  return {cnt_a, cnt_b, nn_a};
}

}  // namespace ssgan_fast

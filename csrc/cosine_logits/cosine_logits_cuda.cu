// CUDA row kernels of the fused cosine-logits core (op families prototype and aam; ../cosine_logits.h). One block per row; the
// row's columns are strided over the block's threads. The dot products come from cuBLAS on the
// host side; these kernels do everything element-wise and the row/column reductions.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cosine_logits/cosine_logits.h"
#include "common/common.cuh"

namespace ssgan_fast {
namespace {

template <int kMode, typename T>
__global__ void fwd_rows_kernel(T* __restrict__ dots, int64_t ld, int64_t K, int64_t B, int64_t c0,
                                const T* __restrict__ rx, const T* __restrict__ rw,
                                const T* __restrict__ scale, MarginT<T> M, const int64_t* __restrict__ tgt,
                                const int64_t* __restrict__ lo, const int64_t* __restrict__ hi,
                                T* __restrict__ stats) {
  __shared__ T buf[32];
  const int64_t b = blockIdx.x;
  T* row = dots + b * ld;
  const T s = *scale, xr = rx[b];
  const int64_t t = tgt ? tgt[b] - c0 : -1;
  int64_t l = 0, h = K;
  if (lo) {
    l = min(max(lo[b] - c0, (int64_t)0), K);
    h = min(max(hi[b] - c0, (int64_t)0), K);
  }
  T mx = -INFINITY;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const T c = row[k] * xr * rw[k];
    T v = s * (k == t ? margin_fwd(c, M) : c);
    if (k < l || k >= h) v = -INFINITY;
    row[k] = v;
    mx = max(mx, v);
  }
  if (kMode == kLogits) return;
  mx = block_reduce<true, T>(mx, buf);
  T sum = T(0);
  for (int64_t k = l + threadIdx.x; k < h; k += blockDim.x) sum += exp(row[k] - mx);
  sum = block_reduce<false, T>(sum, buf);
  if (kMode == kProbs) {
    const T lse = mx + log(sum);
    T acc = T(0);
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      const T p = (k < l || k >= h) ? T(0) : exp(row[k] - lse);
      if (p > T(0)) acc += p * row[k];
      row[k] = p;
    }
    acc = block_reduce<false, T>(acc, buf);
    if (threadIdx.x == 0) {
      stats[b] = lse;
      stats[B + b] = lse - acc;
    }
  } else {
    __syncthreads();  // row[t] written by another thread
    if (threadIdx.x == 0) {
      const T m_old = stats[b];
      const T m_new = max(m_old, mx);
      stats[B + b] = stats[B + b] * exp(m_old - m_new) + sum * exp(mx - m_new);
      stats[b] = m_new;
      if (t >= 0 && t < K) stats[2 * B + b] += row[t];
    }
  }
}

template <int kMode, typename T>
__global__ void bwd_rows_kernel(T* __restrict__ dots, int64_t ld, int64_t K, int64_t c0,
                                const T* __restrict__ rx, const T* __restrict__ rw,
                                const T* __restrict__ scale, MarginT<T> M, const int64_t* __restrict__ tgt,
                                const T* __restrict__ saved, const T* __restrict__ lse, const T* __restrict__ grad,
                                T* __restrict__ rowdot, T* __restrict__ coldot) {
  __shared__ T buf[32];
  const int64_t b = blockIdx.x;
  T* row = dots + b * ld;
  const T s = *scale, xr = rx[b];
  const int64_t t = tgt ? tgt[b] - c0 : -1;
  T pg = T(0);
  if (kMode == kProbs) {
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) pg += saved[b * K + k] * grad[b * K + k];
    pg = block_reduce<false, T>(pg, buf);
  }
  T rd = T(0);
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    T dc, c;
    if (kMode == kProbs) {
      // dots is output only: cos = (log p + lse) / s from the saved probabilities (no GEMM recompute)
      const T p = saved[b * K + k];
      dc = s * p * (grad[b * K + k] - pg);
      c = p > T(0) ? (log(p) + lse[b]) / s : T(0);
    } else {
      c = row[k] * xr * rw[k];
      T dl;
      if (kMode == kLogits) {
        dl = grad[b * K + k];
      } else {
        const T logit = s * (k == t ? margin_fwd(c, M) : c);
        dl = grad[b] * (exp(logit - lse[b]) - (k == t ? T(1) : T(0)));
      }
      dc = s * dl * (k == t ? margin_bwd(c, M) : T(1));
    }
    rd += dc * c;
    atomicAdd(coldot + k, dc * c);
    row[k] = dc * xr * rw[k];
  }
  rd = block_reduce<false, T>(rd, buf);
  if (threadIdx.x == 0) rowdot[b] += rd;
}

// Fused cross-entropy forward + gradient on whole rows: stats[b] = lse, stats[B + b] = loss,
// dots <- e = dcos * rx * rw for dL/dloss_b = weight.
template <typename T>
__global__ void ce_rows_kernel(T* __restrict__ dots, int64_t ld, int64_t K, int64_t B, const T* __restrict__ rx,
                               const T* __restrict__ rw, const T* __restrict__ scale, MarginT<T> M,
                               const int64_t* __restrict__ tgt, T weight, T* __restrict__ stats,
                               T* __restrict__ rowdot, T* __restrict__ coldot) {
  __shared__ T buf[32];
  const int64_t b = blockIdx.x;
  T* row = dots + b * ld;
  const T s = *scale, xr = rx[b];
  const int64_t t = tgt[b];
  T mx = -INFINITY;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const T c = row[k] * xr * rw[k];
    const T v = s * (k == t ? margin_fwd(c, M) : c);
    mx = max(mx, v);
  }
  mx = block_reduce<true, T>(mx, buf);
  T sum = T(0);
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const T c = row[k] * xr * rw[k];
    sum += exp(s * (k == t ? margin_fwd(c, M) : c) - mx);
  }
  sum = block_reduce<false, T>(sum, buf);
  const T lse = mx + log(sum);
  T rd = T(0);
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const T c = row[k] * xr * rw[k];
    const T logit = s * (k == t ? margin_fwd(c, M) : c);
    if (k == t) {
      stats[b] = lse;
      stats[B + b] = lse - logit;
    }
    const T dl = weight * (exp(logit - lse) - (k == t ? T(1) : T(0)));
    const T dc = s * dl * (k == t ? margin_bwd(c, M) : T(1));
    rd += dc * c;
    atomicAdd(coldot + k, dc * c);
    row[k] = dc * xr * rw[k];
  }
  rd = block_reduce<false, T>(rd, buf);
  if (threadIdx.x == 0) rowdot[b] += rd;
}

const int64_t* opt_ptr(const at::Tensor& t) { return t.numel() ? t.data_ptr<int64_t>() : nullptr; }

}  // namespace

void cosine_logits_fwd_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                 const at::Tensor& scale, double margin, const at::Tensor& target,
                                 const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t kind,
                                 const at::Tensor& stats) {
  check_rows_args(dots, rx, rw, scale, target, lo, hi, kind);
  TORCH_CHECK(on_device(dots), "cosine_logits (cuda): dots must be a CUDA tensor");
  const int64_t B = dots.size(0), K = dots.size(1);
  check_stats_arg(dots, stats);
  if (B == 0 || K == 0) return;
  c10::cuda::CUDAGuard guard(dots.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t* pt = kind != kProbs ? target.data_ptr<int64_t>() : nullptr;
  #define SSGAN_LAUNCH_FWD(MODE)                                                                          \
  SSGAN_LAUNCH(B, kThreads, 0, stream, fwd_rows_kernel<MODE, T>)(dots.data_ptr<T>(), dots.stride(0), K, B, c0,  \
                                                    rx.data_ptr<T>(), rw.data_ptr<T>(),         \
                                                    scale.data_ptr<T>(), M, pt, opt_ptr(lo),         \
                                                    opt_ptr(hi), stats.data_ptr<T>())
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "cosine_logits_fwd_rows_cuda", [&] {
    using T = scalar_t;
    const auto M = make_margin_t<T>(margin);
    if (kind == kProbs) SSGAN_LAUNCH_FWD(kProbs);
    else if (kind == kLogits) SSGAN_LAUNCH_FWD(kLogits);
    else SSGAN_LAUNCH_FWD(kCrossEntropy);
  });
#undef SSGAN_LAUNCH_FWD
  SSGAN_CHECK_LAUNCH(op_of_kind(kind), "fwd_rows_kernel", {"dots", dots}, {"rx", rx}, {"rw", rw}, {"stats", stats});
}

void cosine_logits_bwd_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                 const at::Tensor& scale, double margin, const at::Tensor& target, int64_t c0,
                                 int64_t kind, const at::Tensor& saved, const at::Tensor& lse, const at::Tensor& grad,
                                 const at::Tensor& rowdot, const at::Tensor& coldot) {
  const at::Tensor no_group = at::empty({0}, target.options());
  check_rows_args(dots, rx, rw, scale, target, no_group, no_group, kind);
  TORCH_CHECK(on_device(dots), "cosine_logits (cuda): dots must be a CUDA tensor");
  const int64_t B = dots.size(0), K = dots.size(1);
  check_bwd_args(dots, kind, saved, lse, grad, rowdot, coldot);
  if (B == 0 || K == 0) return;
  c10::cuda::CUDAGuard guard(dots.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t* pt = kind != kProbs ? target.data_ptr<int64_t>() : nullptr;
  #define SSGAN_LAUNCH_BWD(MODE)                                                                        \
  SSGAN_LAUNCH(B, kThreads, 0, stream, bwd_rows_kernel<MODE, T>)(dots.data_ptr<T>(), dots.stride(0), K, c0,    \
                                                    rx.data_ptr<T>(), rw.data_ptr<T>(),       \
                                                    scale.data_ptr<T>(), M, pt, saved.numel() ? saved.data_ptr<T>() : nullptr, \
                                                    lse.numel() ? lse.data_ptr<T>() : nullptr,               \
                                                    grad.data_ptr<T>(), rowdot.data_ptr<T>(), \
                                                    coldot.data_ptr<T>())
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "cosine_logits_bwd_rows_cuda", [&] {
    using T = scalar_t;
    const auto M = make_margin_t<T>(margin);
    if (kind == kProbs) SSGAN_LAUNCH_BWD(kProbs);
    else if (kind == kLogits) SSGAN_LAUNCH_BWD(kLogits);
    else SSGAN_LAUNCH_BWD(kCrossEntropy);
  });
#undef SSGAN_LAUNCH_BWD
  SSGAN_CHECK_LAUNCH(op_of_kind(kind), "bwd_rows_kernel", {"dots", dots}, {"rx", rx}, {"rw", rw}, {"grad", grad});
}

void aam_ce_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                      double margin, const at::Tensor& target, double weight, const at::Tensor& stats,
                      const at::Tensor& rowdot, const at::Tensor& coldot) {
  check_ce_rows_args(dots, rx, rw, scale, target, stats, rowdot, coldot);
  TORCH_CHECK(on_device(dots), "cosine_logits (cuda): dots must be a CUDA tensor");
  const int64_t B = dots.size(0), K = dots.size(1);
  if (B == 0 || K == 0) return;
  c10::cuda::CUDAGuard guard(dots.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "aam_ce_rows_cuda", [&] {
    using T = scalar_t;
    SSGAN_LAUNCH(B, kThreads, 0, stream, ce_rows_kernel<T>)(dots.data_ptr<T>(), dots.stride(0), K, B, rx.data_ptr<T>(),
                                                  rw.data_ptr<T>(), scale.data_ptr<T>(), make_margin_t<T>(margin),
                                                  target.data_ptr<int64_t>(), static_cast<T>(weight),
                                                  stats.data_ptr<T>(), rowdot.data_ptr<T>(), coldot.data_ptr<T>());
  });
  SSGAN_CHECK_LAUNCH("aam_cross_entropy", "ce_rows_kernel", {"dots", dots}, {"rx", rx}, {"rw", rw}, {"target", target});
}

}  // namespace ssgan_fast

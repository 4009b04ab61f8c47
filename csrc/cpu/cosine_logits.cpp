// C++ CPU kernels of the fused cosine-logits core (op families 1 and 2).
// Rows are independent: at::parallel_for over rows; the per-column reduction of the backward
// (coldot) goes to per-thread buffers summed at the end, so results do not depend on scheduling
// beyond float summation order within a thread's range.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../ops.h"

namespace ssgan_fast {
namespace {


// phi(c) of aam-discriminator Eq. (8): cos(theta + m), see Margin in ops.h.
template <typename T>
inline T margin_fwd(T c, const MarginT<T>& M) {
  const T eps = static_cast<T>(kMarginClampEps);
  const T cc = std::min(std::max(c, T(-1) + eps), T(1) - eps);
  return c > M.th ? cc * M.cos_m - std::sqrt(T(1) - cc * cc) * M.sin_m : c - M.mm;
}
template <typename T>
inline T margin_bwd(T c, const MarginT<T>& M) {
  const T eps = static_cast<T>(kMarginClampEps);
  if (!(c > M.th)) return T(1);
  if (c < T(-1) + eps || c > T(1) - eps) return T(0);
  return M.cos_m + M.sin_m * c / std::sqrt(T(1) - c * c);
}

struct RowCtx {
  int64_t t;   // target column within the chunk, or -1
  int64_t lo;  // first valid column (chunk-relative)
  int64_t hi;  // one past the last valid column
};
inline RowCtx row_ctx(int64_t b, int64_t K, int64_t c0, const int64_t* tgt, const int64_t* lo, const int64_t* hi) {
  RowCtx r{-1, 0, K};
  if (tgt) r.t = tgt[b] - c0;
  if (lo) {
    r.lo = std::clamp<int64_t>(lo[b] - c0, 0, K);
    r.hi = std::clamp<int64_t>(hi[b] - c0, 0, K);
  }
  return r;
}


template <typename T>
void cosine_logits_fwd_rows_cpu_impl(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                const at::Tensor& stats) {
  T* d = dots.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const int64_t B = dots.size(0), K = dots.size(1), ld = dots.stride(0);
  const T s = scale.item<T>();
  const int64_t* pt = mode != kProbs ? target.data_ptr<int64_t>() : nullptr;
  const int64_t* plo = lo.numel() ? lo.data_ptr<int64_t>() : nullptr;
  const int64_t* phi = hi.numel() ? hi.data_ptr<int64_t>() : nullptr;
  T* st = stats.data_ptr<T>();
  const MarginT<T> M = make_margin_t<T>(margin);

  at::parallel_for(0, B, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* row = d + b * ld;
      const RowCtx r = row_ctx(b, K, c0, pt, plo, phi);
      const T xr = prx[b];
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t k = 0; k < K; ++k) {
        const T c = row[k] * xr * prw[k];
        T v = s * (k == r.t ? margin_fwd(c, M) : c);
        if (k < r.lo || k >= r.hi) v = -std::numeric_limits<T>::infinity();
        row[k] = v;
        mx = std::max(mx, v);
      }
      if (mode == kLogits) continue;
      T sum = T(0);
      for (int64_t k = r.lo; k < r.hi; ++k) sum += std::exp(row[k] - mx);
      if (mode == kProbs) {
        const T lse = mx + std::log(sum);
        T acc = T(0);
        for (int64_t k = 0; k < K; ++k) {
          const T p = (k < r.lo || k >= r.hi) ? T(0) : std::exp(row[k] - lse);
          if (p > T(0)) acc += p * row[k];
          row[k] = p;
        }
        st[b] = lse;
        st[B + b] = lse - acc;  // entropy: -sum p log p = lse - sum p * logit
      } else {
        const T m_old = st[b];
        const T m_new = std::max(m_old, mx);
        st[B + b] = st[B + b] * std::exp(m_old - m_new) + sum * std::exp(mx - m_new);
        st[b] = m_new;
        if (r.t >= 0 && r.t < K) st[2 * B + b] += row[r.t];
      }
    }
  });
}

template <typename T>
void cosine_logits_bwd_rows_cpu_impl(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                const at::Tensor& saved, const at::Tensor& grad, const at::Tensor& rowdot,
                                const at::Tensor& coldot) {
  T* d = dots.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const int64_t B = dots.size(0), K = dots.size(1), ld = dots.stride(0);
  const T s = scale.item<T>();
  const int64_t* pt = mode != kProbs ? target.data_ptr<int64_t>() : nullptr;
  const T* sv = saved.numel() ? saved.data_ptr<T>() : nullptr;
  const T* gr = grad.data_ptr<T>();
  T* prd = rowdot.data_ptr<T>();
  const MarginT<T> M = make_margin_t<T>(margin);

  const int nthreads = std::max(1, at::get_num_threads());
  std::vector<T> partial(static_cast<size_t>(nthreads) * K, T(0));
  at::parallel_for(0, B, 8, [&](int64_t b0, int64_t b1) {
    T* cd = partial.data() + static_cast<size_t>(at::get_thread_num()) * K;
    for (int64_t b = b0; b < b1; ++b) {
      T* row = d + b * ld;
      const int64_t t = pt ? pt[b] - c0 : -1;
      const T xr = prx[b];
      T pg = T(0);
      if (mode == kProbs) {
        for (int64_t k = 0; k < K; ++k) pg += sv[b * K + k] * gr[b * K + k];
      }
      T rd = T(0);
      for (int64_t k = 0; k < K; ++k) {
        const T c = row[k] * xr * prw[k];
        T dc;
        if (mode == kProbs) {
          dc = s * sv[b * K + k] * (gr[b * K + k] - pg);
        } else {
          T dl;
          if (mode == kLogits) {
            dl = gr[b * K + k];
          } else {
            const T logit = s * (k == t ? margin_fwd(c, M) : c);
            dl = gr[b] * (std::exp(logit - sv[b]) - (k == t ? T(1) : T(0)));
          }
          dc = s * dl * (k == t ? margin_bwd(c, M) : T(1));
        }
        rd += dc * c;
        cd[k] += dc * c;
        row[k] = dc * xr * prw[k];
      }
      prd[b] += rd;
    }
  });
  T* pcd = coldot.data_ptr<T>();
  for (int64_t k = 0; k < K; ++k) {
    T acc = T(0);
    for (int i = 0; i < nthreads; ++i) acc += partial[static_cast<size_t>(i) * K + k];
    pcd[k] = acc;
  }
}

}  // namespace

void cosine_logits_fwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                const at::Tensor& stats) {
  check_rows_args(dots, rx, rw, scale, target, lo, hi, mode);
  check_stats_arg(dots, stats);
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "cosine_logits_fwd_rows_cpu", [&] {
    cosine_logits_fwd_rows_cpu_impl<scalar_t>(dots, rx, rw, scale, margin, target, lo, hi, c0, mode, stats);
  });
}

void cosine_logits_bwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                const at::Tensor& saved, const at::Tensor& grad, const at::Tensor& rowdot,
                                const at::Tensor& coldot) {
  check_rows_args(dots, rx, rw, scale, target, lo, hi, mode);
  check_bwd_args(dots, mode, saved, grad, rowdot, coldot);
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "cosine_logits_bwd_rows_cpu", [&] {
    cosine_logits_bwd_rows_cpu_impl<scalar_t>(dots, rx, rw, scale, margin, target, lo, hi, c0, mode, saved, grad,
                                              rowdot, coldot);
  });
}

}  // namespace ssgan_fast

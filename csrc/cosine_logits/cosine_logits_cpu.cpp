// C++ CPU row kernels of the fused cosine-logits core (op families prototype and aam; cosine_logits.h).
// Rows are independent: at::parallel_for over rows; the per-column reduction of the backward
// (coldot) goes to per-thread buffers summed at the end, so results do not depend on scheduling
// beyond float summation order within a thread's range.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "cosine_logits/cosine_logits.h"

// Vector exp: glibc's libmvec (_ZGVbN4v_expf / _ZGVbN2v_exp, linked with -lmvec) serves the
// `omp simd` loops below. Declaring the SIMD variants (at global scope) is what <math.h> does under
// -ffast-math, which we do not want: the -inf masks must stay exact. exp(-inf) = 0.
extern "C" __attribute__((simd("notinbranch"), const, nothrow)) float expf(float);
extern "C" __attribute__((simd("notinbranch"), const, nothrow)) double exp(double);

namespace ssgan_fast {
namespace {


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


inline float exp_t(float x) { return ::expf(x); }
inline double exp_t(double x) { return ::exp(x); }

// row[k] <- exp(row[k] - mx) for k < n; returns (sum_k e_k, sum_k e_k * row_k). The same loop is
// compiled twice: for the x86-64 baseline (SSE2, libmvec's 4-lane exp) and for AVX2 + FMA
// (8 lanes), chosen once at run time. Only this leaf loop gets the AVX2 target, so no inline
// library code is ever compiled for an ISA the machine may lack.
#define SSGAN_EXP_SHIFT_BODY                          \
  T sum = T(0), ev = T(0);                            \
  _Pragma("omp simd reduction(+ : sum, ev)")          \
  for (int64_t k = 0; k < n; ++k) {                   \
    const T v = row[k];                               \
    const T e = exp_t(v - mx);                        \
    sum += e;                                         \
    ev += e * v; /* v is finite inside the group */   \
    row[k] = e;                                       \
  }                                                   \
  *sum_out = sum;                                     \
  *ev_out = ev;

template <typename T>
void exp_shift_base(T* __restrict__ row, int64_t n, T mx, T* sum_out, T* ev_out) {
  SSGAN_EXP_SHIFT_BODY
}
#if defined(__x86_64__) && defined(__GNUC__)
template <typename T>
__attribute__((target("avx2,fma"))) void exp_shift_avx2(T* __restrict__ row, int64_t n, T mx, T* sum_out,
                                                        T* ev_out) {
  SSGAN_EXP_SHIFT_BODY
}
inline bool has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif
#undef SSGAN_EXP_SHIFT_BODY

template <typename T>
void exp_shift(T* row, int64_t n, T mx, T* sum_out, T* ev_out) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (has_avx2()) return exp_shift_avx2(row, n, mx, sum_out, ev_out);
#endif
  exp_shift_base(row, n, mx, sum_out, ev_out);
}

// Rows per parallel task: enough elements (~32k) that a task outweighs the fork/join cost, so
// small batches run on one thread.
inline int64_t row_grain(int64_t K) { return std::max<int64_t>(8, (int64_t{1} << 15) / std::max<int64_t>(K, 1)); }

// coldot[k] += sum over threads of the per-thread column sums (fixed order: deterministic).
template <typename T>
void add_partials(const std::vector<T>& partial, int nthreads, int64_t K, T* coldot) {
  for (int64_t k = 0; k < K; ++k) {
    T acc = T(0);
    for (int i = 0; i < nthreads; ++i) acc += partial[static_cast<size_t>(i) * K + k];
    coldot[k] += acc;
  }
}

// Pass 1 of every forward mode on one row: logits = s * cos in place (margin at column t),
// -inf outside [lo, hi). Returns cos at the target (0 without one).
template <typename T>
T logits_row(T* __restrict__ row, int64_t K, T s, T xr, const T* __restrict__ rw, const RowCtx& r,
             const MarginT<T>& M) {
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const bool has_t = r.t >= 0 && r.t < K;
  const T ct = has_t ? row[r.t] * xr * rw[r.t] : T(0);
  const T sx = s * xr;
#pragma omp simd
  for (int64_t k = 0; k < K; ++k) row[k] = row[k] * sx * rw[k];
  if (has_t) row[r.t] = s * margin_fwd(ct, M);
  for (int64_t k = 0; k < r.lo; ++k) row[k] = -kInf;
  for (int64_t k = r.hi; k < K; ++k) row[k] = -kInf;
  return ct;
}

template <typename T>
T row_max(const T* __restrict__ row, int64_t lo, int64_t hi) {
  T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t k = lo; k < hi; ++k) mx = std::max(mx, row[k]);
  return mx;
}

// Cross-entropy gradient of one row whose logits are in `row` (margin at column t, cos there = ct):
// dcos = s g (p - onehot) (times the margin derivative at t); row <- dcos * xr * rw; returns
// sum_k dcos cos and adds dcos * cos to cd.
template <typename T>
T ce_grad_row(T* __restrict__ row, int64_t K, T s, T xr, const T* __restrict__ rw, int64_t t, T ct, T lse, T g,
              const MarginT<T>& M, T* __restrict__ cd) {
  T rd = T(0);
  const T inv_s = T(1) / s;
#pragma omp simd reduction(+ : rd)
  for (int64_t k = 0; k < K; ++k) {
    const T v = row[k];
    const T dc = s * g * exp_t(v - lse);
    rd += dc * v * inv_s;
    cd[k] += dc * v * inv_s;
    row[k] = dc * xr * rw[k];
  }
  if (t >= 0 && t < K) {  // fix the target column: undo the plain formula, apply the margin one
    const T tl = s * margin_fwd(ct, M);
    const T plain = s * g * exp_t(tl - lse) * (tl * inv_s);
    const T dc = s * g * (exp_t(tl - lse) - T(1)) * margin_bwd(ct, M);
    rd += dc * ct - plain;
    cd[t] += dc * ct - plain;
    row[t] = dc * xr * rw[t];
  }
  return rd;
}

template <typename T>
void cosine_logits_fwd_rows_cpu_impl(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                     const at::Tensor& scale, double margin, const at::Tensor& target,
                                     const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t kind,
                                     const at::Tensor& stats) {
  T* d = dots.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const int64_t B = dots.size(0), K = dots.size(1), ld = dots.stride(0);
  const T s = *scale.data_ptr<T>();  // a CPU tensor: a plain read (item() would be a dispatched op)
  const int64_t* pt = kind != kProbs ? target.data_ptr<int64_t>() : nullptr;
  const int64_t* plo = lo.numel() ? lo.data_ptr<int64_t>() : nullptr;
  const int64_t* phi = hi.numel() ? hi.data_ptr<int64_t>() : nullptr;
  T* st = stats.data_ptr<T>();
  const MarginT<T> M = make_margin_t<T>(margin);

  at::parallel_for(0, B, row_grain(K), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* __restrict__ row = d + b * ld;
      const RowCtx r = row_ctx(b, K, c0, pt, plo, phi);
      logits_row(row, K, s, prx[b], prw, r, M);
      if (kind == kLogits) continue;
      const T mx = row_max(row, r.lo, r.hi);
      const T tlogit = (r.t >= 0 && r.t < K) ? row[r.t] : T(0);
      T sum, ev;
      exp_shift(row + r.lo, r.hi - r.lo, mx, &sum, &ev);  // row <- exp(logit - max)
      if (kind == kProbs) {
        const T inv = T(1) / sum;
#pragma omp simd
        for (int64_t k = r.lo; k < r.hi; ++k) row[k] *= inv;
        for (int64_t k = 0; k < r.lo; ++k) row[k] = T(0);
        for (int64_t k = r.hi; k < K; ++k) row[k] = T(0);
        const T lse = mx + std::log(sum);
        st[b] = lse;
        st[B + b] = lse - ev * inv;  // entropy: -sum p log p = lse - sum p * logit
      } else {  // online log-sum-exp over column chunks: running max, sum, target logit
        const T m_old = st[b];
        const T m_new = std::max(m_old, mx);
        st[B + b] = st[B + b] * std::exp(m_old - m_new) + sum * std::exp(mx - m_new);
        st[b] = m_new;
        if (r.t >= 0 && r.t < K) st[2 * B + b] += tlogit;
      }
    }
  });
}

// Cross-entropy backward over one column chunk of recomputed dot products (the no-grad / large-C
// path of aam_cross_entropy). The softmax and logits backward do not need it on the CPU: the host
// writes their GEMM operand directly (cosine_softmax_grad_cpu / aam_logits_grad_cpu) and takes
// the normalisation terms from the GEMM results.
template <typename T>
void aam_ce_bwd_rows_cpu_impl(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                     const at::Tensor& scale, double margin, const at::Tensor& target, int64_t c0,
                                     const at::Tensor& lse, const at::Tensor& grad, const at::Tensor& rowdot,
                                     const at::Tensor& coldot) {
  T* d = dots.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const int64_t B = dots.size(0), K = dots.size(1), ld = dots.stride(0);
  const T s = *scale.data_ptr<T>();  // a CPU tensor: a plain read (item() would be a dispatched op)
  const int64_t* pt = target.data_ptr<int64_t>();
  const T* pl = lse.data_ptr<T>();
  const T* gr = grad.data_ptr<T>();
  T* prd = rowdot.data_ptr<T>();
  const MarginT<T> M = make_margin_t<T>(margin);

  const int nthreads = std::max(1, at::get_num_threads());
  std::vector<T> partial(static_cast<size_t>(nthreads) * K, T(0));
  at::parallel_for(0, B, row_grain(K), [&](int64_t b0, int64_t b1) {
    T* __restrict__ cd = partial.data() + static_cast<size_t>(at::get_thread_num()) * K;
    for (int64_t b = b0; b < b1; ++b) {
      T* __restrict__ row = d + b * ld;
      const T xr = prx[b];
      const int64_t t = pt[b] - c0;
      const RowCtx r{t, 0, K};
      const T ct = logits_row(row, K, s, xr, prw, r, M);
      prd[b] += ce_grad_row(row, K, s, xr, prw, t, ct, pl[b], gr[b], M, cd);
    }
  });
  add_partials(partial, nthreads, K, coldot.data_ptr<T>());
}

// Fused cross-entropy forward + gradient on whole rows (all classes in `dots`): stats[0] = lse,
// stats[1] = loss; dots <- e = dcos * rx * rw for the row weights `weight` (dL/dloss_b).
template <typename T>
void aam_ce_rows_cpu_impl(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                    const at::Tensor& scale, double margin, const at::Tensor& target,
                                    double weight, const at::Tensor& stats, const at::Tensor& rowdot,
                                    const at::Tensor& coldot) {
  T* d = dots.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const int64_t B = dots.size(0), K = dots.size(1), ld = dots.stride(0);
  const T s = *scale.data_ptr<T>(), g = static_cast<T>(weight);
  const int64_t* pt = target.data_ptr<int64_t>();
  T* st = stats.data_ptr<T>();
  T* prd = rowdot.data_ptr<T>();
  const MarginT<T> M = make_margin_t<T>(margin);
  const int nthreads = std::max(1, at::get_num_threads());
  std::vector<T> partial(static_cast<size_t>(nthreads) * K, T(0));
  at::parallel_for(0, B, row_grain(K), [&](int64_t b0, int64_t b1) {
    T* __restrict__ cd = partial.data() + static_cast<size_t>(at::get_thread_num()) * K;
    std::vector<T> tmp(K);
    for (int64_t b = b0; b < b1; ++b) {
      T* __restrict__ row = d + b * ld;
      const RowCtx r{pt[b], 0, K};
      const T ct = logits_row(row, K, s, prx[b], prw, r, M);
      const T mx = row_max(row, int64_t{0}, K);
      std::copy(row, row + K, tmp.begin());
      T sum, ev;
      exp_shift(tmp.data(), K, mx, &sum, &ev);
      const T lse = mx + std::log(sum);
      st[b] = lse;
      st[B + b] = lse - row[pt[b]];
      prd[b] += ce_grad_row(row, K, s, prx[b], prw, pt[b], ct, lse, g, M, cd);
    }
  });
  add_partials(partial, nthreads, K, coldot.data_ptr<T>());
}

// Softmax backward straight to the GEMM operand (cosine_softmax / clustering_loss on the CPU host): e_bk = s p_bk (g_bk -
// sum_j p_bj g_bj) rx_b rw_k. No cos is needed: the host takes the normalisation terms from the
// GEMM results (sum_k dcos_bk cos_bk = x_b . (e W)_b), so neither the log of the probabilities nor
// per-column partial sums are computed here.
template <typename T>
void cosine_softmax_grad_cpu_impl(const at::Tensor& e, const at::Tensor& rx, const at::Tensor& rw,
                                       const at::Tensor& scale, const at::Tensor& probs, const at::Tensor& grad) {
  T* pe = e.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const T* pp = probs.data_ptr<T>();
  const T* pgr = grad.data_ptr<T>();
  const int64_t B = e.size(0), K = e.size(1);
  const T s = *scale.data_ptr<T>();  // a CPU tensor: a plain read (item() would be a dispatched op)
  at::parallel_for(0, B, row_grain(K), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* __restrict__ P = pp + b * K;
      const T* __restrict__ G = pgr + b * K;
      T* __restrict__ row = pe + b * K;
      T pg = T(0);
#pragma omp simd reduction(+ : pg)
      for (int64_t k = 0; k < K; ++k) pg += P[k] * G[k];
      const T f = s * prx[b];
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) row[k] = f * P[k] * (G[k] - pg) * prw[k];
    }
  });
}

// AAM-logits backward straight to the GEMM operand (aam_logits on the CPU host): dcos = s g, times the
// margin derivative at the target, whose cos is one dot product per row; e = dcos rx rw. As for the
// softmax the host takes the normalisation terms from the GEMM results, so the logits tile is not
// recomputed (three GEMMs in all instead of four).
template <typename T>
void aam_logits_grad_cpu_impl(const at::Tensor& e, const at::Tensor& x, const at::Tensor& w,
                                        const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                                        double margin, const at::Tensor& target, const at::Tensor& grad) {
  T* pe = e.data_ptr<T>();
  const T* px = x.data_ptr<T>();
  const T* pw = w.data_ptr<T>();
  const T* prx = rx.data_ptr<T>();
  const T* prw = rw.data_ptr<T>();
  const T* pgr = grad.data_ptr<T>();
  const int64_t* pt = target.data_ptr<int64_t>();
  const int64_t B = e.size(0), K = e.size(1), D = x.size(1);
  const T s = *scale.data_ptr<T>();
  const MarginT<T> M = make_margin_t<T>(margin);
  at::parallel_for(0, B, row_grain(K), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* __restrict__ G = pgr + b * K;
      T* __restrict__ row = pe + b * K;
      const T f = s * prx[b];
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) row[k] = f * G[k] * prw[k];
      const int64_t t = pt[b];
      if (t >= 0 && t < K) {
        const T* __restrict__ xb = px + b * D;
        const T* __restrict__ wt = pw + t * D;
        T d = T(0);
#pragma omp simd reduction(+ : d)
        for (int64_t j = 0; j < D; ++j) d += xb[j] * wt[j];
        row[t] *= margin_bwd(d * prx[b] * prw[t], M);
      }
    }
  });
}

}  // namespace

void cosine_logits_fwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t kind,
                                const at::Tensor& stats) {
  check_rows_args(dots, rx, rw, scale, target, lo, hi, kind);
  check_stats_arg(dots, stats);
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "cosine_logits_fwd_rows_cpu", [&] {
    cosine_logits_fwd_rows_cpu_impl<scalar_t>(dots, rx, rw, scale, margin, target, lo, hi, c0, kind, stats);
  });
}

void aam_ce_bwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                         double margin, const at::Tensor& target, int64_t c0, const at::Tensor& lse,
                         const at::Tensor& grad, const at::Tensor& rowdot, const at::Tensor& coldot) {
  const at::Tensor none = at::empty({0}, target.options());
  check_rows_args(dots, rx, rw, scale, target, none, none, kCrossEntropy);
  check_bwd_args(dots, kCrossEntropy, at::empty({0}, dots.options()), lse, grad, rowdot, coldot);
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "aam_ce_bwd_rows_cpu", [&] {
    aam_ce_bwd_rows_cpu_impl<scalar_t>(dots, rx, rw, scale, margin, target, c0, lse, grad, rowdot, coldot);
  });
}

void aam_ce_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                     double margin, const at::Tensor& target, double weight, const at::Tensor& stats,
                     const at::Tensor& rowdot, const at::Tensor& coldot) {
  check_ce_rows_args(dots, rx, rw, scale, target, stats, rowdot, coldot);
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "aam_ce_rows_cpu", [&] {
    aam_ce_rows_cpu_impl<scalar_t>(dots, rx, rw, scale, margin, target, weight, stats, rowdot, coldot);
  });
}

void cosine_softmax_grad_cpu(const at::Tensor& e, const at::Tensor& rx, const at::Tensor& rw,
                             const at::Tensor& scale, const at::Tensor& probs, const at::Tensor& grad) {
  const auto dt = e.scalar_type();
  TORCH_CHECK(e.dim() == 2 && e.is_contiguous() && (dt == at::kFloat || dt == at::kDouble),
              "cosine_softmax_grad: e must be a contiguous float32/float64 [B, K] tensor");
  const int64_t B = e.size(0), K = e.size(1);
  for (const at::Tensor* t : {&probs, &grad}) {
    TORCH_CHECK(t->scalar_type() == dt && t->is_contiguous() && t->numel() == B * K,
                "cosine_softmax_grad: probs and grad must be contiguous [B, K] of e's dtype");
  }
  TORCH_CHECK(rx.scalar_type() == dt && rx.is_contiguous() && rx.numel() == B && rw.scalar_type() == dt &&
                  rw.is_contiguous() && rw.numel() == K && scale.scalar_type() == dt && scale.numel() == 1,
              "cosine_softmax_grad: rx [B], rw [K], scale [1] of e's dtype");
  AT_DISPATCH_FLOATING_TYPES(dt, "cosine_softmax_grad_cpu", [&] {
    cosine_softmax_grad_cpu_impl<scalar_t>(e, rx, rw, scale, probs, grad);
  });
}

void aam_logits_grad_cpu(const at::Tensor& e, const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx,
                         const at::Tensor& rw, const at::Tensor& scale, double margin, const at::Tensor& target,
                         const at::Tensor& grad) {
  const auto dt = e.scalar_type();
  TORCH_CHECK(e.dim() == 2 && e.is_contiguous() && (dt == at::kFloat || dt == at::kDouble),
              "aam_logits_grad: e must be a contiguous float32/float64 [B, K] tensor");
  const int64_t B = e.size(0), K = e.size(1);
  TORCH_CHECK(x.scalar_type() == dt && w.scalar_type() == dt && x.is_contiguous() && w.is_contiguous() &&
                  x.size(0) == B && w.size(0) == K && x.size(1) == w.size(1),
              "aam_logits_grad: x [B, D] and w [K, D] contiguous, of e's dtype");
  TORCH_CHECK(grad.scalar_type() == dt && grad.is_contiguous() && grad.numel() == B * K,
              "aam_logits_grad: grad must be contiguous [B, K] of e's dtype");
  TORCH_CHECK(rx.scalar_type() == dt && rx.is_contiguous() && rx.numel() == B && rw.scalar_type() == dt &&
                  rw.is_contiguous() && rw.numel() == K && scale.scalar_type() == dt && scale.numel() == 1,
              "aam_logits_grad: rx [B], rw [K], scale [1] of e's dtype");
  TORCH_CHECK(target.scalar_type() == at::kLong && target.is_contiguous() && target.numel() == B,
              "aam_logits_grad: target must be int64 contiguous [B]");
  AT_DISPATCH_FLOATING_TYPES(dt, "aam_logits_grad_cpu", [&] {
    aam_logits_grad_cpu_impl<scalar_t>(e, x, w, rx, rw, scale, margin, target, grad);
  });
}

}  // namespace ssgan_fast

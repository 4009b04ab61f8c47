// Host functions of the fused cosine-logits core for the cpp and cuda backends (device generic), one
// forward and one backward per op (cosine_logits.h): norms, the vendor GEMM (at::mm -> MKL / cuBLAS)
// chunk by chunk, and the fused row kernels. The Triton backend's host (ssgan_fast/ops/_cosine_logits.py)
// has the same functions, and the maths written out.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cmath>

#include <limits>
#include <optional>

#include "cosine_logits/cosine_logits.h"

namespace ssgan_fast {
namespace {

at::ScalarType compute_dtype(const at::Tensor& x, const at::Tensor& w) {
  return (x.scalar_type() == at::kDouble || w.scalar_type() == at::kDouble) ? at::kDouble : at::kFloat;
}

// 1 / max(||row||, eps) in the compute dtype. CPU, contiguous rows already in the compute dtype:
// one loop (at the papers' shapes the three ATen calls cost more than the arithmetic); else
// ATen's vectorised reduction.
at::Tensor inv_norm(const at::Tensor& t, at::ScalarType cdt) {
  if (!host_path(t) || !t.is_contiguous() || t.scalar_type() != cdt) {
    return at::linalg_vector_norm(t, 2, {1}, false, cdt).clamp_min_(NORM_EPS).reciprocal_();
  }
  const int64_t N = t.size(0), D = t.size(1);
  at::Tensor out = at::empty({N}, t.options());
  AT_DISPATCH_FLOATING_TYPES(cdt, "inv_norm", [&] {
    const scalar_t* p = t.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(D, 1)), [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        const scalar_t* r = p + i * D;
        scalar_t acc = 0;  // the simd reduction keeps one partial sum per lane (as ATen's cascade sum)
        _Pragma("omp simd reduction(+ : acc)") for (int64_t j = 0; j < D; ++j) acc += r[j] * r[j];
        o[i] = static_cast<scalar_t>(1.0 / std::max(std::sqrt(static_cast<double>(acc)), NORM_EPS));
      }
    });
  });
  return out;
}

// The normalisation backward's second term: g[i, :] -= k_i * dot[i] * v[i, :], with
// k = r^2 where the norm was not clamped (r < 1/eps), else 0 (d(1/max(n, eps))/dv = -v/n^3).
// CPU: one pass without temporaries; CUDA: ATen element-wise ops.
void norm_backward_sub(at::Tensor& g, const at::Tensor& v, const at::Tensor& r, const at::Tensor& dot) {
  if (!host_path(g)) {
    const at::Tensor k = at::where(r < 1.0 / NORM_EPS, r * r, at::zeros_like(r));
    g.addcmul_(v, (k * dot).unsqueeze(1), -1.0);
    return;
  }
  TORCH_CHECK(g.is_contiguous() && v.is_contiguous() && g.scalar_type() == v.scalar_type(), "norm_backward_sub: layout");
  const int64_t N = g.size(0), D = g.size(1);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "norm_backward_sub", [&] {
    scalar_t* pg = g.data_ptr<scalar_t>();
    const scalar_t* pv = v.data_ptr<scalar_t>();
    const scalar_t* pr = r.data_ptr<scalar_t>();
    const scalar_t* pd = dot.data_ptr<scalar_t>();
    const scalar_t lim = static_cast<scalar_t>(1.0 / NORM_EPS);
    at::parallel_for(0, N, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(D, 1)), [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        const scalar_t f = pr[i] < lim ? pr[i] * pr[i] * pd[i] : scalar_t(0);
        scalar_t* gi = pg + i * D;
        const scalar_t* vi = pv + i * D;
        _Pragma("omp simd") for (int64_t j = 0; j < D; ++j) gi[j] -= f * vi[j];
      }
    });
  });
}

// The normalisation backward from the GEMM result alone (CPU): for each row i of the raw gradient
// g = e W (or e^T X), dot_i = v_i . g_i (= sum_k dcos_ik cos_ik), then g_i -= k_i dot_i v_i.
// Returns dot [N] (its sum is sum dcos * cos, for the temperature's gradient).
at::Tensor norm_backward_project(at::Tensor& g, const at::Tensor& v, const at::Tensor& r) {
  TORCH_CHECK(g.is_cpu() && g.is_contiguous() && v.is_contiguous() && g.scalar_type() == v.scalar_type(),
              "norm_backward_project: layout");
  const int64_t N = g.size(0), D = g.size(1);
  at::Tensor dot = at::empty({N}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "norm_backward_project", [&] {
    scalar_t* pg = g.data_ptr<scalar_t>();
    const scalar_t* pv = v.data_ptr<scalar_t>();
    const scalar_t* pr = r.data_ptr<scalar_t>();
    scalar_t* pd = dot.data_ptr<scalar_t>();
    const scalar_t lim = static_cast<scalar_t>(1.0 / NORM_EPS);
    at::parallel_for(0, N, std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(D, 1)), [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        scalar_t* gi = pg + i * D;
        const scalar_t* vi = pv + i * D;
        scalar_t d = 0;
        _Pragma("omp simd reduction(+ : d)") for (int64_t j = 0; j < D; ++j) d += gi[j] * vi[j];
        pd[i] = d;
        const scalar_t f = pr[i] < lim ? pr[i] * pr[i] * d : scalar_t(0);
        _Pragma("omp simd") for (int64_t j = 0; j < D; ++j) gi[j] -= f * vi[j];
      }
    });
  });
  return dot;
}

void fwd_rows(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
              double margin, const at::Tensor& target, const at::Tensor& lo, const at::Tensor& hi, int64_t c0,
              RowKind kind, const at::Tensor& stats) {
#ifdef WITH_CUDA
  if (gpu_path(dots)) return cosine_logits_fwd_rows_cuda(dots, rx, rw, scale, margin, target, lo, hi, c0, kind, stats);
#endif
  TORCH_CHECK(dots.is_cpu(), "cosine_logits: no kernel for device ", dots.device());
  cosine_logits_fwd_rows_cpu(dots, rx, rw, scale, margin, target, lo, hi, c0, kind, stats);
}

void ce_rows(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
             double margin, const at::Tensor& target, double weight, const at::Tensor& stats, const at::Tensor& rowdot,
             const at::Tensor& coldot) {
#ifdef WITH_CUDA
  if (gpu_path(dots)) return aam_ce_rows_cuda(dots, rx, rw, scale, margin, target, weight, stats, rowdot, coldot);
#endif
  TORCH_CHECK(dots.is_cpu(), "cosine_logits: no kernel for device ", dots.device());
  aam_ce_rows_cpu(dots, rx, rw, scale, margin, target, weight, stats, rowdot, coldot);
}

at::Tensor opt_index(const std::optional<at::Tensor>& t, const at::Tensor& like) {
  return t.has_value() ? t->contiguous() : at::empty({0}, like.options().dtype(at::kLong));
}

// The logit scale as a one-element tensor of the compute dtype: 1 / tau (a tensor: learnable
// temperature, read on the device - no host sync) or the float `scale`.
at::Tensor scale_tensor(const std::optional<at::Tensor>& tau, double scale, const at::Tensor& like) {
  if (tau.has_value()) return tau->to(like.options()).reshape({1}).reciprocal();
  if (like.is_cpu()) {  // a host write instead of a fill kernel
    at::Tensor t = at::empty({1}, like.options());
    AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "scale_tensor", [&] { t.data_ptr<scalar_t>()[0] = static_cast<scalar_t>(scale); });
    return t;
  }
  return at::full({1}, scale, like.options());
}

// The forward of every op: the norms, the GEMM (over column chunks of `chunk` for the cross-entropy)
// and the row kernel of `kind`.
Tensors5 forward(const at::Tensor& x, const at::Tensor& w, const OptTensor& tau, double scale, double margin,
                 const OptTensor& target, const OptTensor& lo, const OptTensor& hi, RowKind kind, int64_t chunk) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "cosine_logits: x [B, D] and w [K, D] expected");
  TORCH_CHECK(x.device() == w.device(), "cosine_logits: x and w must be on the same device");
  const auto cdt = compute_dtype(x, w);
  const int64_t B = x.size(0), K = w.size(0);
  const at::Tensor xf = x.to(cdt).contiguous();
  const at::Tensor sc = scale_tensor(tau, scale, xf);
  const at::Tensor tg = opt_index(target, x), lo_ = opt_index(lo, x), hi_ = opt_index(hi, x);
  const at::Tensor rx = inv_norm(xf, cdt), rw = inv_norm(w, cdt);
  at::Tensor stats = at::zeros({3, B}, xf.options());
  const at::Tensor none = at::empty({0}, xf.options());
  if (kind != kCrossEntropy) {
    at::Tensor dots = at::mm(xf, w.to(cdt).t());
    fwd_rows(dots, rx, rw, sc, margin, tg, lo_, hi_, 0, kind, stats);
    at::Tensor out = dots.to(x.scalar_type());
    // the float result too where the output was rounded (backward wants it)
    return {out, out.scalar_type() == cdt ? none : dots, stats, rx, rw};
  }
  TORCH_CHECK(chunk > 0, "cosine_logits: chunk must be positive");
  stats[0].fill_(-std::numeric_limits<double>::infinity());
  for (int64_t c0 = 0; c0 < K; c0 += chunk) {
    const int64_t c1 = std::min(K, c0 + chunk);
    at::Tensor dots = at::mm(xf, w.slice(0, c0, c1).to(cdt).t());
    fwd_rows(dots, rx, rw.slice(0, c0, c1), sc, margin, tg, lo_, hi_, c0, kind, stats);
  }
  // stats rows: running max, sum of exp, target logit -> lse in row 0; out = loss rows
  stats[0].add_(stats[1].log());
  at::Tensor loss = stats[0] - stats[2];
  return {loss, none, stats, rx, rw};
}

// CPU backward of the softmax (kProbs) and the margin logits (kLogits): e straight from p (or the
// logits' gradient) and g, the two GEMMs, then the normalisation terms from the GEMM results (no log
// p, no recomputed logits tile, no per-column partials).
Tensors3 backward_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& xf, const at::Tensor& rx,
                      const at::Tensor& rw, const at::Tensor& sc, double margin, const at::Tensor& tg, RowKind kind,
                      const at::Tensor& sv, const at::Tensor& gr) {
  const at::Tensor wc = w.to(xf.scalar_type()).contiguous();
  at::Tensor e = at::empty({xf.size(0), w.size(0)}, xf.options());
  if (kind == kProbs) {
    cosine_softmax_grad_cpu(e, rx, rw, sc, sv, gr);
  } else {
    aam_logits_grad_cpu(e, xf, wc, rx, rw, sc, margin, tg, gr);
  }
  at::Tensor dx = at::mm(e, wc), dw = at::mm(e.t(), xf);
  at::Tensor rowdot = norm_backward_project(dx, xf, rx);
  norm_backward_project(dw, wc, rw);
  return {dx.to(x.scalar_type()), dw.to(w.scalar_type()), rowdot};
}

// The row-kernel backward over column chunks of `step` (the CUDA kernels recover cos: from the saved
// probabilities for the softmax, a recomputed tile otherwise; on the CPU only the cross-entropy comes here).
Tensors3 backward_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& xf, const at::Tensor& rx,
                       const at::Tensor& rw, const at::Tensor& sc, double margin, const at::Tensor& tg, RowKind kind,
                       const at::Tensor& sv, const at::Tensor& ls, const at::Tensor& gr, int64_t step) {
  const auto cdt = xf.scalar_type();
  const int64_t B = xf.size(0), D = xf.size(1), K = w.size(0);
  TORCH_CHECK(step > 0, "cosine_logits: chunk must be positive");
  // one chunk: dx is written by mm_out; several: accumulated by addmm_
  at::Tensor dx = step >= K ? at::empty({B, D}, xf.options()) : at::zeros({B, D}, xf.options());
  at::Tensor dw = at::empty({K, D}, xf.options());
  at::Tensor rowdot = at::zeros({B}, xf.options());
  for (int64_t c0 = 0; c0 < K; c0 += step) {
    const int64_t c1 = std::min(K, c0 + step);
    const at::Tensor wc = (step >= K ? w : w.slice(0, c0, c1)).to(cdt);
    const at::Tensor rwc = step >= K ? rw : rw.slice(0, c0, c1);
    // the softmax recovers cos from the saved probabilities: no GEMM recompute
    at::Tensor dots = kind == kProbs ? at::empty({B, c1 - c0}, xf.options()) : at::mm(xf, wc.t());
    at::Tensor coldot = at::zeros({c1 - c0}, xf.options());
#ifdef WITH_CUDA
    if (gpu_path(dots)) {
      cosine_logits_bwd_rows_cuda(dots, rx, rwc, sc, margin, tg, c0, kind, sv, ls, gr, rowdot, coldot);
    } else
#endif
    {
      TORCH_CHECK(dots.is_cpu() && kind == kCrossEntropy, "cosine_logits: no backward row kernel for ",
                  op_of_kind(kind), " on ", dots.device());
      aam_ce_bwd_rows_cpu(dots, rx, rwc, sc, margin, tg, c0, ls, gr, rowdot, coldot);
    }
    if (step >= K) {
      at::mm_out(dx, dots, wc);
    } else {
      dx.addmm_(dots, wc);
    }
    at::Tensor dwc = step >= K ? dw : dw.slice(0, c0, c1);
    at::mm_out(dwc, dots.t(), xf);
    norm_backward_sub(dwc, wc.contiguous(), rwc, coldot);
  }
  norm_backward_sub(dx, xf, rx, rowdot);
  return {dx.to(x.scalar_type()), dw.to(w.scalar_type()), rowdot};
}

// The softmax / margin-logits backward for grad = dL/d(probs or logits) [B, K].
Tensors3 backward_whole(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                        const OptTensor& tau, double scale, double margin, const OptTensor& target, RowKind kind,
                        const at::Tensor& saved, const at::Tensor& lse, const at::Tensor& grad) {
  const auto cdt = compute_dtype(x, w);
  const at::Tensor xf = x.to(cdt).contiguous();
  const at::Tensor sc = scale_tensor(tau, scale, xf);
  const at::Tensor tg = opt_index(target, x);
  const at::Tensor none = at::empty({0}, xf.options());
  const at::Tensor sv = saved.defined() ? saved.to(cdt).contiguous() : none;
  const at::Tensor ls = lse.defined() ? lse.to(cdt).contiguous() : none;
  const at::Tensor gr = grad.to(cdt).contiguous();
  if (host_path(xf)) return backward_cpu(x, w, xf, rx, rw, sc, margin, tg, kind, sv, gr);
  return backward_rows(x, w, xf, rx, rw, sc, margin, tg, kind, sv, ls, gr, w.size(0));
}

}  // namespace

// prototype family -----------------------------------------------------------------------------

Tensors5 cosine_softmax_fwd(const at::Tensor& x, const at::Tensor& w, const OptTensor& tau, double scale,
                            const OptTensor& lo, const OptTensor& hi) {
  return forward(x, w, tau, scale, 0.0, std::nullopt, lo, hi, kProbs, 0);
}

Tensors3 cosine_softmax_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                            const OptTensor& tau, double scale, const at::Tensor& probs, const at::Tensor& lse,
                            const at::Tensor& grad) {
  return backward_whole(x, w, rx, rw, tau, scale, 0.0, std::nullopt, kProbs, probs, lse, grad);
}

Tensors3 clustering_loss_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                             const OptTensor& tau, double scale, const at::Tensor& probs, const at::Tensor& lse,
                             const at::Tensor& grad, double lam) {
  // SphericGAN Eq. (2): dL/dphi_bk = g * (-(log phi_bk + 1) / B - lam / (K B pbar_k)), the second
  // term 0 where pbar is clamped; then the softmax backward.
  const auto cdt = compute_dtype(x, w);
  const at::Tensor sv = probs.to(cdt).contiguous();
  const int64_t B = sv.size(0), K = sv.size(1);
  const at::Tensor pbar = sv.mean(0);
  const at::Tensor logp = at::where(sv > 0, sv.clamp_min(PBAR_MIN).log(), at::zeros_like(sv));
  const at::Tensor dprior =
      at::where(pbar >= PBAR_MIN, (lam / double(K * B)) / pbar.clamp_min(PBAR_MIN), at::zeros_like(pbar));
  const at::Tensor gp =
      (grad.to(cdt).contiguous().reshape({1, 1}) * (-(logp + 1.0) / double(B) - dprior.unsqueeze(0))).contiguous();
  return backward_whole(x, w, rx, rw, tau, scale, 0.0, std::nullopt, kProbs, sv, lse, gp);
}

// aam family -----------------------------------------------------------------------------------

Tensors5 aam_logits_fwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s, double m) {
  return forward(x, w, std::nullopt, s, m, target, std::nullopt, std::nullopt, kLogits, 0);
}

Tensors2 aam_logits_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                        const at::Tensor& target, double s, double m, const at::Tensor& grad) {
  auto [dx, dw, rowdot] =
      backward_whole(x, w, rx, rw, std::nullopt, s, m, target, kLogits, at::Tensor(), at::Tensor(), grad);
  return {dx, dw};
}

Tensors4 aam_ce_fwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s, double m,
                    int64_t chunk) {
  auto [loss, none, stats, rx, rw] =
      forward(x, w, std::nullopt, s, m, target, std::nullopt, std::nullopt, kCrossEntropy, chunk);
  return {loss, stats[0].clone(), rx, rw};
}

Tensors2 aam_ce_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                    const at::Tensor& target, double s, double m, const at::Tensor& lse, const at::Tensor& grad,
                    int64_t chunk) {
  const auto cdt = compute_dtype(x, w);
  const at::Tensor xf = x.to(cdt).contiguous();
  const at::Tensor sc = scale_tensor(std::nullopt, s, xf);
  const at::Tensor none = at::empty({0}, xf.options());
  auto [dx, dw, rowdot] = backward_rows(x, w, xf, rx, rw, sc, m, target.contiguous(), kCrossEntropy, none,
                                        lse.to(cdt).contiguous(), grad.to(cdt).contiguous(), chunk);
  return {dx, dw};
}

Tensors6 aam_ce_fused(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double scale, double margin,
                      double weight, int64_t chunk) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "cosine_logits: x [B, D] and w [K, D] expected");
  TORCH_CHECK(chunk > 0, "cosine_logits: chunk must be positive");
  const auto cdt = compute_dtype(x, w);
  const at::Tensor xf = x.to(cdt).contiguous(), wf = w.to(cdt).contiguous();
  const int64_t B = xf.size(0), D = xf.size(1), K = wf.size(0);
  const at::Tensor sc = at::full({1}, scale, xf.options());
  const at::Tensor rx = inv_norm(xf, cdt), rw = inv_norm(wf, cdt);
  at::Tensor loss = at::empty({B}, xf.options()), lse = at::empty({B}, xf.options());
  at::Tensor dx = at::empty({B, D}, xf.options()), dw = at::zeros({K, D}, xf.options());
  at::Tensor coldot = at::zeros({K}, xf.options());
  for (int64_t r0 = 0; r0 < B; r0 += chunk) {  // row chunks of the [B, K] tile
    const int64_t r1 = std::min(B, r0 + chunk);
    const at::Tensor xc = xf.slice(0, r0, r1);
    at::Tensor dots = at::mm(xc, wf.t());
    at::Tensor stats = at::empty({3, r1 - r0}, xf.options());
    at::Tensor rowdot = at::zeros({r1 - r0}, xf.options());
    ce_rows(dots, rx.slice(0, r0, r1), rw, sc, margin, target.slice(0, r0, r1), weight, stats, rowdot, coldot);
    lse.slice(0, r0, r1).copy_(stats[0]);
    loss.slice(0, r0, r1).copy_(stats[1]);
    at::Tensor dxc = dx.slice(0, r0, r1);
    at::mm_out(dxc, dots, wf);
    norm_backward_sub(dxc, xc, rx.slice(0, r0, r1), rowdot);
    dw.addmm_(dots.t(), xc);
  }
  norm_backward_sub(dw, wf, rw, coldot);
  return {loss, lse, rx, rw, dx.to(x.scalar_type()), dw.to(w.scalar_type())};
}

}  // namespace ssgan_fast

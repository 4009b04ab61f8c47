// Declarations of the kernels registered in ops.cpp.
//
// The "cosine_logits" kernels are the fused element-wise core shared by op families 1 and 2
// (prototype assignment, AAM margin).  They work in place on a float32 tile `dots[B, Kc]` that
// holds raw dot products x_b . w_{c0+k} (computed by the vendor GEMM), and turn it into
//   fwd: probabilities (mode 0), margin logits (mode 1) or online log-sum-exp statistics (mode 2)
//   bwd: e_bk = dcos_bk * rx_b * rw_k (the GEMM operand of the input gradients), accumulating
//        rowdot_b += sum_k dcos_bk cos_bk and coldot_k = sum_b dcos_bk cos_bk (norm backward).
// See ssgan_fast/ops/_cosine_logits.py for the host side and the maths.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace ssgan_fast {

enum Mode : int64_t { kProbs = 0, kLogits = 1, kCrossEntropy = 2, kClustering = 3 };  // 3: host-side only

// csrc/errors.cpp: what a failed CUDA launch reports (SSGAN_CHECK_LAUNCH in cuda/common.cuh)
std::string describe(const at::Tensor& t);
const char* op_of_mode(int64_t mode);
std::string launch_error_message(const std::string& op, const std::string& kernel,
                                 const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors,
                                 const std::string& error);

// ArcFace additive angular margin, insightface's non-"easy" form:
//   phi(c) = cos(acos(c) + m)          if c > th = cos(pi - m)
//          = c - mm, mm = sin(pi - m)*m otherwise (keeps phi monotone once theta + m > pi).
// c is clamped to [-1 + 1e-7, 1 - 1e-7] inside the square root (finite gradient at |c| = 1).
struct Margin {
  float cos_m, sin_m, th, mm;
};
template <typename T>
struct MarginT {
  T cos_m, sin_m, th, mm;
};
template <typename T>
inline MarginT<T> make_margin_t(double m) {
  const double pi = 3.14159265358979323846;
  return MarginT<T>{(T)std::cos(m), (T)std::sin(m), (T)std::cos(pi - m), (T)(std::sin(pi - m) * m)};
}
inline Margin make_margin(double m) {
  const auto t = make_margin_t<float>(m);
  return Margin{t.cos_m, t.sin_m, t.th, t.mm};
}
constexpr double kMarginClampEps = 1e-7;

inline void check_rows_args(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                            const at::Tensor& scale, const at::Tensor& target, const at::Tensor& lo,
                            const at::Tensor& hi, int64_t mode) {
  const auto dt = dots.scalar_type();
  TORCH_CHECK(dots.dim() == 2 && (dt == at::kFloat || dt == at::kDouble) && dots.stride(1) == 1,
              "cosine_logits: dots must be a float32/float64 [B, K] tensor with unit column stride");
  const int64_t B = dots.size(0), K = dots.size(1);
  TORCH_CHECK(rx.scalar_type() == dt && rx.is_contiguous() && rx.numel() == B,
              "cosine_logits: rx must have the dtype of dots and be contiguous [B]");
  TORCH_CHECK(rw.scalar_type() == dt && rw.is_contiguous() && rw.numel() == K,
              "cosine_logits: rw must have the dtype of dots and be contiguous [K]");
  TORCH_CHECK(scale.scalar_type() == dt && scale.numel() == 1, "cosine_logits: scale must be a one-element tensor with the dtype of dots");
  TORCH_CHECK(mode >= 0 && mode <= 2, "cosine_logits: mode must be 0, 1 or 2");
  if (mode != kProbs) {
    TORCH_CHECK(target.scalar_type() == at::kLong && target.is_contiguous() && target.numel() == B,
                "cosine_logits: target must be int64 contiguous [B] in margin modes");
  }
  TORCH_CHECK(lo.numel() == hi.numel(), "cosine_logits: lo and hi must both be given or both be empty");
  if (lo.numel() > 0) {
    TORCH_CHECK(mode == kProbs, "cosine_logits: group ranges only apply to mode 0");
    TORCH_CHECK(lo.scalar_type() == at::kLong && hi.scalar_type() == at::kLong && lo.is_contiguous() &&
                    hi.is_contiguous() && lo.numel() == B,
                "cosine_logits: lo/hi must be int64 contiguous [B]");
  }
  for (const at::Tensor* t : {&rx, &rw, &scale}) {
    TORCH_CHECK(t->device() == dots.device(), "cosine_logits: all tensors must be on the same device");
  }
}

inline void check_stats_arg(const at::Tensor& dots, const at::Tensor& stats) {
  TORCH_CHECK(stats.scalar_type() == dots.scalar_type() && stats.is_contiguous() && stats.numel() == 3 * dots.size(0),
              "cosine_logits: stats must have the dtype of dots and be contiguous [3, B]");
  TORCH_CHECK(stats.device() == dots.device(), "cosine_logits: all tensors must be on the same device");
}

inline void check_bwd_args(const at::Tensor& dots, int64_t mode, const at::Tensor& saved, const at::Tensor& lse,
                           const at::Tensor& grad, const at::Tensor& rowdot, const at::Tensor& coldot) {
  const int64_t B = dots.size(0), K = dots.size(1);
  const auto dt = dots.scalar_type();
  TORCH_CHECK(rowdot.scalar_type() == dt && rowdot.is_contiguous() && rowdot.numel() == B,
              "cosine_logits: rowdot must have the dtype of dots and be contiguous [B]");
  TORCH_CHECK(coldot.scalar_type() == dt && coldot.is_contiguous() && coldot.numel() == K,
              "cosine_logits: coldot must have the dtype of dots and be contiguous [K]");
  for (const at::Tensor* t : {&saved, &lse, &grad}) {
    TORCH_CHECK(t->numel() == 0 || (t->scalar_type() == dt && t->is_contiguous()),
                "cosine_logits: saved, lse and grad must have the dtype of dots and be contiguous");
  }
  if (mode == kProbs) {
    TORCH_CHECK(saved.numel() == B * K && lse.numel() == B && grad.numel() == B * K,
                "cosine_logits: mode 0 wants probs [B, K], lse [B] and grad [B, K]");
  } else if (mode == kLogits) {
    TORCH_CHECK(grad.numel() == B * K, "cosine_logits: mode 1 wants grad of [B, K]");
  } else {
    TORCH_CHECK(lse.numel() == B && grad.numel() == B, "cosine_logits: mode 2 wants lse [B] and grad [B]");
  }
  for (const at::Tensor* t : {&saved, &lse, &grad, &rowdot, &coldot}) {
    TORCH_CHECK(t->numel() == 0 || t->device() == dots.device(), "cosine_logits: all tensors must be on the same device");
  }
}

inline void check_ce_rows_args(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                               const at::Tensor& scale, const at::Tensor& target, const at::Tensor& stats,
                               const at::Tensor& rowdot, const at::Tensor& coldot) {
  const at::Tensor none = at::empty({0}, target.options());
  check_rows_args(dots, rx, rw, scale, target, none, none, kCrossEntropy);
  check_stats_arg(dots, stats);
  check_bwd_args(dots, kLogits, none, none, dots, rowdot, coldot);
}

void cosine_logits_fwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                const at::Tensor& stats);
// CPU: mode 2 only (the host writes the GEMM operand of modes 0 / 1 with the two kernels below)
void cosine_logits_bwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                const at::Tensor& saved, const at::Tensor& lse, const at::Tensor& grad,
                                const at::Tensor& rowdot, const at::Tensor& coldot);
void cosine_logits_ce_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                               const at::Tensor& scale, double margin, const at::Tensor& target, double weight,
                               const at::Tensor& stats, const at::Tensor& rowdot, const at::Tensor& coldot);
// mode 0 backward on the CPU host: e = s p (g - rowsum(p g)) rx rw (see cosine_logits_backward)
void cosine_logits_probs_grad_cpu(const at::Tensor& e, const at::Tensor& rx, const at::Tensor& rw,
                                  const at::Tensor& scale, const at::Tensor& probs, const at::Tensor& grad);
// mode 1 backward on the CPU host: e = s g rx rw, the margin derivative at the target
void cosine_logits_margin_grad_cpu(const at::Tensor& e, const at::Tensor& x, const at::Tensor& w,
                                   const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale, double margin,
                                   const at::Tensor& target, const at::Tensor& grad);
void prototype_ema_rows_cpu(const at::Tensor& protos, const at::Tensor& sums, const at::Tensor& wsum,
                            double momentum);

// Whole forward / backward (host + kernels) for the cpp and cuda backends: csrc/cosine_logits_host.cpp.
// forward -> (out in x's dtype, out as float where that differs else empty, stats [3, B], rx, rw)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cosine_logits_forward(
    const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& tau, double scale, double margin,
    const std::optional<at::Tensor>& target, const std::optional<at::Tensor>& lo, const std::optional<at::Tensor>& hi,
    int64_t mode, int64_t chunk);
// backward -> (dx, dw, rowdot [B] = sum_k dcos_bk cos_bk); mode kClustering: grad is dL/dloss of clustering_loss
std::tuple<at::Tensor, at::Tensor, at::Tensor> cosine_logits_backward(
    const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
    const std::optional<at::Tensor>& tau, double scale, double margin, const std::optional<at::Tensor>& target,
    const std::optional<at::Tensor>& lo, const std::optional<at::Tensor>& hi, int64_t mode,
    const std::optional<at::Tensor>& saved, const std::optional<at::Tensor>& lse, const at::Tensor& grad, double lam,
    int64_t chunk);
// Cross-entropy forward that also computes the input gradients for dL/dloss_b = weight (the
// gradient is then only scaled in backward): (loss, lse, rx, rw, dx, dw).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cosine_logits_ce_fused(
    const at::Tensor& x, const at::Tensor& w, double scale, double margin, const at::Tensor& target, double weight,
    int64_t chunk);

#ifdef WITH_CUDA
void cosine_logits_fwd_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                 const at::Tensor& scale, double margin, const at::Tensor& target,
                                 const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                 const at::Tensor& stats);
void cosine_logits_bwd_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                 const at::Tensor& scale, double margin, const at::Tensor& target,
                                 const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t mode,
                                 const at::Tensor& saved, const at::Tensor& lse, const at::Tensor& grad,
                                 const at::Tensor& rowdot, const at::Tensor& coldot);
void cosine_logits_ce_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target, double weight,
                                const at::Tensor& stats, const at::Tensor& rowdot, const at::Tensor& coldot);
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

// The fused cosine-logits core shared by the op families "prototype" (cosine_softmax,
// clustering_loss) and "aam" (aam_logits, aam_cross_entropy): "normalised linear + softmax".
//
// Host functions (cosine_logits_host.cpp), one forward and one backward per op, registered in
// ops.cpp and mirrored one for one by the Triton backend's host (ssgan_fast/ops/_cosine_logits.py).
// They compute the raw dot products with the vendor GEMM and hand float32 / float64 tiles
// `dots[B, Kc]` to the row kernels (cpu/cosine_logits.cpp, cuda/cosine_logits.cu), which work in
// place: forward to probabilities, margin logits or online log-sum-exp statistics; backward to
// e = dcos * rx * rw (the GEMM operand of the input gradients) and the row / column sums of
// dcos * cos (the normalisation backward). The maths: ssgan_fast/ops/_cosine_logits.py.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include "common/shared.h"

namespace ssgan_fast {

using Tensors2 = std::tuple<at::Tensor, at::Tensor>;
using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Tensors4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors6 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using OptTensor = std::optional<at::Tensor>;

// ---- per-op host functions (the cpp and cuda backends; same contract as the Triton host) ----
// forward -> (probs in x's dtype, probs as float where that differs else empty, stats [3, B] (lse,
// entropy, -), rx, rw)
Tensors5 cosine_softmax_fwd(const at::Tensor& x, const at::Tensor& w, const OptTensor& tau, double scale,
                            const OptTensor& lo, const OptTensor& hi);
// backward -> (dx, dw, rowdot [B] = sum_k dcos_bk cos_bk); probs, lse = stats[0] of the forward
Tensors3 cosine_softmax_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                            const OptTensor& tau, double scale, const at::Tensor& probs, const at::Tensor& lse,
                            const at::Tensor& grad);
// SphericGAN Eq. (2): grad is dL/dloss (a scalar)
Tensors3 clustering_loss_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                             const OptTensor& tau, double scale, const at::Tensor& probs, const at::Tensor& lse,
                             const at::Tensor& grad, double lam);
// aam-discriminator Eq. (8): -> (logits, logits as float where that differs else empty, stats, rx, rw)
Tensors5 aam_logits_fwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s, double m);
Tensors2 aam_logits_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                        const at::Tensor& target, double s, double m, const at::Tensor& grad);
// cross-entropy of the margin logits over class chunks of `chunk` -> (loss [B], lse [B], rx, rw)
Tensors4 aam_ce_fwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s, double m,
                    int64_t chunk);
// grad: dL/dloss_b [B]; the logits are recomputed chunk by chunk -> (dx, dw)
Tensors2 aam_ce_bwd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx, const at::Tensor& rw,
                    const at::Tensor& target, double s, double m, const at::Tensor& lse, const at::Tensor& grad,
                    int64_t chunk);
// cross-entropy forward that also computes the input gradients for dL/dloss_b = weight, over row
// chunks of `chunk` (backward then only scales them) -> (loss, lse, rx, rw, dx, dw)
Tensors6 aam_ce_fused(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s, double m,
                      double weight, int64_t chunk);

// ---- row kernels (internal to the host; not ops) ----
// What a row kernel computes: the forward of which op (the CUDA / Triton kernels are compiled once per kind).
enum RowKind : int64_t { kProbs = 0, kLogits = 1, kCrossEntropy = 2 };

inline const char* op_of_kind(int64_t kind) {
  switch (kind) {
    case kProbs: return "cosine_softmax / clustering_loss";
    case kLogits: return "aam_logits";
    case kCrossEntropy: return "aam_cross_entropy";
    default: return "cosine_logits";
  }
}

void cosine_logits_fwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                const at::Tensor& scale, double margin, const at::Tensor& target,
                                const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t kind,
                                const at::Tensor& stats);
// CPU backward kernels: the cross-entropy over a column chunk of recomputed logits; the softmax and
// margin-logits backward write the GEMM operand straight from p (or dL/dlogits) and g.
void aam_ce_bwd_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                         double margin, const at::Tensor& target, int64_t c0, const at::Tensor& lse,
                         const at::Tensor& grad, const at::Tensor& rowdot, const at::Tensor& coldot);
void cosine_softmax_grad_cpu(const at::Tensor& e, const at::Tensor& rx, const at::Tensor& rw,
                             const at::Tensor& scale, const at::Tensor& probs, const at::Tensor& grad);
void aam_logits_grad_cpu(const at::Tensor& e, const at::Tensor& x, const at::Tensor& w, const at::Tensor& rx,
                         const at::Tensor& rw, const at::Tensor& scale, double margin, const at::Tensor& target,
                         const at::Tensor& grad);
void aam_ce_rows_cpu(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                     double margin, const at::Tensor& target, double weight, const at::Tensor& stats,
                     const at::Tensor& rowdot, const at::Tensor& coldot);

// The device path a tensor takes in the host functions: the CUDA row kernels (gpu_path) or the CPU ones
// (host_path). The CPU emulation build of the CUDA kernels (SSGAN_CUDA_EMU, csrc/emu/) sends CPU tensors
// down the CUDA path.
#ifdef SSGAN_CUDA_EMU
inline bool gpu_path(const at::Tensor& t) { return t.is_cpu(); }
#else
inline bool gpu_path(const at::Tensor& t) { return t.is_cuda(); }
#endif
inline bool host_path(const at::Tensor& t) { return t.is_cpu() && !gpu_path(t); }

#ifdef WITH_CUDA
void cosine_logits_fwd_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                 const at::Tensor& scale, double margin, const at::Tensor& target,
                                 const at::Tensor& lo, const at::Tensor& hi, int64_t c0, int64_t kind,
                                 const at::Tensor& stats);
// every kind: probs (cos recovered from the saved probabilities), logits, cross-entropy
void cosine_logits_bwd_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                                 const at::Tensor& scale, double margin, const at::Tensor& target, int64_t c0,
                                 int64_t kind, const at::Tensor& saved, const at::Tensor& lse, const at::Tensor& grad,
                                 const at::Tensor& rowdot, const at::Tensor& coldot);
void aam_ce_rows_cuda(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw, const at::Tensor& scale,
                      double margin, const at::Tensor& target, double weight, const at::Tensor& stats,
                      const at::Tensor& rowdot, const at::Tensor& coldot);
#endif

inline void check_rows_args(const at::Tensor& dots, const at::Tensor& rx, const at::Tensor& rw,
                            const at::Tensor& scale, const at::Tensor& target, const at::Tensor& lo,
                            const at::Tensor& hi, int64_t kind) {
  const auto dt = dots.scalar_type();
  TORCH_CHECK(dots.dim() == 2 && (dt == at::kFloat || dt == at::kDouble) && dots.stride(1) == 1,
              "cosine_logits: dots must be a float32/float64 [B, K] tensor with unit column stride");
  const int64_t B = dots.size(0), K = dots.size(1);
  TORCH_CHECK(rx.scalar_type() == dt && rx.is_contiguous() && rx.numel() == B,
              "cosine_logits: rx must have the dtype of dots and be contiguous [B]");
  TORCH_CHECK(rw.scalar_type() == dt && rw.is_contiguous() && rw.numel() == K,
              "cosine_logits: rw must have the dtype of dots and be contiguous [K]");
  TORCH_CHECK(scale.scalar_type() == dt && scale.numel() == 1, "cosine_logits: scale must be a one-element tensor with the dtype of dots");
  TORCH_CHECK(kind >= kProbs && kind <= kCrossEntropy, "cosine_logits: unknown row kernel kind ", kind);
  if (kind != kProbs) {
    TORCH_CHECK(target.scalar_type() == at::kLong && target.is_contiguous() && target.numel() == B,
                "cosine_logits: target must be int64 contiguous [B] for the margin kernels");
  }
  TORCH_CHECK(lo.numel() == hi.numel(), "cosine_logits: lo and hi must both be given or both be empty");
  if (lo.numel() > 0) {
    TORCH_CHECK(kind == kProbs, "cosine_logits: group ranges only apply to the softmax");
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

inline void check_bwd_args(const at::Tensor& dots, int64_t kind, const at::Tensor& saved, const at::Tensor& lse,
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
  if (kind == kProbs) {
    TORCH_CHECK(saved.numel() == B * K && lse.numel() == B && grad.numel() == B * K,
                "cosine_logits: the softmax backward wants probs [B, K], lse [B] and grad [B, K]");
  } else if (kind == kLogits) {
    TORCH_CHECK(grad.numel() == B * K, "cosine_logits: the logits backward wants grad of [B, K]");
  } else {
    TORCH_CHECK(lse.numel() == B && grad.numel() == B, "cosine_logits: the cross-entropy backward wants lse [B] and grad [B]");
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

}  // namespace ssgan_fast

// Eager autograd of the cosine-logits ops for the cpp and cuda backends, in C++.
//
// The Python side (ssgan_fast/ops/_cosine_logits.py) defines each op twice: a torch.library custom
// op with fake kernel and registered autograd (what torch.compile traces) and, for eager calls, an
// autograd.Function. This file is a third form of the eager path for the C++ backends: the same
// forward / backward host calls (cosine_logits_host.cpp), wrapped in torch::autograd::Function and
// registered as ssgan_fast_C::<op>_autograd under the Autograd dispatch key. At the shapes of the
// papers the ops are a few tens of microseconds of work; the Python Function's own overhead
// (apply, ctx, the backward's Python frame, two dispatcher round trips, autocast contexts) was
// about as much again. Here the backward runs without Python.
//
// Contract, as the Python Function: autocast is off inside (the kernels take bf16 / fp16 inputs
// and accumulate in fp32), and the backward is once-differentiable: its results carry an error
// node, so a second differentiation raises instead of returning wrong (zero) second derivatives.
#include <ATen/ATen.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include "common/ops_ns.h"

#include <optional>
#include <string>

#include "cosine_logits/cosine_logits.h"

namespace ssgan_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum Reduction : int64_t { kMean = 0, kSum = 1, kNone = 2 };

// Autocast off for the kernels' own GEMMs (they must see the fp32 / fp64 operands).
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// What once_differentiable does: where the backward runs with create_graph, its results get a
// DelayedError node, so differentiating them again raises.
variable_list once_differentiable(variable_list grads) {
  if (!at::GradMode::is_enabled()) return grads;
  variable_list inputs;
  inputs.reserve(grads.size());
  for (auto& g : grads) inputs.push_back(g.defined() ? g.detach().requires_grad_(true) : g);
  auto err = std::make_shared<torch::autograd::DelayedError>(
      "ssgan_fast: trying to differentiate twice a fused op whose backward is once_differentiable "
      "(use SSGAN_FAST_BACKEND=ref for higher-order gradients)",
      static_cast<int64_t>(inputs.size()));
  return err->apply(std::move(inputs));
}

// logit = cos / tau: dL/dtau = -sum(dlogit * cos) / tau^2 = -sum(dcos * cos) / tau (rd: per-row sums)
at::Tensor dtau_of(const at::Tensor& rd, const at::Tensor& tau) {
  return (-rd.to(at::kDouble).sum() / tau.detach().to(at::kDouble)).reshape(tau.sizes()).to(tau.scalar_type());
}

// The backward of both softmax ops, from the saved (x, w, tau, lo, hi, probs, stats, rx, rw):
// cosine_softmax (grad = dL/dprobs) or clustering_loss (clustering: grad = dL/dloss, lam of Eq. 2);
// n_inputs = the forward's argument count (one gradient slot each).
variable_list softmax_backward(AutogradContext* ctx, const at::Tensor& grad, bool clustering, double lam,
                               size_t n_inputs) {
  NoAutocast na;
  const auto s = ctx->get_saved_variables();
  const at::Tensor &x = s[0], &w = s[1], &tau = s[2];
  at::Tensor dx, dw, rd, dtau;
  {
    at::NoGradGuard ng;
    const double scale = ctx->saved_data["scale"].toDouble();
    std::tie(dx, dw, rd) = clustering ? clustering_loss_bwd(x, w, s[7], s[8], opt(tau), scale, s[5], s[6][0], grad, lam)
                                      : cosine_softmax_bwd(x, w, s[7], s[8], opt(tau), scale, s[5], s[6][0], grad);
    if (tau.defined() && ctx->needs_input_grad(2)) dtau = dtau_of(rd, tau);
  }
  variable_list out(n_inputs);
  out[0] = dx;
  out[1] = dw;
  out[2] = dtau;
  return once_differentiable(std::move(out));
}

// cosine_softmax ------------------------------------------------------------------------------
struct CosineSoftmax : torch::autograd::Function<CosineSoftmax> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& tau, double scale, const std::optional<at::Tensor>& lo,
                            const std::optional<at::Tensor>& hi) {
    NoAutocast na;
    auto [probs, probs_f, stats, rx, rw] = cosine_softmax_fwd(x, w, tau, scale, lo, hi);
    ctx->saved_data["scale"] = scale;
    ctx->save_for_backward({x, w, tau.value_or(at::Tensor()), lo.value_or(at::Tensor()), hi.value_or(at::Tensor()),
                            probs_f.numel() ? probs_f : probs, stats, rx, rw});
    return probs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return softmax_backward(ctx, g[0], false, 0.0, 6);
  }
};

// clustering_loss (SphericGAN Eq. 2) ----------------------------------------------------------
struct ClusteringLoss : torch::autograd::Function<ClusteringLoss> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& tau, double scale, double lam) {
    NoAutocast na;
    auto [out, probs_f, stats, rx, rw] = cosine_softmax_fwd(x, w, tau, scale, std::nullopt, std::nullopt);
    const at::Tensor probs = probs_f.numel() ? probs_f : out;
    // stats[1] is the per-row entropy computed by the softmax kernel
    at::Tensor loss = stats[1].mean() - lam * probs.mean(0).clamp_min(PBAR_MIN).log().mean();
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["lam"] = lam;
    ctx->save_for_backward({x, w, tau.value_or(at::Tensor()), at::Tensor(), at::Tensor(), probs, stats, rx, rw});
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return softmax_backward(ctx, g[0], true, ctx->saved_data["lam"].toDouble(), 5);
  }
};

// aam_logits (aam-discriminator Eq. 8) ---------------------------------------------------------
struct AAMLogits : torch::autograd::Function<AAMLogits> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& target,
                            double s, double m) {
    NoAutocast na;
    auto [logits, logits_f, stats, rx, rw] = aam_logits_fwd(x, w, target, s, m);
    ctx->saved_data["s"] = s;
    ctx->saved_data["m"] = m;
    ctx->save_for_backward({x, w, target, rx, rw});
    return logits;
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    NoAutocast na;
    const auto v = ctx->get_saved_variables();
    at::Tensor dx, dw;
    {
      at::NoGradGuard ng;
      std::tie(dx, dw) = aam_logits_bwd(v[0], v[1], v[3], v[4], v[2], ctx->saved_data["s"].toDouble(),
                                        ctx->saved_data["m"].toDouble(), g[0]);
    }
    return once_differentiable({dx, dw, at::Tensor(), at::Tensor(), at::Tensor()});
  }
};

// aam_cross_entropy: with a reduced loss, grads wanted and a weight of at most FUSED_CE_MAX_WEIGHT
// elements the forward writes dx, dW for dL/dloss = 1 (backward scales them); otherwise only lse
// is kept and backward recomputes the logits tile over class chunks.
struct AAMCrossEntropy : torch::autograd::Function<AAMCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& target,
                            double s, double m, int64_t reduction, bool need_grad, int64_t chunk) {
    NoAutocast na;
    const int64_t B = x.size(0), C = w.size(0);
    at::Tensor loss, lse, rx, rw, dx, dw;
    if (need_grad && reduction != kNone && w.numel() <= FUSED_CE_MAX_WEIGHT) {
      const double w_row = reduction == kMean ? 1.0 / double(B) : 1.0;
      std::tie(loss, lse, rx, rw, dx, dw) = aam_ce_fused(x, w, target, s, m, w_row, ce_row_chunk(B, C));
    } else {
      std::tie(loss, lse, rx, rw) = aam_ce_fwd(x, w, target, s, m, chunk);
    }
    if (reduction == kMean) {
      loss = loss.mean();
    } else if (reduction == kSum) {
      loss = loss.sum();
    }
    ctx->saved_data["s"] = s;
    ctx->saved_data["m"] = m;
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["chunk"] = chunk;
    ctx->save_for_backward({x, w, target, lse, rx, rw, dx, dw});
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list g) {
    NoAutocast na;
    const auto v = ctx->get_saved_variables();
    const at::Tensor &lse = v[3], &dx_f = v[6], &dw_f = v[7];
    at::Tensor dx, dw;
    {
      at::NoGradGuard ng;
      if (dx_f.defined()) {  // gradients written by the forward for dL/dloss = 1
        dx = g[0].to(dx_f.scalar_type()) * dx_f;
        dw = g[0].to(dw_f.scalar_type()) * dw_f;
      } else {
        at::Tensor gr = g[0].to(lse.scalar_type()).expand(lse.sizes());
        if (ctx->saved_data["reduction"].toInt() == kMean) gr = gr / double(lse.size(0));
        std::tie(dx, dw) = aam_ce_bwd(v[0], v[1], v[4], v[5], v[2], ctx->saved_data["s"].toDouble(),
                                      ctx->saved_data["m"].toDouble(), lse, gr.contiguous(), ctx->saved_data["chunk"].toInt());
      }
    }
    return once_differentiable({dx, dw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
                                at::Tensor()});
  }
};

at::Tensor cosine_softmax_autograd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& tau,
                                   double scale, const std::optional<at::Tensor>& lo,
                                   const std::optional<at::Tensor>& hi) {
  return CosineSoftmax::apply(x, w, tau, scale, lo, hi);
}

at::Tensor clustering_loss_autograd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& tau,
                                    double scale, double lam) {
  return ClusteringLoss::apply(x, w, tau, scale, lam);
}

at::Tensor aam_logits_autograd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s, double m) {
  return AAMLogits::apply(x, w, target, s, m);
}

at::Tensor aam_cross_entropy_autograd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& target, double s,
                                      double m, int64_t reduction, bool need_grad, int64_t chunk) {
  TORCH_CHECK(reduction >= kMean && reduction <= kNone, "aam_cross_entropy: reduction code must be 0, 1 or 2");
  return AAMCrossEntropy::apply(x, w, target, s, m, reduction, need_grad, chunk);
}

}  // namespace
}  // namespace ssgan_fast

SSGAN_LIBRARY_FRAGMENT(m) {
  m.def("cosine_softmax_autograd(Tensor x, Tensor w, Tensor? tau, float scale, Tensor? lo, Tensor? hi) -> Tensor");
  m.def("clustering_loss_autograd(Tensor x, Tensor w, Tensor? tau, float scale, float lam) -> Tensor");
  m.def("aam_logits_autograd(Tensor x, Tensor w, Tensor target, float s, float m) -> Tensor");
  m.def("aam_cross_entropy_autograd(Tensor x, Tensor w, Tensor target, float s, float m, int reduction, "
        "bool need_grad, int chunk) -> Tensor");
}

// Autograd: the graph-recording path. CompositeExplicitAutograd: the same call where the inputs
// carry no autograd key (inference mode), which then records nothing.
#define SSGAN_REGISTER_AUTOGRAD(KEY)                                                   \
  SSGAN_LIBRARY_IMPL(KEY, m) {                                                         \
    m.impl("cosine_softmax_autograd", &ssgan_fast::cosine_softmax_autograd);           \
    m.impl("clustering_loss_autograd", &ssgan_fast::clustering_loss_autograd);         \
    m.impl("aam_logits_autograd", &ssgan_fast::aam_logits_autograd);                   \
    m.impl("aam_cross_entropy_autograd", &ssgan_fast::aam_cross_entropy_autograd);     \
  }
SSGAN_REGISTER_AUTOGRAD(Autograd)
SSGAN_REGISTER_AUTOGRAD(CompositeExplicitAutograd)
#undef SSGAN_REGISTER_AUTOGRAD

// cosine_logits: the shared core of prototype (cosine_softmax, clustering_loss) and aam
// (aam_logits, aam_cross_entropy): one forward and one backward host function per op: the family's torch.library schema and its kernels' registration in ssgan_fast._C
// (ssgan_fast_C::<op>; ssgan_fast_emu in the CPU emulation build). The library itself is defined in
// csrc/common/module.cpp; each family adds its own ops here, so adding a family touches no shared list.
#include <torch/library.h>

#include "common/ops_ns.h"
#include "cosine_logits/cosine_logits.h"

SSGAN_LIBRARY_FRAGMENT(m) {
  // prototype
  m.def("cosine_softmax_fwd(Tensor x, Tensor w, Tensor? tau, float scale, Tensor? lo, Tensor? hi) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("cosine_softmax_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor? tau, float scale, Tensor probs, Tensor lse, Tensor grad) -> (Tensor, Tensor, Tensor)");
  m.def("clustering_loss_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor? tau, float scale, Tensor probs, Tensor lse, Tensor grad, float lam) -> (Tensor, Tensor, Tensor)");
  // aam
  m.def("aam_logits_fwd(Tensor x, Tensor w, Tensor target, float s, float m) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("aam_logits_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor target, float s, float m, Tensor grad) -> (Tensor, Tensor)");
  m.def("aam_ce_fwd(Tensor x, Tensor w, Tensor target, float s, float m, int chunk) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("aam_ce_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor target, float s, float m, Tensor lse, Tensor grad, int chunk) -> (Tensor, Tensor)");
  m.def("aam_ce_fused(Tensor x, Tensor w, Tensor target, float s, float m, float weight, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

// the host functions are device generic (ATen calls + the row kernels of the tensors' device): DEV unused
#define SSGAN_COSINE_LOGITS_HOST(m, DEV)                            \
  m.impl("cosine_softmax_fwd", &ssgan_fast::cosine_softmax_fwd);   \
  m.impl("cosine_softmax_bwd", &ssgan_fast::cosine_softmax_bwd);   \
  m.impl("clustering_loss_bwd", &ssgan_fast::clustering_loss_bwd); \
  m.impl("aam_logits_fwd", &ssgan_fast::aam_logits_fwd);           \
  m.impl("aam_logits_bwd", &ssgan_fast::aam_logits_bwd);           \
  m.impl("aam_ce_fwd", &ssgan_fast::aam_ce_fwd);                   \
  m.impl("aam_ce_bwd", &ssgan_fast::aam_ce_bwd);                   \
  m.impl("aam_ce_fused", &ssgan_fast::aam_ce_fused);
SSGAN_REGISTER_DEVICES(SSGAN_COSINE_LOGITS_HOST)

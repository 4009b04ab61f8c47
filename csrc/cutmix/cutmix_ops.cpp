// cutmix: CutMix and the mask embedding: the family's torch.library schema and its kernels' registration in ssgan_fast._C
// (ssgan_fast_C::<op>; ssgan_fast_emu in the CPU emulation build). The library itself is defined in
// csrc/common/module.cpp; each family adds its own ops here, so adding a family touches no shared list.
#include <torch/library.h>

#include "common/ops_ns.h"
#include "cutmix/cutmix.h"

SSGAN_LIBRARY_FRAGMENT(m) {
  m.def("cutmix_forward(Tensor xa, Tensor xb, Tensor boxes) -> (Tensor, Tensor)");
  m.def("cutmix_backward(Tensor grad, Tensor boxes) -> (Tensor, Tensor)");
  m.def("mask_embed_forward(Tensor feat, Tensor emb) -> Tensor");
  m.def("mask_embed_backward(Tensor grad, Tensor feat, Tensor emb) -> (Tensor, Tensor)");
}

#define SSGAN_CUTMIX_KERNELS(m, DEV)                                       \
  m.impl("cutmix_forward", &ssgan_fast::cutmix_forward_##DEV);             \
  m.impl("cutmix_backward", &ssgan_fast::cutmix_backward_##DEV);           \
  m.impl("mask_embed_forward", &ssgan_fast::mask_embed_forward_##DEV);     \
  m.impl("mask_embed_backward", &ssgan_fast::mask_embed_backward_##DEV);
SSGAN_REGISTER_DEVICES(SSGAN_CUTMIX_KERNELS)

// prototype: the prototype EMA update's row kernel: the family's torch.library schema and its kernels' registration in ssgan_fast._C
// (ssgan_fast_C::<op>; ssgan_fast_emu in the CPU emulation build). The library itself is defined in
// csrc/common/module.cpp; each family adds its own ops here, so adding a family touches no shared list.
#include <torch/library.h>

#include "common/ops_ns.h"
#include "prototype/prototype.h"

SSGAN_LIBRARY_FRAGMENT(m) {
  m.def("prototype_ema_rows(Tensor(a!) protos, Tensor sums, Tensor wsum, float momentum) -> ()");
}

#define SSGAN_PROTOTYPE_KERNELS(m, DEV) m.impl("prototype_ema_rows", &ssgan_fast::prototype_ema_rows_##DEV);
SSGAN_REGISTER_DEVICES(SSGAN_PROTOTYPE_KERNELS)

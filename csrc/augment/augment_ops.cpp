// augment: the CPU loader's shift / flip augmentation (CPU only): the family's torch.library schema and its kernels' registration in ssgan_fast._C
// (ssgan_fast_C::<op>; ssgan_fast_emu in the CPU emulation build). The library itself is defined in
// csrc/common/module.cpp; each family adds its own ops here, so adding a family touches no shared list.
#include <torch/library.h>

#include "common/ops_ns.h"
#include "augment/augment.h"

SSGAN_LIBRARY_FRAGMENT(m) {
  m.def("augment_shift(Tensor x, Tensor dy, Tensor dx, Tensor flip, int mode, float fill, float divisor, float shift, bool to_float) -> Tensor");
}

SSGAN_LIBRARY_IMPL(CPU, m) { m.impl("augment_shift", &ssgan_fast::augment_shift_cpu); }

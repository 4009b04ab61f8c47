// feature_stats: per-class moments for FID: the family's torch.library schema and its kernels' registration in ssgan_fast._C
// (ssgan_fast_C::<op>; ssgan_fast_emu in the CPU emulation build). The library itself is defined in
// csrc/common/module.cpp; each family adds its own ops here, so adding a family touches no shared list.
#include <torch/library.h>

#include "common/ops_ns.h"
#include "feature_stats/feature_stats.h"

SSGAN_LIBRARY_FRAGMENT(m) {
  m.def("feature_stats_moments(Tensor x, Tensor labels, Tensor shift, Tensor(a!) count, Tensor(b!) sum, Tensor(c!) xtx) -> ()");
}

#define SSGAN_FEATURE_STATS_KERNELS(m, DEV) \
  m.impl("feature_stats_moments", &ssgan_fast::feature_stats_moments_##DEV);
SSGAN_REGISTER_DEVICES(SSGAN_FEATURE_STATS_KERNELS)

// knn: k-th neighbour radii and radius counts (precision / recall, density / coverage): the family's torch.library schema and its kernels' registration in ssgan_fast._C
// (ssgan_fast_C::<op>; ssgan_fast_emu in the CPU emulation build). The library itself is defined in
// csrc/common/module.cpp; each family adds its own ops here, so adding a family touches no shared list.
#include <torch/library.h>

#include "common/ops_ns.h"
#include "knn/knn.h"

SSGAN_LIBRARY_FRAGMENT(m) {
  m.def("knn_smallest(Tensor x, Tensor? ref, int k) -> Tensor");
  m.def("knn_radius_count(Tensor a, Tensor b, Tensor ra2, Tensor rb2, bool inclusive) -> (Tensor, Tensor, Tensor)");
}

#define SSGAN_KNN_KERNELS(m, DEV)                                  \
  m.impl("knn_smallest", &ssgan_fast::knn_smallest_##DEV);         \
  m.impl("knn_radius_count", &ssgan_fast::knn_radius_count_##DEV);
SSGAN_REGISTER_DEVICES(SSGAN_KNN_KERNELS)

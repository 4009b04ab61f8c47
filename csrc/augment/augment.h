// The loader's augmentation kernel (CPU): csrc/cpu/augment.cpp.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>

namespace ssgan_fast {

// Loader augmentation (CPU): shift by (dy, dx) with reflect (mode 0) / constant fill (mode 1),
// optional mirror, then float(double(v) / divisor + shift) (to_float) or uint8. See csrc/cpu/augment.cpp.
at::Tensor augment_shift_cpu(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& dx, const at::Tensor& flip,
                             int64_t mode, double fill, double divisor, double shift, bool to_float);

}  // namespace ssgan_fast

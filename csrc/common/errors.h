// What a failed CUDA launch reports (SSGAN_CHECK_LAUNCH in cuda/common.cuh): csrc/errors.cpp.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace ssgan_fast {

std::string describe(const at::Tensor& t);
std::string launch_error_message(const std::string& op, const std::string& kernel,
                                 const std::vector<std::string>& names, const std::vector<at::Tensor>& tensors,
                                 const std::string& error);

}  // namespace ssgan_fast

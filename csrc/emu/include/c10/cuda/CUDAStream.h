// Emulation build: one stream, the host (csrc/emu/cuda_emu.h); launches are synchronous.
#pragma once
#include "../../cuda_runtime.h"

namespace c10 {
namespace cuda {
struct CUDAStream {
  operator cudaStream_t() const { return nullptr; }
};
inline CUDAStream getCurrentCUDAStream() { return {}; }
}  // namespace cuda
}  // namespace c10

// Emulation build: the device guard of a CPU tensor does nothing (csrc/emu/cuda_emu.h).
#pragma once
#include <c10/core/Device.h>

namespace c10 {
namespace cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
}  // namespace cuda
}  // namespace c10

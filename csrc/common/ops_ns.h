// The torch.library namespace the ops register in: ssgan_fast_C, or ssgan_fast_emu for the CPU
// emulation build of the CUDA kernels (csrc/emu/, SSGAN_OPS_NS=ssgan_fast_emu). The wrappers expand the
// namespace macro before torch's macros paste it into their names.
#pragma once
#include <torch/library.h>

#ifndef SSGAN_OPS_NS
#define SSGAN_OPS_NS ssgan_fast_C
#endif
#define SSGAN_LIBRARY_(ns, m) TORCH_LIBRARY(ns, m)
#define SSGAN_LIBRARY(m) SSGAN_LIBRARY_(SSGAN_OPS_NS, m)
#define SSGAN_LIBRARY_FRAGMENT_(ns, m) TORCH_LIBRARY_FRAGMENT(ns, m)
#define SSGAN_LIBRARY_FRAGMENT(m) SSGAN_LIBRARY_FRAGMENT_(SSGAN_OPS_NS, m)
#define SSGAN_LIBRARY_IMPL_(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)
#define SSGAN_LIBRARY_IMPL(key, m) SSGAN_LIBRARY_IMPL_(SSGAN_OPS_NS, key, m)

// SSGAN_REGISTER_DEVICES(BODY): each family's registration of its per-device implementations, where
// BODY(m, DEV) registers them with DEV = cpu (csrc/<family>/<family>_cpu.cpp) or cuda (<family>_cuda.cu).
// CPU tensors get the cpu kernels - or, in the CPU emulation build (csrc/emu/), the cuda kernels;
// CUDA tensors get the cuda kernels in builds WITH_CUDA.
#if defined(SSGAN_CUDA_EMU)
#define SSGAN_REGISTER_DEVICES(BODY) \
  SSGAN_LIBRARY_IMPL(CPU, m) { BODY(m, cuda) }
#elif defined(WITH_CUDA)
#define SSGAN_REGISTER_DEVICES(BODY) \
  SSGAN_LIBRARY_IMPL(CPU, m) { BODY(m, cpu) } \
  SSGAN_LIBRARY_IMPL(CUDA, m) { BODY(m, cuda) }
#else
#define SSGAN_REGISTER_DEVICES(BODY) \
  SSGAN_LIBRARY_IMPL(CPU, m) { BODY(m, cpu) }
#endif

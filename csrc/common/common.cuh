// Shared device helpers: launch checks and block reductions (the ArcFace margin: ../shared.h).
#pragma once
#include <cuda_runtime.h>

#include <initializer_list>
#include <utility>

#include <string>
#include <vector>

#include "common/errors.h"
#include "common/shared.h"

namespace ssgan_fast {

// After every kernel launch: a failed launch (bad configuration, no kernel image for this GPU, ...)
// raises an error naming the op, the kernel, its tensor arguments and the other backends.
struct NamedTensor {
  const char* name;
  const at::Tensor& t;
};
inline void check_launch(cudaError_t err, const char* op, const char* kernel, std::initializer_list<NamedTensor> args) {
  if (err == cudaSuccess) return;
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  for (const auto& a : args) {
    names.emplace_back(a.name);
    tensors.push_back(a.t);
  }
  TORCH_CHECK(false, launch_error_message(op, kernel, names, tensors, cudaGetErrorString(err)));
}
#define SSGAN_CHECK_LAUNCH(op, kernel, ...) ::ssgan_fast::check_launch(cudaGetLastError(), op, kernel, {__VA_ARGS__})

constexpr int kThreads = 256;

// One launch form for nvcc and the CPU emulation build (csrc/emu/cuda_emu.h, SSGAN_CUDA_EMU):
//   SSGAN_LAUNCH(grid, block, smem, stream, kernel<...>)(args...)  is  kernel<...><<<grid, block, smem, stream>>>(args...)
// SSGAN_DYNAMIC_SHARED(T, name): the launch's dynamic shared memory as T name[]; on_device(t): t is a tensor
// of the device the kernels run on (CUDA; the emulation's CPU).
#ifdef SSGAN_CUDA_EMU
#define SSGAN_LAUNCH(grid, block, smem, stream, ...) ::ssgan_fast::emu::launcher(grid, block, smem, __VA_ARGS__)
#define SSGAN_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::ssgan_fast::emu::dynamic_shared())
inline bool on_device(const at::Tensor& t) { return t.is_cpu(); }
#else
#define SSGAN_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define SSGAN_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
inline bool on_device(const at::Tensor& t) { return t.is_cuda(); }
#endif

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Block-wide reduction; every thread gets the result. `buf` holds 32 values.
template <bool kMax, typename T>
__device__ __forceinline__ T block_reduce(T v, T* buf) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // buf may still be read by a previous reduction
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < nwarps ? buf[lane] : (kMax ? -INFINITY : T(0));
  return kMax ? warp_max(v) : warp_sum(v);
}

}  // namespace ssgan_fast

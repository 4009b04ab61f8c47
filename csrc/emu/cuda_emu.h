// CPU emulation of the CUDA execution model, for running csrc/cuda/*.cu's kernel bodies unchanged on the
// host (tests only: tools/cuda_emu.py builds ssgan_fast._C_emu; the shipped _C never includes this).
//
// - A launch runs its blocks one after another; the threads of a block are real OS threads (one per
//   CUDA thread), so a missing __syncthreads is a real data race (ThreadSanitizer sees it).
// - __syncthreads(): a barrier of the block's threads that are still running (a thread that returned
//   from the kernel no longer counts, as on the GPU where exited threads do not hold a barrier).
// - __shared__: function-local static storage, one instance per kernel instantiation, shared by the
//   block's threads (blocks do not overlap in time, so one instance serves every block). Dynamic
//   shared memory: SSGAN_DYNAMIC_SHARED (common.cuh) -> the launch's buffer of `smem` bytes.
// - __shfl_xor_sync: a per-warp exchange (each lane writes its slot, the warp's barrier, each lane reads
//   its partner's slot, the barrier again).
// - atomicAdd: std::atomic_ref.
// - __launch_bounds__, __device__, __global__ are no-ops; __forceinline__ is inline.
// Launches go through SSGAN_LAUNCH (common.cuh): nvcc sees kernel<<<grid, block, smem, stream>>>(...).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <type_traits>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9, cudaErrorLaunchFailure = 719 };
using cudaStream_t = void*;

namespace ssgan_fast {
namespace emu {

// A barrier of `expected` threads whose count drops as threads leave (drop()); `done` runs in the last
// arriving thread before the others are released.
class Barrier {
 public:
  void reset(int n) {
    std::lock_guard<std::mutex> g(mu_);
    expected_ = n;
    arrived_ = 0;
  }
  void wait(const std::function<void()>& done = {}) {
    std::unique_lock<std::mutex> lk(mu_);
    const uint64_t gen = gen_;
    if (++arrived_ >= expected_) {
      if (done) done();
      release();
      return;
    }
    cv_.wait(lk, [&] { return gen_ != gen; });
  }
  void drop() {
    std::lock_guard<std::mutex> g(mu_);
    --expected_;
    if (arrived_ > 0 && arrived_ >= expected_) release();
  }

 private:
  void release() {
    arrived_ = 0;
    ++gen_;
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  int expected_ = 0, arrived_ = 0;
  uint64_t gen_ = 0;
};

struct Warp {
  Barrier bar;
  std::array<uint64_t, 32> slots{};
};

// The launch in progress (one at a time, process-wide).
struct Launch {
  std::vector<uint64_t> dynamic;  // dynamic shared memory, 8-byte aligned
  Barrier block_bar;
  std::vector<Warp> warps;
};

inline thread_local dim3 thread_idx, block_idx;
inline dim3 grid_dim, block_dim;
inline Launch* current = nullptr;
inline cudaError_t last_error = cudaSuccess;

void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);  // runtime.cpp
void syncthreads(const char* file, int line);  // SSGAN_EMU_SKIP_SYNC=<file suffix>:<line> skips one (race-check tests)

inline int linear_thread() { return static_cast<int>(thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z)); }

template <typename T>
T shfl_xor(T v, int lane_mask) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>, "shuffle of a register value");
  const int t = linear_thread(), lane = t & 31;
  Warp& w = current->warps[t >> 5];
  std::memcpy(&w.slots[lane], &v, sizeof(T));
  w.bar.wait();
  T r;
  std::memcpy(&r, &w.slots[(lane ^ lane_mask) & 31], sizeof(T));
  w.bar.wait();  // nobody overwrites a slot before its reader has read it
  return r;
}

inline void* dynamic_shared() { return current->dynamic.data(); }

template <typename Kernel>
struct Launcher {
  dim3 grid, block;
  size_t smem;
  Kernel kernel;
  template <typename... Args>
  void operator()(Args... args) const {
    run(grid, block, smem, [&] { kernel(args...); });
  }
};
template <typename Kernel>
Launcher<Kernel> launcher(dim3 grid, dim3 block, size_t smem, Kernel k) {
  return {grid, block, smem, k};
}

}  // namespace emu
}  // namespace ssgan_fast

#define threadIdx (::ssgan_fast::emu::thread_idx)
#define blockIdx (::ssgan_fast::emu::block_idx)
#define blockDim (::ssgan_fast::emu::block_dim)
#define gridDim (::ssgan_fast::emu::grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() ::ssgan_fast::emu::syncthreads(__FILE__, __LINE__)
#define __shfl_xor_sync(mask, v, o) ::ssgan_fast::emu::shfl_xor(v, o)

template <typename T>
inline T atomicAdd(T* address, T v) {
  return std::atomic_ref<T>(*address).fetch_add(v);
}

// CUDA's device max / min of mixed integer widths and floats, and the float overloads of the maths
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
  using T = std::common_type_t<A, B>;
  return static_cast<T>(a) < static_cast<T>(b) ? static_cast<T>(b) : static_cast<T>(a);
}
template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
  using T = std::common_type_t<A, B>;
  return static_cast<T>(b) < static_cast<T>(a) ? static_cast<T>(b) : static_cast<T>(a);
}
using std::exp;
using std::log;

inline cudaError_t cudaGetLastError() {
  const cudaError_t e = ::ssgan_fast::emu::last_error;
  ::ssgan_fast::emu::last_error = cudaSuccess;
  return e;
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulated launch)";
    default: return "unspecified launch failure (emulated launch)";
  }
}

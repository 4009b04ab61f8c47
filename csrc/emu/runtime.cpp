// The emulated launch (cuda_emu.h): blocks in order, the block's threads as OS threads.
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "cuda_emu.h"

namespace ssgan_fast {
namespace emu {

namespace {
std::mutex launch_mutex;  // one launch at a time (the launch state is process-wide)

// SSGAN_EMU_SKIP_SYNC=<file suffix>:<line>: the __syncthreads at that place is skipped (a planted race)
struct Skip {
  std::string file;
  int line = -1;
};
const Skip& skip() {
  static const Skip s = [] {
    Skip k;
    const char* env = std::getenv("SSGAN_EMU_SKIP_SYNC");
    const std::string v(env ? env : "");
    const auto colon = v.rfind(':');
    if (colon != std::string::npos) {
      k.file = v.substr(0, colon);
      k.line = std::atoi(v.c_str() + colon + 1);
    }
    return k;
  }();
  return s;
}
}  // namespace

void syncthreads(const char* file, int line) {
  const Skip& k = skip();
  if (line == k.line) {
    const size_t n = std::strlen(file), m = k.file.size();
    if (m > 0 && n >= m && k.file.compare(0, m, file + n - m) == 0) return;  // the planted missing barrier
  }
  current->block_bar.wait();
}

void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  const int64_t nblocks = int64_t(grid.x) * grid.y * grid.z;
  const int nthreads = static_cast<int>(block.x * block.y * block.z);
  if (nthreads < 1 || nthreads > 1024 || block.z > 64 || grid.y > 65535 || grid.z > 65535 || nblocks < 1) {
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  std::lock_guard<std::mutex> g(launch_mutex);
  Launch L;
  L.dynamic.assign((smem + 7) / 8, 0);
  L.warps = std::vector<Warp>((nthreads + 31) / 32);
  grid_dim = grid;
  block_dim = block;
  current = &L;
  auto reset = [&] {  // every thread of the block counts again
    L.block_bar.reset(nthreads);
    for (size_t w = 0; w < L.warps.size(); ++w) L.warps[w].bar.reset(std::min(32, nthreads - int(w) * 32));
  };
  reset();
  Barrier end;  // all threads, after each block: the next block starts from a clean barrier
  end.reset(nthreads);
  auto thread_main = [&](int t) {
    thread_idx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
    for (int64_t b = 0; b < nblocks; ++b) {
      block_idx = dim3(unsigned(b % grid.x), unsigned((b / grid.x) % grid.y), unsigned(b / (int64_t(grid.x) * grid.y)));
      body();
      L.block_bar.drop();  // this thread has left the kernel
      L.warps[t >> 5].bar.drop();
      end.wait(reset);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(nthreads);
  for (int t = 0; t < nthreads; ++t) threads.emplace_back(thread_main, t);
  for (auto& th : threads) th.join();
  current = nullptr;
}

}  // namespace emu
}  // namespace ssgan_fast

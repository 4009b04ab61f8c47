// C++ CPU kernel of op family 4: per-class moments of shifted features (FID / Intra-FID / cFID).
//
// One pass over the features: a counting sort of the labels, then per (class, column block) task
// the rows of that class are gathered, shifted by the class's shift vector, written to a
// class-sorted buffer and summed in float64.  The second moments are one BLAS GEMM Y_c^T Y_c per
// class and chunk of <= FEATURE_STATS_CHUNK rows, in the dtype of x (float32 products for float32 features),
// added to the float64 accumulator: the shift keeps the values centred (no catastrophic
// cancellation in cov = E[yy^T] - E[y]E[y]^T) and the chunking bounds float32 accumulation error.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <vector>

#include "feature_stats/feature_stats.h"

namespace ssgan_fast {
namespace {
constexpr int64_t kColBlock = 256;
constexpr int64_t kBlock = 256;  // column block of the symmetric (upper block triangle) products
}  // namespace

void feature_stats_moments_cpu(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift, const at::Tensor& count,
                       const at::Tensor& sum, const at::Tensor& xtx) {
  check_feature_stats_moments(x, labels, shift, count, sum, xtx);
  TORCH_CHECK(x.device().is_cpu(), "feature_stats_moments (cpu): tensors must be on the CPU");
  const int64_t N = x.size(0), D = x.size(1), C = count.numel();
  if (N == 0 || D == 0) return;
  // counting sort of the rows by label
  const int64_t* lab = labels.const_data_ptr<int64_t>();
  std::vector<int64_t> start(C + 1, 0), perm(N);
  for (int64_t i = 0; i < N; ++i) {
    TORCH_CHECK(lab[i] >= 0 && lab[i] < C, "feature_stats_moments: label ", lab[i], " out of range [0, ", C, ")");
    ++start[lab[i] + 1];
  }
  for (int64_t c = 0; c < C; ++c) start[c + 1] += start[c];
  {
    std::vector<int64_t> pos(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < N; ++i) perm[pos[lab[i]]++] = i;
  }
  std::vector<int64_t> present;
  for (int64_t c = 0; c < C; ++c)
    if (start[c + 1] > start[c]) present.push_back(c);
  at::Tensor y = at::empty({N, D}, x.options());
  double* ps = sum.data_ptr<double>();
  const int64_t nblk = (D + kColBlock - 1) / kColBlock;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "feature_stats_moments_cpu", [&] {
    const scalar_t* px = x.const_data_ptr<scalar_t>();
    const scalar_t* sh = shift.const_data_ptr<scalar_t>();
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, static_cast<int64_t>(present.size()) * nblk, 1, [&](int64_t t0, int64_t t1) {
      std::vector<double> acc(kColBlock);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t c = present[t / nblk], j0 = (t % nblk) * kColBlock, j1 = std::min(D, j0 + kColBlock);
        std::fill(acc.begin(), acc.end(), 0.0);
        const scalar_t* s = sh + c * D;
        for (int64_t r = start[c]; r < start[c + 1]; ++r) {
          const scalar_t* src = px + perm[r] * D;
          scalar_t* dst = py + r * D;
          for (int64_t j = j0; j < j1; ++j) {
            const scalar_t v = src[j] - s[j];
            dst[j] = v;
            acc[j - j0] += static_cast<double>(v);
          }
        }
        for (int64_t j = j0; j < j1; ++j) ps[c * D + j] += acc[j - j0];
      }
    });
  });
  double* pc = count.data_ptr<double>();
  // Upper block triangle only (blocks bi <= bj of kBlock columns): 36 of 64 block products at
  // D = 2048. The strictly lower blocks of xtx are never written; readers use triu(xtx) (see
  // FeatureStats._xtx). Each block product is a float32 BLAS GEMM into an L2-sized scratch, then
  // added to the float64 accumulator block.
  const int64_t nb = (D + kBlock - 1) / kBlock;
  at::Tensor tmp = at::empty({std::min(kBlock, D), std::min(kBlock, D)}, x.options());
  for (int64_t c : present) {
    pc[c] += static_cast<double>(start[c + 1] - start[c]);
    at::Tensor acc = xtx.select(0, c);
    for (int64_t r0 = start[c]; r0 < start[c + 1]; r0 += FEATURE_STATS_CHUNK) {
      const at::Tensor seg = y.narrow(0, r0, std::min(FEATURE_STATS_CHUNK, start[c + 1] - r0));
      for (int64_t bi = 0; bi < nb; ++bi) {
        const int64_t i0 = bi * kBlock, wi = std::min(kBlock, D - i0);
        const at::Tensor a = seg.narrow(1, i0, wi).t();
        for (int64_t bj = bi; bj < nb; ++bj) {
          const int64_t j0 = bj * kBlock, wj = std::min(kBlock, D - j0);
          at::Tensor t = tmp.narrow(0, 0, wi).narrow(1, 0, wj);
          at::mm_out(t, a, seg.narrow(1, j0, wj));
          acc.narrow(0, i0, wi).narrow(1, j0, wj).add_(t);
        }
      }
    }
  }
}

}  // namespace ssgan_fast

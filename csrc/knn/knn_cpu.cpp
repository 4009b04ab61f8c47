// C++ CPU kernels of op family knn: k-th neighbour radii and radius counts (see csrc/knn.h).
//
// Tiles of kTile x kTile pairs: one BLAS GEMM a_tile . b_tile^T (at::mm, multithreaded by ATen's
// BLAS) into a scratch buffer, then a fused epilogue (at::parallel_for) that forms the squared
// distances ||a||^2 + ||b||^2 - 2 a.b (clamped at 0) and consumes them at once:
//   knn_smallest: a sorted list of the k smallest per row (insertion; the common case is one compare).
//            A self search (ref absent) computes only the tile pairs (I, J) with J >= I - half the
//            GEMM work - and updates the rows of both I (row pass) and J (column pass).
//   knn_radius_count: the row pass counts the b balls holding each a_i and keeps min_j d_ij, writing
//            d back into the buffer; a column pass (each thread owns a column chunk) counts the a
//            balls holding each b_j. No [M, N] matrix exists at any time: memory is the GEMM
//            buffer (kTile^2 values) plus O(M k + N).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "knn/knn.h"

namespace ssgan_fast {
namespace {

constexpr int64_t kTile = 1024;  // rows = columns of a tile pair
constexpr int64_t kGrain = 16;   // rows (or columns) per parallel_for task, at least

template <typename T>
inline T dist(T na, T nb, T g) {
  const T d = na + nb - T(2) * g;
  return d > T(0) ? d : T(0);
}

// a contiguous [rows, cols] view of the front of a flat scratch buffer
inline at::Tensor tile_view(const at::Tensor& buf, int64_t rows, int64_t cols) {
  return buf.narrow(0, 0, rows * cols).view({rows, cols});
}

}  // namespace

at::Tensor knn_smallest_cpu(const at::Tensor& x, const std::optional<at::Tensor>& ref, int64_t k) {
  check_knn_smallest(x, ref, k);
  TORCH_CHECK(x.device().is_cpu(), "knn_smallest (cpu): tensors must be on the CPU");
  const bool self = !ref.has_value();
  const at::Tensor& r = self ? x : *ref;
  const int64_t M = x.size(0), N = r.size(0);
  const at::Tensor nx = at::sum(at::mul(x, x), {1});
  const at::Tensor nr = self ? nx : at::sum(at::mul(r, r), {1});
  at::Tensor out = at::empty({M, k}, x.options());
  at::Tensor buf = at::empty({std::min(kTile, M) * std::min(kTile, N)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "knn_smallest_cpu", [&] {
    std::vector<scalar_t> best(M * k, std::numeric_limits<scalar_t>::infinity());
    const scalar_t* pnx = nx.const_data_ptr<scalar_t>();
    const scalar_t* pnr = nr.const_data_ptr<scalar_t>();
    for (int64_t i0 = 0; i0 < M; i0 += kTile) {
      const int64_t bi = std::min(kTile, M - i0);
      for (int64_t j0 = self ? i0 : 0; j0 < N; j0 += kTile) {
        const int64_t bj = std::min(kTile, N - j0);
        at::Tensor g = tile_view(buf, bi, bj);
        at::mm_out(g, x.narrow(0, i0, bi), r.narrow(0, j0, bj).t());
        const scalar_t* pg = g.const_data_ptr<scalar_t>();
        at::parallel_for(0, bi, kGrain, [&](int64_t a0, int64_t a1) {  // rows of I
          for (int64_t i = a0; i < a1; ++i) {
            scalar_t* b = best.data() + (i0 + i) * k;
            const scalar_t ni = pnx[i0 + i];
            const scalar_t* gi = pg + i * bj;
            for (int64_t j = 0; j < bj; ++j) {
              if (self && i0 + i == j0 + j) continue;
              knn_push(b, k, dist(ni, pnr[j0 + j], gi[j]));
            }
          }
        });
        if (self && j0 != i0) {  // the rows of J see the columns of I (the skipped tile pair (J, I))
          at::parallel_for(0, bj, kGrain, [&](int64_t c0, int64_t c1) {
            for (int64_t i = 0; i < bi; ++i) {
              const scalar_t ni = pnx[i0 + i];
              const scalar_t* gi = pg + i * bj;
              for (int64_t j = c0; j < c1; ++j) knn_push(best.data() + (j0 + j) * k, k, dist(ni, pnr[j0 + j], gi[j]));
            }
          });
        }
      }
    }
    std::copy(best.begin(), best.end(), out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> knn_radius_count_cpu(const at::Tensor& a, const at::Tensor& b,
                                                                    const at::Tensor& ra2, const at::Tensor& rb2,
                                                                    bool inclusive) {
  check_knn_radius_count(a, b, ra2, rb2);
  TORCH_CHECK(a.device().is_cpu(), "knn_radius_count (cpu): tensors must be on the CPU");
  const int64_t M = a.size(0), N = b.size(0);
  const at::Tensor na = at::sum(at::mul(a, a), {1});
  const at::Tensor nb = at::sum(at::mul(b, b), {1});
  at::Tensor cnt_a = at::zeros({M}, a.options().dtype(at::kLong));
  at::Tensor cnt_b = at::zeros({N}, a.options().dtype(at::kLong));
  at::Tensor nn_a = at::full({M}, std::numeric_limits<double>::infinity(), a.options());
  at::Tensor buf = at::empty({std::min(kTile, M) * std::min(kTile, N)}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "knn_radius_count_cpu", [&] {
    const scalar_t* pna = na.const_data_ptr<scalar_t>();
    const scalar_t* pnb = nb.const_data_ptr<scalar_t>();
    const scalar_t* pra = ra2.const_data_ptr<scalar_t>();
    const scalar_t* prb = rb2.const_data_ptr<scalar_t>();
    int64_t* pca = cnt_a.data_ptr<int64_t>();
    int64_t* pcb = cnt_b.data_ptr<int64_t>();
    scalar_t* pnn = nn_a.data_ptr<scalar_t>();
    for (int64_t i0 = 0; i0 < M; i0 += kTile) {
      const int64_t bi = std::min(kTile, M - i0);
      for (int64_t j0 = 0; j0 < N; j0 += kTile) {
        const int64_t bj = std::min(kTile, N - j0);
        at::Tensor g = tile_view(buf, bi, bj);
        at::mm_out(g, a.narrow(0, i0, bi), b.narrow(0, j0, bj).t());
        scalar_t* pg = g.data_ptr<scalar_t>();
        at::parallel_for(0, bi, kGrain, [&](int64_t a0, int64_t a1) {  // rows: cnt_a, nn_a; d kept in g
          for (int64_t i = a0; i < a1; ++i) {
            const scalar_t ni = pna[i0 + i];
            scalar_t* gi = pg + i * bj;
            const scalar_t* rb = prb + j0;
            int64_t c = 0;
            scalar_t mn = pnn[i0 + i];
            for (int64_t j = 0; j < bj; ++j) {
              const scalar_t d = dist(ni, pnb[j0 + j], gi[j]);
              gi[j] = d;
              c += inclusive ? (d <= rb[j]) : (d < rb[j]);
              mn = d < mn ? d : mn;
            }
            pca[i0 + i] += c;
            pnn[i0 + i] = mn;
          }
        });
        at::parallel_for(0, bj, kGrain, [&](int64_t c0, int64_t c1) {  // columns: cnt_b
          std::vector<int64_t> c(c1 - c0, 0);
          for (int64_t i = 0; i < bi; ++i) {
            const scalar_t ra = pra[i0 + i];
            const scalar_t* gi = pg + i * bj;
            if (inclusive) {
              for (int64_t j = c0; j < c1; ++j) c[j - c0] += gi[j] <= ra;
            } else {
              for (int64_t j = c0; j < c1; ++j) c[j - c0] += gi[j] < ra;
            }
          }
          for (int64_t j = c0; j < c1; ++j) pcb[j0 + j] += c[j - c0];
        });
      }
    }
  });
  return {cnt_a, cnt_b, nn_a};
}

}  // namespace ssgan_fast

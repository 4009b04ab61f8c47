// Op family "knn": k-nearest-neighbour radii and radius counts of feature sets (precision / recall,
// density / coverage). Kernels: cpu/knn.cpp, cuda/knn.cu; the contract: ssgan_fast/ops/knn.py.
// Squared Euclidean distances d_ij = ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j (clamped at 0), in tiles: no
// [M, N] matrix is ever allocated.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <tuple>

namespace ssgan_fast {

// the largest k the CUDA kernel keeps in its per-row list (ssgan_fast/ops/knn.py MAX_K)
constexpr int64_t KNN_MAX_K = 64;

// best[0..k) ascending: insert d if it is smaller than the largest (the common case is one compare).
// The k-list update of knn_smallest in both kernels (cpu/knn.cpp, cuda/knn.cu).
template <typename T, typename I>
C10_HOST_DEVICE inline void knn_push(T* best, I k, T d) {
  if (!(d < best[k - 1])) return;
  I p = k - 1;
  while (p > 0 && best[p - 1] > d) {
    best[p] = best[p - 1];
    --p;
  }
  best[p] = d;
}

// knn_smallest: [M, k] the k smallest d_ij, ascending, over the rows j of ref (ref absent: the rows j != i of x).
at::Tensor knn_smallest_cpu(const at::Tensor& x, const std::optional<at::Tensor>& ref, int64_t k);
// knn_radius_count: (cnt_a [M] int64 = #{j: d_ij < rb2_j}, cnt_b [N] int64 = #{i: d_ij < ra2_i},
// nn_a [M] = min_j d_ij); inclusive: <= instead of <.
std::tuple<at::Tensor, at::Tensor, at::Tensor> knn_radius_count_cpu(const at::Tensor& a, const at::Tensor& b,
                                                                    const at::Tensor& ra2, const at::Tensor& rb2,
                                                                    bool inclusive);
#ifdef WITH_CUDA
at::Tensor knn_smallest_cuda(const at::Tensor& x, const std::optional<at::Tensor>& ref, int64_t k);
std::tuple<at::Tensor, at::Tensor, at::Tensor> knn_radius_count_cuda(const at::Tensor& a, const at::Tensor& b,
                                                                     const at::Tensor& ra2, const at::Tensor& rb2,
                                                                     bool inclusive);
#endif

inline void check_knn_set(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble),
              op, ": ", name, " must be contiguous float32/float64 [rows, D]");
  TORCH_CHECK(t.size(0) > 0 && t.size(1) > 0, op, ": ", name, " must have rows and features");
}

inline void check_knn_smallest(const at::Tensor& x, const std::optional<at::Tensor>& ref, int64_t k) {
  check_knn_set(x, "knn_smallest", "x");
  int64_t n = x.size(0) - 1;
  if (ref.has_value()) {
    check_knn_set(*ref, "knn_smallest", "ref");
    TORCH_CHECK(ref->size(1) == x.size(1) && ref->scalar_type() == x.scalar_type() && ref->device() == x.device(),
                "knn_smallest: ref must have the D, dtype and device of x");
    n = ref->size(0);
  }
  TORCH_CHECK(k >= 1 && k <= n, "knn_smallest: k = ", k, " must be in 1..", n);
}

inline void check_knn_radius_count(const at::Tensor& a, const at::Tensor& b, const at::Tensor& ra2,
                                   const at::Tensor& rb2) {
  check_knn_set(a, "knn_radius_count", "a");
  check_knn_set(b, "knn_radius_count", "b");
  TORCH_CHECK(b.size(1) == a.size(1) && b.scalar_type() == a.scalar_type() && b.device() == a.device(),
              "knn_radius_count: b must have the D, dtype and device of a");
  TORCH_CHECK(ra2.dim() == 1 && ra2.size(0) == a.size(0) && ra2.is_contiguous() && ra2.scalar_type() == a.scalar_type() &&
                  ra2.device() == a.device(),
              "knn_radius_count: ra2 must be contiguous [M] with the dtype and device of a");
  TORCH_CHECK(rb2.dim() == 1 && rb2.size(0) == b.size(0) && rb2.is_contiguous() && rb2.scalar_type() == a.scalar_type() &&
                  rb2.device() == a.device(),
              "knn_radius_count: rb2 must be contiguous [N] with the dtype and device of a");
}

}  // namespace ssgan_fast

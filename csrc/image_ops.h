// Declarations and argument checks of op families 3 (CutMix + mask embedding, MED-GAN Eq. 1-2)
// and 4 (per-class feature moments for FID / Intra-FID).  Kernels: csrc/cpu/cutmix.cpp,
// csrc/cpu/feature_stats.cpp, csrc/cuda/cutmix.cu, csrc/cuda/feature_stats.cu.
//
// Images are 4-D [B, C, H, W] in NCHW-contiguous or channels_last memory; every kernel walks the
// memory in its storage order and produces outputs in the layout of the (first) input.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>

namespace ssgan_fast {

struct ImageGeom {
  int64_t B, C, H, W;
  bool cl;  // channels_last storage
};

inline bool is_channels_last(const at::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// The tensor in NCHW-contiguous or channels_last storage (channels_last kept when it already is).
inline at::Tensor image_storage(const at::Tensor& t, bool cl) {
  return t.contiguous(cl ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

inline ImageGeom image_geom(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D [B, C, H, W], got ", t.dim(), "-D");
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be floating point, got ", t.scalar_type());
  return ImageGeom{t.size(0), t.size(1), t.size(2), t.size(3), is_channels_last(t)};
}

// `t` must have the shape and dtype of `ref` (xb vs xa of cutmix, the gradient vs feat of mask_embed).
inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* tname, const char* rname) {
  TORCH_CHECK(t.sizes() == ref.sizes() && t.scalar_type() == ref.scalar_type(), op, ": ", tname,
              " must have the shape and dtype of ", rname);
}

// boxes: int32 contiguous [B, 4] = (y0, x0, y1, x1), 0 <= y0 <= y1 <= H, 0 <= x0 <= x1 <= W
// (the Python side checks the values; kernels clamp nothing).
inline void check_boxes(const at::Tensor& boxes, int64_t B, const at::Tensor& like, const char* op) {
  TORCH_CHECK(boxes.scalar_type() == at::kInt && boxes.is_contiguous() && boxes.dim() == 2 && boxes.size(0) == B &&
                  boxes.size(1) == 4,
              op, ": boxes must be int32 contiguous [B, 4]");
  TORCH_CHECK(boxes.device() == like.device(), op, ": boxes must be on the device of the images");
}

// emb: contiguous NCHW [B, Ce, h, w] with Ce in {1, C}, dtype of feat; resized to (H, W) by
// nearest neighbour: source row sy = floor(y * h / H), column sx = floor(x * w / W).
inline void check_mask_embed(const at::Tensor& feat, const at::Tensor& emb, const char* op) {
  TORCH_CHECK(emb.dim() == 4 && emb.is_contiguous(), op, ": emb must be contiguous 4-D [B, Ce, h, w]");
  TORCH_CHECK(emb.scalar_type() == feat.scalar_type(), op, ": emb must have the dtype of feat");
  TORCH_CHECK(emb.size(0) == feat.size(0) && (emb.size(1) == 1 || emb.size(1) == feat.size(1)), op,
              ": emb must be [B, 1 or C, h, w]");
  TORCH_CHECK(emb.size(2) > 0 && emb.size(3) > 0, op, ": emb has an empty spatial size");
  TORCH_CHECK(emb.device() == feat.device(), op, ": emb must be on the device of feat");
}

// Footprint of source index s (of n) in a destination axis of N: [ceil(s N / n), ceil((s + 1) N / n)).
C10_HOST_DEVICE inline int64_t footprint_begin(int64_t s, int64_t n, int64_t N) { return (s * N + n - 1) / n; }

// (mixed, mask) = cutmix(xa, xb, boxes); (ga, gb) = its backward for grad g.
std::tuple<at::Tensor, at::Tensor> cutmix_forward_cpu(const at::Tensor& xa, const at::Tensor& xb, const at::Tensor& boxes);
std::tuple<at::Tensor, at::Tensor> cutmix_backward_cpu(const at::Tensor& g, const at::Tensor& boxes);
at::Tensor mask_embed_forward_cpu(const at::Tensor& feat, const at::Tensor& emb);
// (dfeat, demb) in one pass over g and feat
std::tuple<at::Tensor, at::Tensor> mask_embed_backward_cpu(const at::Tensor& g, const at::Tensor& feat, const at::Tensor& emb);

// Per-class moments of shifted features, accumulated in place (float64 accumulators):
//   count[c] += n_c,  sum[c] += sum_{i in c} (x_i - shift_c),  xtx[c] += sum_{i in c} (x_i - shift_c)(x_i - shift_c)^T
// Only the upper triangle of xtx (j >= i) is defined after the call: kernels may skip the lower
// blocks of the symmetric product (the CPU one does) or mirror them (CUDA, Triton).
// x [N, D] float32/float64 (products in the dtype of x, i.e. float32 products for float32 features,
// accumulated in float64 once per call); labels int64 [N] in [0, C) (the caller checks); shift [C, D].
void class_moments_cpu(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift, const at::Tensor& count,
                       const at::Tensor& sum, const at::Tensor& xtx);

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> cutmix_forward_cuda(const at::Tensor& xa, const at::Tensor& xb, const at::Tensor& boxes);
std::tuple<at::Tensor, at::Tensor> cutmix_backward_cuda(const at::Tensor& g, const at::Tensor& boxes);
at::Tensor mask_embed_forward_cuda(const at::Tensor& feat, const at::Tensor& emb);
std::tuple<at::Tensor, at::Tensor> mask_embed_backward_cuda(const at::Tensor& g, const at::Tensor& feat, const at::Tensor& emb);
void class_moments_cuda(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift, const at::Tensor& count,
                        const at::Tensor& sum, const at::Tensor& xtx);
#endif

// Loader augmentation (CPU): shift by (dy, dx) with reflect (mode 0) / constant fill (mode 1),
// optional mirror, then float(double(v) / divisor + shift) (to_float) or uint8. See csrc/cpu/augment.cpp.
at::Tensor augment_shift_cpu(const at::Tensor& x, const at::Tensor& dy, const at::Tensor& dx, const at::Tensor& flip,
                             int64_t mode, double fill, double divisor, double shift, bool to_float);

inline void check_class_moments(const at::Tensor& x, const at::Tensor& labels, const at::Tensor& shift,
                                const at::Tensor& count, const at::Tensor& sum, const at::Tensor& xtx) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              "class_moments: x must be contiguous float32/float64 [N, D]");
  const int64_t N = x.size(0), D = x.size(1), C = count.numel();
  TORCH_CHECK(labels.scalar_type() == at::kLong && labels.is_contiguous() && labels.numel() == N,
              "class_moments: labels must be int64 contiguous [N]");
  TORCH_CHECK(shift.scalar_type() == x.scalar_type() && shift.is_contiguous() && shift.dim() == 2 && shift.size(0) == C &&
                  shift.size(1) == D,
              "class_moments: shift must be contiguous [C, D] with the dtype of x");
  TORCH_CHECK(count.scalar_type() == at::kDouble && count.is_contiguous() && count.dim() == 1,
              "class_moments: count must be float64 contiguous [C]");
  TORCH_CHECK(sum.scalar_type() == at::kDouble && sum.is_contiguous() && sum.dim() == 2 && sum.size(0) == C && sum.size(1) == D,
              "class_moments: sum must be float64 contiguous [C, D]");
  TORCH_CHECK(xtx.scalar_type() == at::kDouble && xtx.is_contiguous() && xtx.dim() == 3 && xtx.size(0) == C &&
                  xtx.size(1) == D && xtx.size(2) == D,
              "class_moments: xtx must be float64 contiguous [C, D, D]");
  for (const at::Tensor* t : {&labels, &shift, &count, &sum, &xtx}) {
    TORCH_CHECK(t->device() == x.device(), "class_moments: all tensors must be on the device of x");
  }
}

}  // namespace ssgan_fast

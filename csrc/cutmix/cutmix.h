// Op family "cutmix": CutMix + mask embedding (MED-GAN Eq. 1-2). Kernels: cpu/cutmix.cpp, cuda/cutmix.cu.
#pragma once
#include "common/image.h"
#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <tuple>

namespace ssgan_fast {

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

#ifdef WITH_CUDA
std::tuple<at::Tensor, at::Tensor> cutmix_forward_cuda(const at::Tensor& xa, const at::Tensor& xb, const at::Tensor& boxes);
std::tuple<at::Tensor, at::Tensor> cutmix_backward_cuda(const at::Tensor& g, const at::Tensor& boxes);
at::Tensor mask_embed_forward_cuda(const at::Tensor& feat, const at::Tensor& emb);
std::tuple<at::Tensor, at::Tensor> mask_embed_backward_cuda(const at::Tensor& g, const at::Tensor& feat, const at::Tensor& emb);
#endif

}  // namespace ssgan_fast

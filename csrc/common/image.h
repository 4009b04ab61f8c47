// Image geometry shared by the image kernels (cutmix, augment): 4-D [B, C, H, W] in NCHW-contiguous or
// channels_last memory; every kernel walks the memory in its storage order and produces outputs in
// the layout of the (first) input.
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

}  // namespace ssgan_fast

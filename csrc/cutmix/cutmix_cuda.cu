// CUDA kernels of op family 3 (MED-GAN Eq. 1-2); see csrc/cpu/cutmix.cpp for the contract.
// Element-wise kernels walk the storage order (NCHW or channels_last) so loads and stores are
// coalesced in both layouts.  The mask-embedding backward runs one block per source row of emb:
// the block's threads walk that row's footprint in feat in storage order, write dfeat and add
// g * feat into a shared-memory bin per source column (shared atomics), then write demb.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cutmix/cutmix.h"
#include "common/common.cuh"

namespace ssgan_fast {
namespace {

struct Pix {
  int64_t n, c, y, x;
};
template <bool CL>
__device__ __forceinline__ Pix decode(int64_t i, int64_t C, int64_t H, int64_t W) {
  Pix p;
  if (CL) {
    p.c = i % C;
    p.x = (i / C) % W;
    p.y = (i / (C * W)) % H;
    p.n = i / (C * W * H);
  } else {
    p.x = i % W;
    p.y = (i / W) % H;
    p.c = (i / (W * H)) % C;
    p.n = i / (W * H * C);
  }
  return p;
}

__device__ __forceinline__ bool in_box(const int32_t* __restrict__ boxes, const Pix& p) {
  const int32_t* b = boxes + 4 * p.n;
  return p.y >= b[0] && p.y < b[2] && p.x >= b[1] && p.x < b[3];
}

// mode 0: out0 = box ? a : b, mask written where c == 0.  mode 1: out0 = box ? a : 0, out1 = box ? 0 : a.
template <typename T, bool CL, int MODE>
__global__ void cutmix_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out0, T* __restrict__ out1,
                              T* __restrict__ mask, const int32_t* __restrict__ boxes, int64_t n, int64_t C, int64_t H,
                              int64_t W) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const Pix p = decode<CL>(i, C, H, W);
    const bool inside = in_box(boxes, p);
    if (MODE == 0) {
      out0[i] = inside ? a[i] : b[i];
      if (p.c == 0) mask[(p.n * H + p.y) * W + p.x] = T(inside ? 1.f : 0.f);
    } else {
      const T v = a[i];
      out0[i] = inside ? v : T(0.f);
      out1[i] = inside ? T(0.f) : v;
    }
  }
}

template <typename T, bool CL>
__global__ void mask_embed_fwd_kernel(const T* __restrict__ f, const T* __restrict__ e, T* __restrict__ out, int64_t n,
                                      int64_t C, int64_t H, int64_t W, int64_t Ce, int64_t h, int64_t w) {
  using acc_t = at::opmath_type<T>;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const Pix p = decode<CL>(i, C, H, W);
    const int64_t ei = ((p.n * Ce + (Ce == 1 ? 0 : p.c)) * h + p.y * h / H) * w + p.x * w / W;
    out[i] = static_cast<T>(acc_t(f[i]) * (acc_t(1) + acc_t(e[ei])));
  }
}

// one block per source row er = (n, ce, sy) of emb
template <typename T, bool CL>
__global__ void mask_embed_bwd_kernel(const T* __restrict__ g, const T* __restrict__ f, const T* __restrict__ e,
                                      T* __restrict__ df, T* __restrict__ de, int64_t C, int64_t H, int64_t W, int64_t Ce,
                                      int64_t h, int64_t w) {
  using acc_t = at::opmath_type<T>;
  SSGAN_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* bins = reinterpret_cast<acc_t*>(smem_raw);
  const int64_t er = blockIdx.x;
  const int64_t s = er % h, ce = (er / h) % Ce, n = er / (h * Ce);
  const int64_t Y0 = footprint_begin(s, h, H), Y1 = min(H, footprint_begin(s + 1, h, H));
  const int64_t nc = Ce == 1 ? C : 1, c_lo = Ce == 1 ? 0 : ce;
  for (int64_t j = threadIdx.x; j < w; j += blockDim.x) bins[j] = acc_t(0);
  __syncthreads();
  const T* erow = e + er * w;
  const int64_t total = nc * (Y1 - Y0) * W;
  for (int64_t k = threadIdx.x; k < total; k += blockDim.x) {
    int64_t c, y, x, off;
    if (CL) {  // order (y, x, c): c fastest
      c = c_lo + k % nc;
      x = (k / nc) % W;
      y = Y0 + k / (nc * W);
      off = ((n * H + y) * W + x) * C + c;
    } else {  // order (c, y, x): x fastest
      x = k % W;
      y = Y0 + (k / W) % (Y1 - Y0);
      c = c_lo + k / (W * (Y1 - Y0));
      off = ((n * C + c) * H + y) * W + x;
    }
    const int64_t sx = x * w / W;
    const acc_t gv = acc_t(g[off]);
    df[off] = static_cast<T>(gv * (acc_t(1) + acc_t(erow[sx])));
    atomicAdd(&bins[sx], gv * acc_t(f[off]));
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < w; j += blockDim.x) de[er * w + j] = static_cast<T>(bins[j]);
}

int grid_for(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535 * 8)); }

}  // namespace

std::tuple<at::Tensor, at::Tensor> cutmix_forward_cuda(const at::Tensor& xa_, const at::Tensor& xb_, const at::Tensor& boxes) {
  const ImageGeom g = image_geom(xa_, "cutmix", "xa");
  check_like(xb_, xa_, "cutmix", "xb", "xa");
  check_boxes(boxes, g.B, xa_, "cutmix");
  c10::cuda::CUDAGuard guard(xa_.device());
  const at::Tensor xa = image_storage(xa_, g.cl), xb = image_storage(xb_, g.cl);
  at::Tensor out = at::empty_like(xa);
  at::Tensor mask = at::empty({g.B, 1, g.H, g.W}, xa.options());
  const int64_t n = xa.numel();
  if (n == 0) return {out, mask.zero_()};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, xa.scalar_type(), "cutmix_forward_cuda", [&] {
    auto k = g.cl ? cutmix_kernel<scalar_t, true, 0> : cutmix_kernel<scalar_t, false, 0>;
    SSGAN_LAUNCH(grid_for(n), kThreads, 0, stream, k)(xa.const_data_ptr<scalar_t>(), xb.const_data_ptr<scalar_t>(),
                                            out.data_ptr<scalar_t>(), nullptr, mask.data_ptr<scalar_t>(),
                                            boxes.const_data_ptr<int32_t>(), n, g.C, g.H, g.W);
  });
  SSGAN_CHECK_LAUNCH("cutmix", "cutmix_kernel (forward)", {"xa", xa}, {"xb", xb}, {"boxes", boxes});
  return {out, mask};
}

std::tuple<at::Tensor, at::Tensor> cutmix_backward_cuda(const at::Tensor& g_, const at::Tensor& boxes) {
  const ImageGeom g = image_geom(g_, "cutmix_backward", "grad");
  check_boxes(boxes, g.B, g_, "cutmix_backward");
  c10::cuda::CUDAGuard guard(g_.device());
  const at::Tensor gr = image_storage(g_, g.cl);
  at::Tensor ga = at::empty_like(gr), gb = at::empty_like(gr);
  const int64_t n = gr.numel();
  if (n == 0) return {ga, gb};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, gr.scalar_type(), "cutmix_backward_cuda", [&] {
    auto k = g.cl ? cutmix_kernel<scalar_t, true, 1> : cutmix_kernel<scalar_t, false, 1>;
    SSGAN_LAUNCH(grid_for(n), kThreads, 0, stream, k)(gr.const_data_ptr<scalar_t>(), nullptr, ga.data_ptr<scalar_t>(),
                                            gb.data_ptr<scalar_t>(), nullptr, boxes.const_data_ptr<int32_t>(), n, g.C,
                                            g.H, g.W);
  });
  SSGAN_CHECK_LAUNCH("cutmix (backward)", "cutmix_kernel (backward)", {"grad", gr}, {"boxes", boxes});
  return {ga, gb};
}

at::Tensor mask_embed_forward_cuda(const at::Tensor& feat_, const at::Tensor& emb) {
  const ImageGeom g = image_geom(feat_, "mask_embed", "feat");
  check_mask_embed(feat_, emb, "mask_embed");
  c10::cuda::CUDAGuard guard(feat_.device());
  const at::Tensor feat = image_storage(feat_, g.cl);
  at::Tensor out = at::empty_like(feat);
  const int64_t n = feat.numel();
  if (n == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "mask_embed_forward_cuda", [&] {
    auto k = g.cl ? mask_embed_fwd_kernel<scalar_t, true> : mask_embed_fwd_kernel<scalar_t, false>;
    SSGAN_LAUNCH(grid_for(n), kThreads, 0, stream, k)(feat.const_data_ptr<scalar_t>(), emb.const_data_ptr<scalar_t>(),
                                            out.data_ptr<scalar_t>(), n, g.C, g.H, g.W, emb.size(1), emb.size(2),
                                            emb.size(3));
  });
  SSGAN_CHECK_LAUNCH("mask_embed", "mask_embed_fwd_kernel", {"feat", feat}, {"emb", emb});
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_embed_backward_cuda(const at::Tensor& g_, const at::Tensor& feat_, const at::Tensor& emb) {
  const ImageGeom g = image_geom(feat_, "mask_embed_backward", "feat");
  check_mask_embed(feat_, emb, "mask_embed_backward");
  check_like(g_, feat_, "mask_embed_backward", "grad", "feat");
  c10::cuda::CUDAGuard guard(feat_.device());
  const at::Tensor feat = image_storage(feat_, g.cl), gr = image_storage(g_, g.cl);
  at::Tensor dfeat = at::empty_like(feat), demb = at::empty_like(emb);
  const int64_t rows = emb.size(0) * emb.size(1) * emb.size(2), w = emb.size(3);
  if (rows == 0) return {dfeat, demb};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "mask_embed_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const size_t smem = static_cast<size_t>(w) * sizeof(acc_t);
    TORCH_CHECK(smem <= 48 * 1024, "mask_embed_backward (cuda): emb width ", w, " is too large for the shared-memory bins");
    auto k = g.cl ? mask_embed_bwd_kernel<scalar_t, true> : mask_embed_bwd_kernel<scalar_t, false>;
    SSGAN_LAUNCH(static_cast<unsigned>(rows), kThreads, smem, stream, k)(gr.const_data_ptr<scalar_t>(), feat.const_data_ptr<scalar_t>(),
                                                               emb.const_data_ptr<scalar_t>(), dfeat.data_ptr<scalar_t>(),
                                                               demb.data_ptr<scalar_t>(), g.C, g.H, g.W, emb.size(1),
                                                               emb.size(2), w);
  });
  SSGAN_CHECK_LAUNCH("mask_embed (backward)", "mask_embed_bwd_kernel", {"grad", gr}, {"feat", feat}, {"emb", emb});
  return {dfeat, demb};
}

}  // namespace ssgan_fast

// C++ CPU kernels of op family 3: CutMix (MED-GAN Eq. 1) and mask embedding (MED-GAN Eq. 2).
//
// cutmix: mixed = m * xa + (1 - m) * xb with m = 1 inside the box (y0, x0, y1, x1).  An image row
// is a run of `inner` elements (W for NCHW, W*C for channels_last) in which the box covers one
// contiguous span [x0*s, x1*s) (s = 1 or C): each row is at most three memcpy's, in any dtype.
// mask_embed: out = feat * (1 + up(emb)), up = nearest resize of emb [B, Ce, h, w] to (H, W).
// Its backward walks each source row of emb with its footprint in feat, writing dfeat while it
// sums g * feat into demb: one pass over g and feat, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cutmix/cutmix.h"

namespace ssgan_fast {
namespace {

struct RowGeom {
  int64_t R, inner, s;  // rows per image, elements per row, elements per pixel along a row
};
inline RowGeom row_geom(const ImageGeom& g) { return g.cl ? RowGeom{g.H, g.W * g.C, g.C} : RowGeom{g.C * g.H, g.W, 1}; }

// mode 0: out0 = in box ? a : b.   mode 1 (backward): out0 = in box ? a : 0, out1 = in box ? 0 : a.
void box_rows(const char* a, const char* b, char* out0, char* out1, const int32_t* boxes, const ImageGeom& g,
              int64_t esize, int mode) {
  const RowGeom rg = row_geom(g);
  const int64_t rb = rg.inner * esize;
  at::parallel_for(0, g.B * rg.R, std::max<int64_t>(1, 32768 / std::max<int64_t>(rb, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      const int64_t n = row / rg.R, h = (row % rg.R) % g.H;
      const int32_t* bx = boxes + 4 * n;
      const bool in_row = h >= bx[0] && h < bx[2];
      const int64_t c0 = in_row ? bx[1] * rg.s * esize : 0, c1 = in_row ? bx[3] * rg.s * esize : 0;
      const int64_t off = row * rb;
      if (mode == 0) {
        std::memcpy(out0 + off, b + off, c0);
        std::memcpy(out0 + off + c0, a + off + c0, c1 - c0);
        std::memcpy(out0 + off + c1, b + off + c1, rb - c1);
      } else {  // all-zero bits are +0.0 in every IEEE float format
        std::memset(out0 + off, 0, c0);
        std::memcpy(out0 + off + c0, a + off + c0, c1 - c0);
        std::memset(out0 + off + c1, 0, rb - c1);
        std::memcpy(out1 + off, a + off, c0);
        std::memset(out1 + off + c0, 0, c1 - c0);
        std::memcpy(out1 + off + c1, a + off + c1, rb - c1);
      }
    }
  });
}

void box_mask(char* mask, const int32_t* boxes, const ImageGeom& g, at::ScalarType dt) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dt, "cutmix_mask_cpu", [&] {
    scalar_t* m = reinterpret_cast<scalar_t*>(mask);
    at::parallel_for(0, g.B * g.H, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t n = row / g.H, h = row % g.H;
        const int32_t* bx = boxes + 4 * n;
        const bool in_row = h >= bx[0] && h < bx[2];
        for (int64_t x = 0; x < g.W; ++x) m[row * g.W + x] = scalar_t(in_row && x >= bx[1] && x < bx[3] ? 1 : 0);
      }
    });
  });
}

std::vector<int64_t> nearest_table(int64_t n_out, int64_t n_in) {
  std::vector<int64_t> t(n_out);
  for (int64_t i = 0; i < n_out; ++i) t[i] = i * n_in / n_out;
  return t;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cutmix_forward_cpu(const at::Tensor& xa_, const at::Tensor& xb_, const at::Tensor& boxes) {
  const ImageGeom g = image_geom(xa_, "cutmix", "xa");
  check_like(xb_, xa_, "cutmix", "xb", "xa");
  check_boxes(boxes, g.B, xa_, "cutmix");
  const at::Tensor xa = image_storage(xa_, g.cl), xb = image_storage(xb_, g.cl);
  at::Tensor out = at::empty_like(xa);
  at::Tensor mask = at::empty({g.B, 1, g.H, g.W}, xa.options());
  const int64_t es = xa.element_size();
  box_rows(static_cast<const char*>(xa.const_data_ptr()), static_cast<const char*>(xb.const_data_ptr()),
           static_cast<char*>(out.data_ptr()), nullptr, boxes.const_data_ptr<int32_t>(), g, es, 0);
  box_mask(static_cast<char*>(mask.data_ptr()), boxes.const_data_ptr<int32_t>(), g, xa.scalar_type());
  return {out, mask};
}

std::tuple<at::Tensor, at::Tensor> cutmix_backward_cpu(const at::Tensor& g_, const at::Tensor& boxes) {
  const ImageGeom g = image_geom(g_, "cutmix_backward", "grad");
  check_boxes(boxes, g.B, g_, "cutmix_backward");
  const at::Tensor gr = image_storage(g_, g.cl);
  at::Tensor ga = at::empty_like(gr), gb = at::empty_like(gr);
  box_rows(static_cast<const char*>(gr.const_data_ptr()), nullptr, static_cast<char*>(ga.data_ptr()),
           static_cast<char*>(gb.data_ptr()), boxes.const_data_ptr<int32_t>(), g, gr.element_size(), 1);
  return {ga, gb};
}

at::Tensor mask_embed_forward_cpu(const at::Tensor& feat_, const at::Tensor& emb) {
  const ImageGeom g = image_geom(feat_, "mask_embed", "feat");
  check_mask_embed(feat_, emb, "mask_embed");
  const at::Tensor feat = image_storage(feat_, g.cl);
  at::Tensor out = at::empty_like(feat);
  const int64_t Ce = emb.size(1), h = emb.size(2), w = emb.size(3);
  const auto sy = nearest_table(g.H, h), sx = nearest_table(g.W, w);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "mask_embed_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* f = feat.const_data_ptr<scalar_t>();
    const scalar_t* e = emb.const_data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    if (!g.cl) {
      // task = (n, c) planes of H*W contiguous elements; the scale plane 1 + up(emb) of (n, ce) is
      // built once (H*W lookups) and reused for every channel it covers (all of them if Ce == 1).
      const int64_t HW = g.H * g.W;
      at::parallel_for(0, g.B * g.C, std::max<int64_t>(1, 32768 / HW), [&](int64_t t0, int64_t t1) {
        std::vector<acc_t> sc(HW);
        int64_t cached = -1;
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t c = t % g.C, n = t / g.C, key = n * Ce + (Ce == 1 ? 0 : c);
          if (key != cached) {
            const scalar_t* ep = e + key * h * w;
            for (int64_t y = 0; y < g.H; ++y)
              for (int64_t x = 0; x < g.W; ++x) sc[y * g.W + x] = acc_t(1) + acc_t(ep[sy[y] * w + sx[x]]);
            cached = key;
          }
          const scalar_t* fr = f + t * HW;
          scalar_t* orow = o + t * HW;
          const acc_t* scp = sc.data();
          _Pragma("omp simd")
          for (int64_t i = 0; i < HW; ++i) orow[i] = static_cast<scalar_t>(acc_t(fr[i]) * scp[i]);
        }
      });
    } else {  // pixels (n, y, x) of C contiguous elements
      at::parallel_for(0, g.B * g.H, std::max<int64_t>(1, 16384 / (g.W * g.C)), [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
          const int64_t y = row % g.H, n = row / g.H;
          for (int64_t x = 0; x < g.W; ++x) {
            const scalar_t* fp = f + (row * g.W + x) * g.C;
            scalar_t* op = o + (row * g.W + x) * g.C;
            const scalar_t* ep = e + (n * Ce * h + sy[y]) * w + sx[x];  // channel stride h * w
            if (Ce == 1) {
              const acc_t s = acc_t(1) + acc_t(*ep);
            _Pragma("omp simd")
              for (int64_t c = 0; c < g.C; ++c) op[c] = static_cast<scalar_t>(acc_t(fp[c]) * s);
            } else {
              for (int64_t c = 0; c < g.C; ++c) op[c] = static_cast<scalar_t>(acc_t(fp[c]) * (acc_t(1) + acc_t(ep[c * h * w])));
            }
          }
        }
      });
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> mask_embed_backward_cpu(const at::Tensor& g_, const at::Tensor& feat_, const at::Tensor& emb) {
  const ImageGeom g = image_geom(feat_, "mask_embed_backward", "feat");
  check_mask_embed(feat_, emb, "mask_embed_backward");
  check_like(g_, feat_, "mask_embed_backward", "grad", "feat");
  const at::Tensor feat = image_storage(feat_, g.cl), gr = image_storage(g_, g.cl);
  at::Tensor dfeat = at::empty_like(feat), demb = at::empty_like(emb);
  const int64_t Ce = emb.size(1), h = emb.size(2), w = emb.size(3);
  const auto sx = nearest_table(g.W, w);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "mask_embed_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* f = feat.const_data_ptr<scalar_t>();
    const scalar_t* gp = gr.const_data_ptr<scalar_t>();
    const scalar_t* e = emb.const_data_ptr<scalar_t>();
    scalar_t* df = dfeat.data_ptr<scalar_t>();
    scalar_t* de = demb.data_ptr<scalar_t>();
    if (!g.cl) {
      // task = (n, ce): sweep the planes it covers (all C if Ce == 1) contiguously, dfeat = g * scale
      // and g * feat summed into one H*W plane (SIMD), then binned into demb[n, ce] once.
      const int64_t HW = g.H * g.W;
      const auto sy = nearest_table(g.H, h);
      at::parallel_for(0, g.B * Ce, 1, [&](int64_t t0, int64_t t1) {
        std::vector<acc_t> sc(HW), prod(HW), acc(h * w);
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t ce = t % Ce, n = t / Ce;
          const scalar_t* ep = e + t * h * w;
          for (int64_t y = 0; y < g.H; ++y)
            for (int64_t x = 0; x < g.W; ++x) sc[y * g.W + x] = acc_t(1) + acc_t(ep[sy[y] * w + sx[x]]);
          std::fill(prod.begin(), prod.end(), acc_t(0));
          const acc_t* scp = sc.data();
          acc_t* pp = prod.data();
          const int64_t c_lo = Ce == 1 ? 0 : ce, c_hi = Ce == 1 ? g.C : ce + 1;
          for (int64_t c = c_lo; c < c_hi; ++c) {
            const int64_t off = (n * g.C + c) * HW;
            const scalar_t* gr_ = gp + off;
            const scalar_t* fr = f + off;
            scalar_t* dr = df + off;
            _Pragma("omp simd")
            for (int64_t i = 0; i < HW; ++i) {
              const acc_t gv = acc_t(gr_[i]);
              dr[i] = static_cast<scalar_t>(gv * scp[i]);
              pp[i] += gv * acc_t(fr[i]);
            }
          }
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t y = 0; y < g.H; ++y)
            for (int64_t x = 0; x < g.W; ++x) acc[sy[y] * w + sx[x]] += pp[y * g.W + x];
          for (int64_t j = 0; j < h * w; ++j) de[t * h * w + j] = static_cast<scalar_t>(acc[j]);
        }
      });
      return;
    }
    // channels_last: one task per source row (n, ce, sy), its footprint rows y in [Y0, Y1); per
    // pixel a SIMD reduction over the channels it covers (all if Ce == 1).
    at::parallel_for(0, g.B * Ce * h, 1, [&](int64_t r0, int64_t r1) {
      std::vector<acc_t> acc(w);
      for (int64_t er = r0; er < r1; ++er) {
        const int64_t s = er % h, ce = (er / h) % Ce, n = er / (h * Ce);
        const int64_t Y0 = footprint_begin(s, h, g.H), Y1 = std::min(g.H, footprint_begin(s + 1, h, g.H));
        const int64_t c_lo = Ce == 1 ? 0 : ce, c_hi = Ce == 1 ? g.C : ce + 1;
        const scalar_t* erow = e + er * w;
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (int64_t y = Y0; y < Y1; ++y) {
          for (int64_t x = 0; x < g.W; ++x) {
            const int64_t off = ((n * g.H + y) * g.W + x) * g.C;
            const acc_t sc1 = acc_t(1) + acc_t(erow[sx[x]]);
            acc_t a = 0;
            _Pragma("omp simd reduction(+ : a)")
            for (int64_t c = c_lo; c < c_hi; ++c) {
              const acc_t gv = acc_t(gp[off + c]);
              df[off + c] = static_cast<scalar_t>(gv * sc1);
              a += gv * acc_t(f[off + c]);
            }
            acc[sx[x]] += a;
          }
        }
        for (int64_t j = 0; j < w; ++j) de[er * w + j] = static_cast<scalar_t>(acc[j]);
      }
    });
  });
  return {dfeat, demb};
}

}  // namespace ssgan_fast

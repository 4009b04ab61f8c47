// Op registration for ssgan_fast._C: one schema line per op, by family, then the CPU / CUDA kernels.
// The module has no Python API of its own; importing it runs these registrations.
//   prototype, aam: the per-op host functions of the shared cosine-logits core (cosine_logits.h),
//                   their eager autograd (autograd.cpp), prototype_ema_rows (prototype.h)
//   cutmix (cutmix.h), feature_stats (feature_stats.h), knn (knn.h), augment (augment.h: the loader's kernel)
#include <Python.h>
#include <torch/library.h>

#include <sstream>

#include "augment.h"
#include "cosine_logits.h"
#include "cutmix.h"
#include "errors.h"
#include "feature_stats.h"
#include "knn.h"
#include "ops_ns.h"
#include "prototype.h"
#include "shared.h"

namespace {
// "NAME=value;..." of csrc/shared.h's constants, as the compiled code sees them (tests/ops/test_constants.py)
std::string constants() {
  std::ostringstream o;
  o.precision(17);
  o << "NORM_EPS=" << ssgan_fast::NORM_EPS << ";MARGIN_CLAMP_EPS=" << ssgan_fast::MARGIN_CLAMP_EPS
    << ";PBAR_MIN=" << ssgan_fast::PBAR_MIN << ";FUSED_CE_MAX_WEIGHT=" << ssgan_fast::FUSED_CE_MAX_WEIGHT
    << ";CE_TILE_ELEMS=" << ssgan_fast::CE_TILE_ELEMS << ";CE_MIN_COLS=" << ssgan_fast::CE_MIN_COLS
    << ";FEATURE_STATS_CHUNK=" << ssgan_fast::FEATURE_STATS_CHUNK;
  return o.str();
}
}  // namespace

SSGAN_LIBRARY(m) {
  // prototype
  m.def("cosine_softmax_fwd(Tensor x, Tensor w, Tensor? tau, float scale, Tensor? lo, Tensor? hi) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("cosine_softmax_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor? tau, float scale, Tensor probs, Tensor lse, Tensor grad) -> (Tensor, Tensor, Tensor)");
  m.def("clustering_loss_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor? tau, float scale, Tensor probs, Tensor lse, Tensor grad, float lam) -> (Tensor, Tensor, Tensor)");
  m.def("prototype_ema_rows(Tensor(a!) protos, Tensor sums, Tensor wsum, float momentum) -> ()");
  // aam
  m.def("aam_logits_fwd(Tensor x, Tensor w, Tensor target, float s, float m) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("aam_logits_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor target, float s, float m, Tensor grad) -> (Tensor, Tensor)");
  m.def("aam_ce_fwd(Tensor x, Tensor w, Tensor target, float s, float m, int chunk) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("aam_ce_bwd(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor target, float s, float m, Tensor lse, Tensor grad, int chunk) -> (Tensor, Tensor)");
  m.def("aam_ce_fused(Tensor x, Tensor w, Tensor target, float s, float m, float weight, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // cutmix
  m.def("cutmix_forward(Tensor xa, Tensor xb, Tensor boxes) -> (Tensor, Tensor)");
  m.def("cutmix_backward(Tensor grad, Tensor boxes) -> (Tensor, Tensor)");
  m.def("mask_embed_forward(Tensor feat, Tensor emb) -> Tensor");
  m.def("mask_embed_backward(Tensor grad, Tensor feat, Tensor emb) -> (Tensor, Tensor)");
  // feature_stats
  m.def("feature_stats_moments(Tensor x, Tensor labels, Tensor shift, Tensor(a!) count, Tensor(b!) sum, Tensor(c!) xtx) -> ()");
  // knn
  m.def("knn_smallest(Tensor x, Tensor? ref, int k) -> Tensor");
  m.def("knn_radius_count(Tensor a, Tensor b, Tensor ra2, Tensor rb2, bool inclusive) -> (Tensor, Tensor, Tensor)");
  // the loader's augmentation
  m.def("augment_shift(Tensor x, Tensor dy, Tensor dx, Tensor flip, int mode, float fill, float divisor, float shift, bool to_float) -> Tensor");
  // the message a failed CUDA launch raises (SSGAN_CHECK_LAUNCH), callable for the tests on any machine
  m.def("launch_error_message(str op, str kernel, str[] names, Tensor[] tensors, str error) -> str",
        [](std::string op, std::string kernel, std::vector<std::string> names, std::vector<at::Tensor> tensors,
           std::string error) { return ssgan_fast::launch_error_message(op, kernel, names, tensors, error); });
  m.def("constants() -> str", &constants);
}

// the host functions are device generic (ATen calls + the row kernels of the tensors' device)
#define SSGAN_REGISTER_HOST(m)                                  \
  m.impl("cosine_softmax_fwd", &ssgan_fast::cosine_softmax_fwd);   \
  m.impl("cosine_softmax_bwd", &ssgan_fast::cosine_softmax_bwd);   \
  m.impl("clustering_loss_bwd", &ssgan_fast::clustering_loss_bwd); \
  m.impl("aam_logits_fwd", &ssgan_fast::aam_logits_fwd);           \
  m.impl("aam_logits_bwd", &ssgan_fast::aam_logits_bwd);           \
  m.impl("aam_ce_fwd", &ssgan_fast::aam_ce_fwd);                   \
  m.impl("aam_ce_bwd", &ssgan_fast::aam_ce_bwd);                   \
  m.impl("aam_ce_fused", &ssgan_fast::aam_ce_fused);

// the per-device kernels of the other families: DEV is cpu (csrc/cpu/) or cuda (csrc/cuda/: CUDA tensors, or CPU
// tensors in the CPU emulation build, csrc/emu/)
#define SSGAN_REGISTER_KERNELS(m, DEV)                                           \
  m.impl("prototype_ema_rows", &ssgan_fast::prototype_ema_rows_##DEV);       \
  m.impl("cutmix_forward", &ssgan_fast::cutmix_forward_##DEV);               \
  m.impl("cutmix_backward", &ssgan_fast::cutmix_backward_##DEV);             \
  m.impl("mask_embed_forward", &ssgan_fast::mask_embed_forward_##DEV);       \
  m.impl("mask_embed_backward", &ssgan_fast::mask_embed_backward_##DEV);     \
  m.impl("feature_stats_moments", &ssgan_fast::feature_stats_moments_##DEV); \
  m.impl("knn_smallest", &ssgan_fast::knn_smallest_##DEV);                   \
  m.impl("knn_radius_count", &ssgan_fast::knn_radius_count_##DEV);

#ifdef SSGAN_CUDA_EMU
SSGAN_LIBRARY_IMPL(CPU, m) {
  SSGAN_REGISTER_HOST(m)
  SSGAN_REGISTER_KERNELS(m, cuda)
}
#define SSGAN_WITH_CUDA 1
#else
SSGAN_LIBRARY_IMPL(CPU, m) {
  SSGAN_REGISTER_HOST(m)
  SSGAN_REGISTER_KERNELS(m, cpu)
  m.impl("augment_shift", &ssgan_fast::augment_shift_cpu);  // the loader's kernel: CPU only
}

#ifdef WITH_CUDA
SSGAN_LIBRARY_IMPL(CUDA, m) {
  SSGAN_REGISTER_HOST(m)
  SSGAN_REGISTER_KERNELS(m, cuda)
}
#define SSGAN_WITH_CUDA 1
#else
#define SSGAN_WITH_CUDA 0
#endif
#endif

#ifndef SSGAN_CUDA_VERSION
#define SSGAN_CUDA_VERSION ""
#endif
#ifndef SSGAN_CUDA_ARCHS
#define SSGAN_CUDA_ARCHS ""
#endif

#ifdef SSGAN_CUDA_EMU
extern "C" PyObject* PyInit__C_emu(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C_emu", "ssgan_fast's CUDA kernels emulated on the CPU (tests)",
                                   -1, nullptr};
#else
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "ssgan_fast compiled kernels (C++ CPU, CUDA)", -1, nullptr};
#endif
  PyObject* mod = PyModule_Create(&def);
  if (mod == nullptr) return nullptr;
  PyModule_AddIntConstant(mod, "WITH_CUDA", SSGAN_WITH_CUDA);
  PyModule_AddStringConstant(mod, "CUDA_VERSION", SSGAN_CUDA_VERSION);
  PyModule_AddStringConstant(mod, "CUDA_ARCHS", SSGAN_CUDA_ARCHS);
  PyModule_AddStringConstant(mod, "TORCH_VERSION", SSGAN_TORCH_VERSION);
  return mod;
}

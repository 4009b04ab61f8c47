// Op registration for ssgan_fast._C: one schema line per op, then the CPU / CUDA kernels.
// The module has no Python API of its own; importing it runs these registrations.
#include <Python.h>
#include <torch/library.h>

#include "image_ops.h"
#include "ops.h"

TORCH_LIBRARY(ssgan_fast_C, m) {
  m.def("cosine_logits_fwd_rows(Tensor(a!) dots, Tensor rx, Tensor rw, Tensor scale, float margin, Tensor target, Tensor lo, Tensor hi, int c0, int mode, Tensor(b!) stats) -> ()");
  m.def("cosine_logits_bwd_rows(Tensor(a!) dots, Tensor rx, Tensor rw, Tensor scale, float margin, Tensor target, Tensor lo, Tensor hi, int c0, int mode, Tensor saved, Tensor lse, Tensor grad, Tensor(b!) rowdot, Tensor(c!) coldot) -> ()");
  m.def("cosine_logits_ce_rows(Tensor(a!) dots, Tensor rx, Tensor rw, Tensor scale, float margin, Tensor target, float weight, Tensor(b!) stats, Tensor(c!) rowdot, Tensor(d!) coldot) -> ()");
  m.def("cosine_logits_forward(Tensor x, Tensor w, Tensor? tau, float scale, float margin, Tensor? target, Tensor? lo, Tensor? hi, int mode, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("cosine_logits_backward(Tensor x, Tensor w, Tensor rx, Tensor rw, Tensor? tau, float scale, float margin, Tensor? target, Tensor? lo, Tensor? hi, int mode, Tensor? saved, Tensor? lse, Tensor grad, float lam, int chunk) -> (Tensor, Tensor, Tensor)");
  m.def("cosine_logits_ce_fused(Tensor x, Tensor w, float scale, float margin, Tensor target, float weight, int chunk) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("prototype_ema_rows(Tensor(a!) protos, Tensor sums, Tensor wsum, float momentum) -> ()");
  m.def("cutmix_forward(Tensor xa, Tensor xb, Tensor boxes) -> (Tensor, Tensor)");
  m.def("cutmix_backward(Tensor grad, Tensor boxes) -> (Tensor, Tensor)");
  m.def("mask_embed_forward(Tensor feat, Tensor emb) -> Tensor");
  m.def("mask_embed_backward(Tensor grad, Tensor feat, Tensor emb) -> (Tensor, Tensor)");
  m.def("augment_shift(Tensor x, Tensor dy, Tensor dx, Tensor flip, int mode, float fill, float divisor, float shift, bool to_float) -> Tensor");
  m.def("class_moments(Tensor x, Tensor labels, Tensor shift, Tensor(a!) count, Tensor(b!) sum, Tensor(c!) xtx) -> ()");
  // the message a failed CUDA launch raises (SSGAN_CHECK_LAUNCH), callable for the tests on any machine
  m.def("launch_error_message(str op, str kernel, str[] names, Tensor[] tensors, str error) -> str",
        [](std::string op, std::string kernel, std::vector<std::string> names, std::vector<at::Tensor> tensors,
           std::string error) { return ssgan_fast::launch_error_message(op, kernel, names, tensors, error); });
}

TORCH_LIBRARY_IMPL(ssgan_fast_C, CPU, m) {
  m.impl("cosine_logits_fwd_rows", &ssgan_fast::cosine_logits_fwd_rows_cpu);
  m.impl("cosine_logits_bwd_rows", &ssgan_fast::cosine_logits_bwd_rows_cpu);
  m.impl("cosine_logits_ce_rows", &ssgan_fast::cosine_logits_ce_rows_cpu);
  m.impl("prototype_ema_rows", &ssgan_fast::prototype_ema_rows_cpu);
  m.impl("cutmix_forward", &ssgan_fast::cutmix_forward_cpu);
  m.impl("cutmix_backward", &ssgan_fast::cutmix_backward_cpu);
  m.impl("mask_embed_forward", &ssgan_fast::mask_embed_forward_cpu);
  m.impl("mask_embed_backward", &ssgan_fast::mask_embed_backward_cpu);
  m.impl("class_moments", &ssgan_fast::class_moments_cpu);
  m.impl("augment_shift", &ssgan_fast::augment_shift_cpu);
  m.impl("cosine_logits_forward", &ssgan_fast::cosine_logits_forward);
  m.impl("cosine_logits_backward", &ssgan_fast::cosine_logits_backward);
  m.impl("cosine_logits_ce_fused", &ssgan_fast::cosine_logits_ce_fused);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(ssgan_fast_C, CUDA, m) {
  m.impl("cosine_logits_fwd_rows", &ssgan_fast::cosine_logits_fwd_rows_cuda);
  m.impl("cosine_logits_bwd_rows", &ssgan_fast::cosine_logits_bwd_rows_cuda);
  m.impl("cosine_logits_ce_rows", &ssgan_fast::cosine_logits_ce_rows_cuda);
  m.impl("prototype_ema_rows", &ssgan_fast::prototype_ema_rows_cuda);
  m.impl("cutmix_forward", &ssgan_fast::cutmix_forward_cuda);
  m.impl("cutmix_backward", &ssgan_fast::cutmix_backward_cuda);
  m.impl("mask_embed_forward", &ssgan_fast::mask_embed_forward_cuda);
  m.impl("mask_embed_backward", &ssgan_fast::mask_embed_backward_cuda);
  m.impl("class_moments", &ssgan_fast::class_moments_cuda);
  m.impl("cosine_logits_forward", &ssgan_fast::cosine_logits_forward);
  m.impl("cosine_logits_backward", &ssgan_fast::cosine_logits_backward);
  m.impl("cosine_logits_ce_fused", &ssgan_fast::cosine_logits_ce_fused);
}
#define SSGAN_WITH_CUDA 1
#else
#define SSGAN_WITH_CUDA 0
#endif

#ifndef SSGAN_CUDA_VERSION
#define SSGAN_CUDA_VERSION ""
#endif
#ifndef SSGAN_CUDA_ARCHS
#define SSGAN_CUDA_ARCHS ""
#endif

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "ssgan_fast compiled kernels (C++ CPU, CUDA)", -1, nullptr};
  PyObject* mod = PyModule_Create(&def);
  if (mod == nullptr) return nullptr;
  PyModule_AddIntConstant(mod, "WITH_CUDA", SSGAN_WITH_CUDA);
  PyModule_AddStringConstant(mod, "CUDA_VERSION", SSGAN_CUDA_VERSION);
  PyModule_AddStringConstant(mod, "CUDA_ARCHS", SSGAN_CUDA_ARCHS);
  PyModule_AddStringConstant(mod, "TORCH_VERSION", SSGAN_TORCH_VERSION);
  return mod;
}

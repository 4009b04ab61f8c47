// The ssgan_fast._C module (ssgan_fast._C_emu in the CPU emulation build): the torch.library namespace
// and its two project-wide ops. Each op family registers its own ops and kernels in
// csrc/<family>/<family>_ops.cpp (TORCH_LIBRARY_FRAGMENT); this file names none of them. The module has
// no Python API of its own: importing it runs the registrations of every linked family.
#include <Python.h>
#include <torch/library.h>

#include <sstream>

#include "common/errors.h"
#include "common/ops_ns.h"
#include "common/shared.h"

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
  // the message a failed CUDA launch raises (SSGAN_CHECK_LAUNCH), callable for the tests on any machine
  m.def("launch_error_message(str op, str kernel, str[] names, Tensor[] tensors, str error) -> str",
        [](std::string op, std::string kernel, std::vector<std::string> names, std::vector<at::Tensor> tensors,
           std::string error) { return ssgan_fast::launch_error_message(op, kernel, names, tensors, error); });
  m.def("constants() -> str", &constants);
}

#if defined(SSGAN_CUDA_EMU) || defined(WITH_CUDA)
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

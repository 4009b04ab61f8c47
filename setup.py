"""Build of ssgan_fast and its compiled kernels ssgan_fast._C.

C++ CPU kernels are always built. CUDA kernels are added when a CUDA toolkit and a CUDA build of
torch are present, or when FORCE_CUDA=1 (compile and link only: no GPU is needed to build).
SSGAN_FAST_NO_CUDA=1 skips them. The build configuration is printed.
"""
import glob
import os
import site
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - the README installs torch first
    sys.exit("ssgan_fast: install torch before building (pip install --no-build-isolation -e .)")

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_decision():
    if os.environ.get("SSGAN_FAST_NO_CUDA") == "1":
        return False, "SSGAN_FAST_NO_CUDA=1"
    if os.environ.get("FORCE_CUDA") == "1":
        return True, "FORCE_CUDA=1"
    if torch.version.cuda is None:
        return False, "torch is a CPU-only build"
    if CUDA_HOME is None or not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        return False, f"no CUDA toolkit (nvcc) found (CUDA_HOME={CUDA_HOME})"
    return True, f"CUDA toolkit at {CUDA_HOME} and torch built with CUDA {torch.version.cuda}"


def _extra_cuda_includes():
    """pip's nvidia-* wheels carry headers the system toolkit may lack (cublas, cusparse)."""
    dirs = []
    for sp in site.getsitepackages() + [site.getusersitepackages()]:
        for d in glob.glob(os.path.join(sp, "nvidia", "cu*", "include")):
            dirs.append(d)
    return dirs


def _extensions():
    with_cuda, why = _cuda_decision()
    cpp_sources = ["csrc/ops.cpp", "csrc/cosine_logits_host.cpp", "csrc/autograd.cpp"]
    cpp_sources += sorted(glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    define_macros = [("SSGAN_TORCH_VERSION", f'"{torch.__version__}"')]
    # torch adds the C++ standard it needs; -fno-math-errno lets the vectoriser call libmvec's exp
    cxx = ["-O3", "-fopenmp", "-fno-math-errno"]
    link = ["-fopenmp", "-lmvec"]
    if with_cuda:
        define_macros += [("WITH_CUDA", None), ("SSGAN_CUDA_VERSION", f'"{torch.version.cuda}"')]
        nvcc = ["-O3", "--use_fast_math", "-lineinfo"]
        ext = CUDAExtension(
            "ssgan_fast._C",
            cpp_sources + cuda_sources,
            define_macros=define_macros,
            include_dirs=[os.path.join(ROOT, "csrc")] + _extra_cuda_includes(),
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
        )
    else:
        ext = CppExtension(
            "ssgan_fast._C",
            cpp_sources,
            define_macros=define_macros,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx},
            extra_link_args=link,
        )
    print(
        f"ssgan_fast build: torch {torch.__version__}; C++ CPU kernels: yes ({len(cpp_sources)} files); "
        f"CUDA kernels: {'yes' if with_cuda else 'no'} ({why}); "
        f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(torch default)')}",
        flush=True,
    )
    return [ext]


setup(
    packages=find_packages(include=["ssgan_fast", "ssgan_fast.*"]) + ["ssgan_fast.kernels"],
    package_dir={"ssgan_fast.kernels": "kernels"},
    package_data={"ssgan_fast.configs": ["*.yaml"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)

"""Build of ssgan_fast and its compiled kernels ssgan_fast._C.

C++ CPU kernels are always built. CUDA kernels are added when a CUDA toolkit and a CUDA build of
torch are present (no GPU is needed: they are compiled and linked), or when FORCE_CUDA=1;
SSGAN_FAST_NO_CUDA=1 skips them. A plain `pip install --no-build-isolation .` (or `-e .`) works
with nothing set:
- the toolkit is found before torch's cpp_extension is imported (which would otherwise settle on
  the parent of a wrapper script's folder, e.g. /usr/local for /usr/local/bin/nvcc): $CUDA_HOME,
  $CUDA_PATH, the real location of `nvcc` on PATH (following links and `exec` wrapper scripts),
  /usr/local/cuda, then the newest /usr/local/cuda-*;
- without TORCH_CUDA_ARCH_LIST and with no GPU visible, the architectures are DEFAULT_ARCHS
  (sm_80 and sm_90 code, compute_90 PTX for newer GPUs).
The build configuration is printed.
"""
import glob
import os
import re
import shutil
import site
import sys

from setuptools import find_packages, setup

DEFAULT_ARCHS = "8.0;9.0+PTX"


def _toolkit_ok(home):
    if not home or not os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return False
    libs = glob.glob(os.path.join(home, "lib64", "libcudart.so*")) + \
        glob.glob(os.path.join(home, "targets", "*", "lib", "libcudart.so*"))
    return bool(libs) and os.path.isfile(os.path.join(home, "include", "cuda_runtime.h"))


def _nvcc_target(path):
    """The nvcc a wrapper script execs (`exec /usr/local/cuda-13.0/bin/nvcc "$@"`), else path itself."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return path
    if not head.startswith(b"#!"):
        return path
    m = re.search(rb"(/[^\s\"']+/bin/nvcc)\b", head)
    return m.group(1).decode() if m else path


def find_cuda_home():
    """(toolkit folder or None, how it was found)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home:
            if _toolkit_ok(home):
                return home, f"${var}"
            print(f"ssgan_fast build: ${var}={home} is not a CUDA toolkit (no bin/nvcc, libcudart or headers); "
                  "looking elsewhere", flush=True)
    nvcc = shutil.which("nvcc")
    if nvcc:
        real = os.path.realpath(_nvcc_target(os.path.realpath(nvcc)))
        home = os.path.dirname(os.path.dirname(real))
        if _toolkit_ok(home):
            return home, f"nvcc on PATH ({nvcc} -> {real})"
    for home in ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True):
        if _toolkit_ok(home):
            return home, "standard location"
    return None, "no CUDA toolkit found ($CUDA_HOME, nvcc on PATH, /usr/local/cuda*)"


if os.environ.get("SSGAN_FAST_NO_CUDA") != "1":
    _home, _how = find_cuda_home()
    if _home:
        os.environ["CUDA_HOME"] = _home  # before torch.utils.cpp_extension reads it
else:
    _home, _how = None, "SSGAN_FAST_NO_CUDA=1"

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:  # pragma: no cover - the README installs torch first
    sys.exit("ssgan_fast: install torch before building (pip install --no-build-isolation -e .)")

ROOT = os.path.dirname(os.path.abspath(__file__))


def _cuda_decision():
    if os.environ.get("SSGAN_FAST_NO_CUDA") == "1":
        return False, "SSGAN_FAST_NO_CUDA=1"
    if torch.version.cuda is None:
        if os.environ.get("FORCE_CUDA") == "1":
            sys.exit("ssgan_fast build: FORCE_CUDA=1 but torch is a CPU-only build: install a CUDA build of torch")
        return False, "torch is a CPU-only build"
    if CUDA_HOME is None or not _toolkit_ok(CUDA_HOME):
        if os.environ.get("FORCE_CUDA") == "1":
            sys.exit(f"ssgan_fast build: FORCE_CUDA=1 but {_how}; set CUDA_HOME to the toolkit")
        return False, _how
    why = "FORCE_CUDA=1" if os.environ.get("FORCE_CUDA") == "1" else "found"
    return True, f"{why}: toolkit {CUDA_HOME} ({_how}), torch built with CUDA {torch.version.cuda}"


def _cuda_archs():
    """TORCH_CUDA_ARCH_LIST, else the visible GPUs' (torch's default), else DEFAULT_ARCHS."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"], "TORCH_CUDA_ARCH_LIST"
    if torch.cuda.is_available():
        caps = sorted({"{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())})
        return ";".join(caps), "the visible GPUs"
    os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS  # torch's own default needs a visible GPU
    return DEFAULT_ARCHS, "default (no GPU visible)"


def _extra_cuda_includes():
    """pip's nvidia-* wheels carry headers the system toolkit may lack (cublas, cusparse);
    SSGAN_FAST_EXTRA_INCLUDE adds folders (':'-separated) from another environment's."""
    dirs = [d for d in os.environ.get("SSGAN_FAST_EXTRA_INCLUDE", "").split(":") if d]
    for sp in site.getsitepackages() + [site.getusersitepackages()]:
        for d in glob.glob(os.path.join(sp, "nvidia", "cu*", "include")):
            dirs.append(d)
    return dirs


def _extensions():
    if os.environ.get("SSGAN_FAST_PREBUILT") == "1":  # tools/gpu_session.sh: _C copied in by tools/prebuilt.py
        print("ssgan_fast build: SSGAN_FAST_PREBUILT=1 - no extension built, the prebuilt ssgan_fast/_C is used",
              flush=True)
        return []
    with_cuda, why = _cuda_decision()
    # csrc/common/ (the module, shared headers) and one folder per op family: its schema and registration
    # (<family>_ops.cpp), host code and CPU kernels (.cpp), CUDA kernels (.cu); csrc/emu/ is the tests' build
    cpp_sources = sorted(p for p in glob.glob("csrc/*/*.cpp") if not p.startswith("csrc/emu/"))
    cuda_sources = sorted(glob.glob("csrc/*/*.cu"))
    define_macros = [("SSGAN_TORCH_VERSION", f'"{torch.__version__}"')]
    # torch adds the C++ standard it needs; -fno-math-errno lets the vectoriser call libmvec's exp
    cxx = ["-O3", "-fopenmp", "-fno-math-errno"]
    link = ["-fopenmp", "-lmvec"]
    archs = None
    if with_cuda:
        archs, arch_why = _cuda_archs()
        define_macros += [("WITH_CUDA", None), ("SSGAN_CUDA_VERSION", f'"{torch.version.cuda}"'),
                          ("SSGAN_CUDA_ARCHS", f'"{archs}"')]
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
        f"CUDA kernels: {'yes' if with_cuda else 'no'} ({why})"
        + (f"; architectures {archs} ({arch_why})" if with_cuda else ""),
        flush=True,
    )
    return [ext]


setup(
    packages=find_packages(include=["ssgan_fast", "ssgan_fast.*"]) + ["ssgan_fast.kernels"],
    package_dir={"ssgan_fast.kernels": "kernels"},
    # the presets, and the digits classifiers that evaluate() and the default run use (tools/ship_classifiers.py)
    package_data={"ssgan_fast.configs": ["*.yaml"],
                  "ssgan_fast.evaluation": ["classifiers/*.pt", "classifiers/manifest.json"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)

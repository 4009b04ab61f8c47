"""The editable install (what the test run uses) maps the package and its kernels to the checkout.
The plain wheel (nothing set, fresh venv, used from outside the tree) is .ci/wheel_check.sh, run by CI
after the suite."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_editable_install_maps_kernels_to_repo():
    import ssgan_fast.kernels
    assert os.path.realpath(os.path.dirname(ssgan_fast.kernels.__file__)) == os.path.join(ROOT, "kernels")
    assert os.path.realpath(os.path.dirname(ssgan_fast.__file__)) == os.path.join(ROOT, "ssgan_fast")


def _setup_functions():
    """setup.py's toolkit finder, without running setup() (its functions, executed on their own)."""
    import ast
    src = open(os.path.join(ROOT, "setup.py")).read()
    tree = ast.parse(src)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in
            ("_toolkit_ok", "_nvcc_target", "find_cuda_home")]
    ns = {}
    exec("import glob, os, re, shutil\n" + "\n\n".join(ast.unparse(n) for n in keep), ns)
    return ns


def _fake_toolkit(root):
    home = root / "cuda-99.9"
    for rel in ("bin/nvcc", "lib64/libcudart.so.99", "include/cuda_runtime.h"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text("")
    (home / "bin" / "nvcc").chmod(0o755)
    return home


def test_setup_finds_the_toolkit_behind_a_wrapper_script(tmp_path, monkeypatch):
    """`nvcc` on PATH is often a wrapper (`exec /usr/local/cuda-13.0/bin/nvcc "$@"` in /usr/local/bin):
    torch would take its parent folder (/usr/local) as CUDA_HOME and fail to link -lcudart."""
    ns = _setup_functions()
    home = _fake_toolkit(tmp_path)
    wrap = tmp_path / "wrapbin" / "nvcc"
    wrap.parent.mkdir()
    wrap.write_text(f'#!/bin/sh\nexec {home}/bin/nvcc "$@"\n')
    wrap.chmod(0o755)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setenv("PATH", str(wrap.parent))
    found, how = ns["find_cuda_home"]()
    assert found == str(home) and "nvcc on PATH" in how, (found, how)
    # a link to the real nvcc resolves the same way
    (tmp_path / "linkbin").mkdir()
    os.symlink(home / "bin" / "nvcc", tmp_path / "linkbin" / "nvcc")
    monkeypatch.setenv("PATH", str(tmp_path / "linkbin"))
    assert ns["find_cuda_home"]()[0] == str(home)
    # $CUDA_HOME wins when it is a toolkit, and is passed over (with a message) when it is not
    other = _fake_toolkit(tmp_path / "other")
    monkeypatch.setenv("CUDA_HOME", str(other))
    assert ns["find_cuda_home"]() == (str(other), "$CUDA_HOME")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "wrapbin"))
    assert ns["find_cuda_home"]()[0] == str(home)
    assert not ns["_toolkit_ok"](str(tmp_path / "wrapbin"))

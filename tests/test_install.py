"""The package installs both ways: editable (what the test run uses) and as a built wheel."""
import os
import subprocess
import sys

import pytest

import ssgan_fast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_editable_install_maps_kernels_to_repo():
    import ssgan_fast.kernels
    assert os.path.realpath(os.path.dirname(ssgan_fast.kernels.__file__)) == os.path.join(ROOT, "kernels")
    assert os.path.realpath(os.path.dirname(ssgan_fast.__file__)) == os.path.join(ROOT, "ssgan_fast")


def test_wheel_install_is_self_contained(tmp_path):
    """Build a wheel (C++ only, for speed), install it into a folder and use it from elsewhere."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    src = tmp_path / "src"
    for rel in files.stdout.split():
        if not os.path.exists(os.path.join(ROOT, rel)):
            continue
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(open(os.path.join(ROOT, rel), "rb").read())
    env = dict(os.environ, SSGAN_FAST_NO_CUDA="1")
    env.pop("FORCE_CUDA", None)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w",
                    str(wheels), str(src)], check=True, env=env)
    site = tmp_path / "site"
    whl = next(wheels.glob("ssgan_fast-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(whl)],
                   check=True)
    code = ("import ssgan_fast, ssgan_fast.kernels.cosine_logits as k, torch\n"
            "from ssgan_fast.ops import aam_cross_entropy\n"
            "assert ssgan_fast.__file__.startswith(%r), ssgan_fast.__file__\n"
            "assert ssgan_fast.build_info()['backends']['cpp']['available']\n"
            "x = torch.randn(3, 4, requires_grad=True); w = torch.randn(5, 4)\n"
            "aam_cross_entropy(x, w, torch.tensor([0, 4, 2])).backward()\n"
            "print('ok', k.__file__)\n") % str(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    env["SSGAN_FAST_BACKEND"] = "cpp"
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and str(site) in out.stdout

"""The ops' constants have one source, csrc/common/shared.h: the generated Python module is current, and
the compiled C++ code, the Triton kernels and the plain-torch reference all see the same values."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssgan_fast import _constants
from tools import gen_constants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_module_is_current():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_constants.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    header = gen_constants.read_header()
    assert {k: v for k, (_, v, _) in header.items()} == {k: getattr(_constants, k) for k in _constants.__all__}


def test_header_parser_reads_every_form():
    text = "// a\nSSGAN_CONST(double, A_EPS, 1e-7)\nSSGAN_CONST(int64_t, B_N, int64_t{1} << 22)\n"
    got = gen_constants.read_header(text)
    assert got == {"A_EPS": ("double", 1e-7, "a"), "B_N": ("int64_t", 1 << 22, "")}
    with pytest.raises(ValueError, match="cannot read"):
        gen_constants.read_header("SSGAN_CONST(double, C, pow(2, 3))\n")


def test_compiled_code_sees_the_same_values():
    C = pytest.importorskip("ssgan_fast._C")
    del C
    pairs = dict(kv.split("=") for kv in torch.ops.ssgan_fast_C.constants().split(";"))
    assert set(pairs) == set(_constants.__all__), "module.cpp's constants() must list every SSGAN_CONST"
    for name, text in pairs.items():
        want = getattr(_constants, name)
        assert (float(text) if isinstance(want, float) else int(text)) == want, name


def test_reference_and_hosts_use_the_generated_values():
    from ssgan_fast.ops import cosine_logits, reference
    assert reference.NORM_EPS == _constants.NORM_EPS and reference.PBAR_MIN == _constants.PBAR_MIN
    assert reference.MARGIN_CLAMP_EPS == _constants.MARGIN_CLAMP_EPS
    assert cosine_logits.default_row_chunk(10**9, 1) == _constants.CE_TILE_ELEMS
    assert cosine_logits.default_chunk(1, 10**9) == _constants.CE_TILE_ELEMS
    assert cosine_logits.default_chunk(10**9, 10**9) == _constants.CE_MIN_COLS


def test_triton_kernels_see_the_same_values():
    """The values inside @triton.jit code (the kernels' constexpr globals), run by the interpreter
    on CPU tensors; importing the kernels needs no ssgan_fast._C."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("needs a GPU or TRITON_INTERPRET=1")
    code = r"""
import sys, json
sys.modules["ssgan_fast._C"] = None  # an import of the extension would fail
import torch, triton, triton.language as tl
from ssgan_fast.kernels import cosine_logits, cosine_logits_fused, feature_stats
NORM_EPS = cosine_logits_fused.NORM_EPS
CHUNK = tl.constexpr(feature_stats.CHUNK)

@triton.jit
def k(out, EPS: tl.constexpr):
    tl.store(out, NORM_EPS)
    tl.store(out + 1, EPS)
    tl.store(out + 2, CHUNK + 0.0)

dev = "cuda" if torch.cuda.is_available() else "cpu"
out = torch.zeros(3, dtype=torch.float32, device=dev)
k[(1,)](out, EPS=cosine_logits.MARGIN_CLAMP_EPS)
print(json.dumps(out.cpu().tolist()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    got = [float(v) for v in r.stdout.strip().splitlines()[-1].strip("[]").split(",")]
    want = np.float32([_constants.NORM_EPS, _constants.MARGIN_CLAMP_EPS, _constants.FEATURE_STATS_CHUNK])
    assert np.array_equal(np.float32(got), want), (got, want)

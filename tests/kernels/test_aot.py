"""The GPU code checked without a GPU (tools/aot.py), in the suite CI runs.

- Every specialisation the ops launch (papers' and benchmarks' shapes, every dispatch branch, every
  autotune config) is in the committed table (tools/aot_tables/triton-<version>.json), whose hash of the
  kernel sources must be current: the table holds each one's sm_90 / sm_80 compile (made by the full
  sweep, `make aot-table`, from these sources). CI then compiles what could differ from the table
  without a source change - the toolchain: each kernel's first and most register-hungry specialisation
  - and compares registers / spills with the table (tools/aot.py check --ci); under this machine's
  Triton 3.8 and the GPU machines' Triton 3.6 (side venv). A changed kernel makes the table stale and
  fails until the full sweep is rerun.
- The CUDA kernels of the built _C hold sm_80 and sm_90 code and compute_90 PTX, use no stack or
  local memory (no spills), and match tools/aot_tables/cuda.json.
- The dry walk on meta tensors records the same specialisations as real launches under the interpreter.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AOT = os.path.join(ROOT, "tools", "aot.py")
JOBS = str(max(1, min(os.cpu_count() or 1, 8)))

triton = pytest.importorskip("triton")
from tools import aot  # noqa: E402


def _run(python, *args, timeout=1200):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([python, AOT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout + out.stderr


def test_triton_kernels_compile_for_sm90_and_sm80():
    rc, log = _run(sys.executable, "check", "--ci", "--jobs", JOBS)
    assert rc == 0, log[-6000:]
    assert "problem(s)" in log and " 0 problem(s)" in log, log[-3000:]


def _triton36_python():
    """A side venv that sees this environment's packages but holds triton==3.6.0 (the GPU machines')."""
    venv = os.environ.get("SSGAN_FAST_TRITON36_VENV", "/tmp/ssgan-triton36")
    py = os.path.join(venv, "bin", "python")
    probe = [py, "-c", "import triton; assert triton.__version__ == '3.6.0', triton.__version__"]
    if not os.path.exists(py) or subprocess.run(probe, capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "triton==3.6.0"], check=True)
    return py


def test_triton_kernels_compile_under_triton36():
    rc, log = _run(_triton36_python(), "check", "--ci", "--jobs", JOBS)
    assert "Triton 3.6.0" in log, log[-3000:]
    assert rc == 0, log[-6000:]


def test_cuda_kernels_have_no_spills_and_the_right_archs():
    C = pytest.importorskip("ssgan_fast._C")
    if not C.WITH_CUDA:
        pytest.skip("ssgan_fast._C was built without CUDA kernels (no nvcc here)")
    rc, log = _run(sys.executable, "cuda", "--check")
    assert rc == 0, log[-6000:]


def test_occupancy_rules():
    # 255 registers -> 256 / thread -> 8192 / warp -> 8 warps per SM -> 2 blocks of 4 warps: 8 / 64
    assert aot.occupancy(255, 0, 4, 90) == 0.125
    # 32 registers, 8 warps: 32 blocks by registers, 8 by threads (2048 / 256) -> 64 warps: full
    assert aot.occupancy(32, 0, 8, 90) == 1.0
    # shared memory bound: 100 KB + 1 KB reserved per block -> 2 blocks of 228 KB on sm_90, 1 on sm_80
    assert aot.occupancy(32, 100 * 1024, 4, 90) == 2 * 4 / 64
    assert aot.occupancy(32, 100 * 1024, 4, 80) == 1 * 4 / 64


# the same op calls, on CPU tensors under the interpreter and on meta tensors in the dry walk
_WORK = """
import torch
from ssgan_fast.ops import aam_cross_entropy, cosine_softmax, cutmix, mask_embed
g = torch.Generator().manual_seed(0)
x = torch.randn(6, 32, generator=g).to(dev).requires_grad_()
p = torch.randn(5, 32, generator=g).to(dev).requires_grad_()
cosine_softmax(x, p, 0.5).square().sum().backward()
y = torch.randn(1, 32, generator=g).to(dev).requires_grad_()  # B = 1: Triton would make it a constant
cosine_softmax(y, p, 0.5).square().sum().backward()
w = torch.randn(300, 32, generator=g).to(dev).requires_grad_()
aam_cross_entropy(x, w, torch.zeros(6, dtype=torch.long).to(dev), reduction="none").sum().backward()
a = torch.randn(2, 3, 16, 16, generator=g).to(dev).requires_grad_()
boxes = torch.tensor([[0, 0, 8, 8], [2, 2, 16, 16]], dtype=torch.int32).to(dev)
cutmix(a, a.detach().clone(), boxes)[0].sum().backward()
f = torch.randn(2, 8, 8, 8, generator=g).to(dev).requires_grad_()
mask_embed(f, torch.randn(2, 1, 4, 4, generator=g).to(dev).requires_grad_()).sum().backward()
"""


def test_dry_walk_records_what_real_launches_record(use_backend, tmp_path):
    """A real interpreter launch (CPU tensors, this process) and the dry walk on meta tensors in a process
    without the interpreter (the kernels are real JITFunctions there, as on a GPU) record the same
    specialisations: what the suite records and what the enumeration walks is what a GPU compiles."""
    import json

    from ssgan_fast.kernels._launch import recording
    use_backend("triton")
    with recording() as real:
        exec(_WORK, {"dev": "cpu"})
    code = ("import json, sys\nfrom ssgan_fast.kernels._launch import recording\n"
            "with recording(dry=True) as rec:\n    exec(sys.argv[1], {'dev': 'meta'})\n"
            "print(json.dumps(sorted(rec.specs)))")
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "SSGAN_FAST_BACKEND")}
    out = subprocess.run([sys.executable, "-c", code, _WORK], env=env, cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    dry = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert real.specs and set(real.specs) == dry, (sorted(set(real.specs) ^ dry)[:2])
    kernels = {s["kernel"].rsplit(".", 1)[1] for s in real.specs.values()}
    assert {"_fused_fwd_kernel", "_fused_bwd_kernel", "_fwd_rows_kernel", "_bwd_rows_kernel", "_cutmix_kernel",
            "_mask_embed_fwd_kernel", "_mask_embed_bwd_kernel"} <= kernels
    assert all(s["signature"]["B"] == "i32" for s in real.specs.values() if "fused" in s["kernel"])  # not specialised


def test_table_is_current_and_complete():
    """The committed table covers this Triton version, its sources hash is current, and every entry
    compiled (a failing entry would be a kernel that cannot run on a GPU)."""
    table = aot.load_table(triton.__version__)
    assert table["sources_sha256"] == aot.sources_hash(), "run `make aot-table`"
    bad = [(aot.short(r["kernel"]), a, r[a].get("error", "")[:200]) for r in table["specs"]
           for a in table["archs"] if not r[a]["ok"]]
    assert not bad, bad[:5]
    spills = [(aot.short(r["kernel"]), a, r["origin"], r[a]["spill_stores"]) for r in table["specs"]
              for a in table["archs"] if r[a]["spill_stores"] > aot.MAX_SPILL]
    assert not spills, f"{len(spills)} compile units spill more than {aot.MAX_SPILL} B, e.g. {spills[:3]}"


def test_device_comparison_flags_differences():
    """tools/aot.py device (run on a GPU machine by gpu_session.sh): a unit compiled there is compared
    with the table's column - registers and spills (ptxas and the driver's) and the occupancy from the
    device's limits."""
    lim = aot.SM_LIMITS[90]
    want = {"ok": True, "regs": 40, "spill_stores": 0, "occupancy": aot.occupancy(40, 1024, 4, 90)}
    rows = {"k": {"kernel": "ssgan_fast.kernels.m.kern", "origin": "case", "options": {"num_warps": 4}, "sm_90": want}}
    got = {"ok": True, "regs": 40, "spill_stores": 0, "spill_loads": 0, "stack": 0, "shared": 1024,
           "driver_regs": 40, "driver_spills": 0}
    assert aot.compare_with_table(rows, {"k": dict(got)}, 90, lim)[1] == []
    for change in ({"regs": 48, "driver_regs": 48}, {"driver_regs": 64}, {"driver_spills": 2},
                   {"ok": False, "error": "CompilationError: boom"}):
        bad = aot.compare_with_table(rows, {"k": {**got, **change}}, 90, lim)[1]
        assert len(bad) == 1 and "m.kern" in bad[0], (change, bad)
    # a device with half the shared memory per SM: the occupancy differs from the table's
    small = {**lim, "smem": 4096}
    assert len(aot.compare_with_table(rows, {"k": dict(got)}, 90, small)[1]) == 1


def test_table_staleness_follows_the_code_not_the_comments():
    """A kernel file's recorded hash covers its code: a docstring or comment edit keeps the table current,
    any change to the code makes it stale."""
    src = 'def f(x):\n    """doc"""\n    return x + 1  # c\n\n\nclass K:\n    """k"""\n    n = 2\n'
    same = src.replace("doc", "other doc").replace("# c", "# d").replace('"""k"""', '"""kk"""')
    assert aot._code_only(src) == aot._code_only(same)
    for changed in (src.replace("x + 1", "x + 2"), src.replace("n = 2", "n = 3"), src + "y = 1\n"):
        assert aot._code_only(src) != aot._code_only(changed)

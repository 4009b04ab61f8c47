"""Ahead-of-time compile check of every Triton kernel for sm_90 and sm_80 (no GPU needed).

    python tools/aot.py table [--jobs N] [--launches FILE ...]   the full sweep: writes the committed
                                                                 table tools/aot_tables/triton-<ver>.json
    python tools/aot.py check [--jobs N] [--ci]                  compile and compare with the table
    python tools/aot.py list                                     the specialisations, counted per kernel
    python tools/aot.py cuda [--check]                           ptxas resource usage of the built _C's CUDA
                                                                 kernels: writes (or checks)
                                                                 tools/aot_tables/cuda.json
    python tools/aot.py summary                                  tools/aot_tables/README.md from the tables
    python tools/aot.py device [--out FILE]                      on a GPU machine: compile the table's kernels
                                                                 there and compare registers, spills and occupancy

Specialisations come from walking the ops' Triton host code on meta tensors (no memory, any shape;
``ssgan_fast.kernels._launch.recording(dry=True)``) over the papers' shapes, the benchmarks' shapes and
every dispatch branch, plus the launches the CPU test suite made under the interpreter (``--launches``
files written by ``pytest --triton-launches FILE``). Each is Triton's own (signature, constexprs,
alignment attributes, num_warps / num_stages), one per autotune config: what a GPU compiles. Each is
compiled with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))``; registers and
spills come from the bundled ptxas's ``-v`` log, shared memory from the compiled metadata, checked
against the per-block limits. Run under the interpreter's absence: this script unsets TRITON_INTERPRET.

The CUDA kernels of ``ssgan_fast._C`` are read back from the built library with ``cuobjdump``
(registers, stack, shared and local memory per kernel and architecture; the architectures and PTX
it holds); any stack frame or local memory - spills - in a kernel fails the check.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATIC = os.path.join(ROOT, "tools", "aot_tables")
ARCHS = (90, 80)
# per-block shared memory limits (opt-in maximum): 227 KB on sm_90, 163 KB on sm_80
SMEM_LIMIT = {90: 232448, 80: 166912}
# spill stores a compile unit may have (one or a few registers, outside the hot loops): more fails the check
MAX_SPILL = 16
# per-SM limits for the occupancy column: registers, threads, shared memory, blocks, warps
SM_LIMITS = {90: dict(regs=65536, threads=2048, smem=233472, blocks=32, warps=64),
             80: dict(regs=65536, threads=2048, smem=167936, blocks=32, warps=64)}


def _code_only(text: str) -> str:
    """The Python code of a kernel file without its comments and docstrings (ast round trip): what the
    compiled kernels depend on. Editing a docstring or comment does not make the table stale."""
    import ast

    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def kernel_sources() -> dict:
    """sha256 of every Triton kernel file's code (comments and docstrings left out): the table is stale
    when the code of one changes."""
    out = {}
    kdir = os.path.join(ROOT, "kernels")
    for name in sorted(os.listdir(kdir)):
        if name.endswith(".py"):
            with open(os.path.join(kdir, name), encoding="utf-8") as f:
                out[f"kernels/{name}"] = hashlib.sha256(_code_only(f.read()).encode()).hexdigest()
    return out


def sources_hash() -> str:
    return hashlib.sha256(json.dumps(kernel_sources(), sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------- enumeration

def _cases(full: bool):
    """(label, thunk) pairs that walk every Triton dispatch branch of the ops on meta tensors: each op
    family's own aot_cases (ssgan_fast/ops/<family>.py), the families from the index ssgan_fast.ops.FAMILIES."""
    import importlib

    from ssgan_fast.ops import FAMILIES
    for family in FAMILIES:
        cases = getattr(importlib.import_module(f"ssgan_fast.ops.{family}"), "aot_cases", None)
        if cases is not None:
            yield from cases(full)


def enumerate_specs(full: bool = True, launches=()):
    """{key: spec} of every GPU compile unit, from the dry walk and the recorded test-suite launches."""
    import torch
    from ssgan_fast.kernels._launch import Spec, recording
    with recording(dry=True) as rec:
        for label, fn in _cases(full):
            rec.label = label
            with torch.autograd.set_grad_enabled(True):
                fn()
    specs = dict(rec.specs)
    for path in launches:
        with open(path) as f:
            for line in f:
                s = Spec(json.loads(line))
                specs.setdefault(s.key, s)
    return specs


# ------------------------------------------------------------------------------- compiling

_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def _jit_function(qualname: str):
    import importlib

    from triton.runtime.jit import JITFunction
    mod, name = qualname.rsplit(".", 1)
    fn = getattr(importlib.import_module(mod), name)
    if not isinstance(fn, JITFunction):
        raise TypeError(f"{qualname} is not a JITFunction (is TRITON_INTERPRET set?)")
    return fn


def occupancy(regs: int, smem: int, num_warps: int, arch: int, limits: dict | None = None) -> float:
    """Fraction of the SM's warp slots one kernel can fill (CUDA occupancy calculator rules:
    registers per thread rounded up to 8, allocated per warp in 256-register units; shared memory
    per block rounded up to 128 bytes plus 1 KB reserved)."""
    lim = limits or SM_LIMITS[arch]
    threads = num_warps * 32
    by_threads = lim["threads"] // threads
    regs_warp = ((max(regs, 1) + 7) // 8 * 8 * 32 + 255) // 256 * 256
    by_regs = (lim["regs"] // regs_warp) // num_warps
    by_smem = lim["smem"] // ((smem + 127) // 128 * 128 + 1024) if smem else lim["blocks"]
    blocks = max(0, min(by_threads, by_regs, by_smem, lim["blocks"]))
    return round(blocks * num_warps / lim["warps"], 4)


def compile_one(spec: dict, arch: int, driver: bool = False) -> dict:
    """Compile one spec for sm_<arch>: {ok, error, regs, spill_stores, spill_loads, stack, shared, occupancy, s};
    driver=True (on a GPU) also loads it and reads the driver's registers / spills (n_regs, n_spills)."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    t0 = time.time()
    out = {"ok": False}
    try:
        fn = _jit_function(spec["kernel"])
        signature = {n: spec["signature"][n] for n in fn.arg_names}  # in the kernel's argument order
        src = ASTSource(fn, signature, {tuple(k): v for k, v in spec["constexprs"]},
                        {tuple(k): [tuple(a) for a in v] for k, v in spec["attrs"]})
        log = io.StringIO()
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True  # a cached kernel would not run ptxas (no -v log)
        with contextlib.redirect_stdout(log):
            k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=dict(spec["options"]))
        text = log.getvalue()
        regs = _PTXAS_REGS.search(text)
        spill = _PTXAS_SPILL.search(text)
        shared = int(k.metadata.shared)
        out.update(ok=True, regs=int(regs.group(1)) if regs else None,
                   stack=int(spill.group(1)) if spill else None,
                   spill_stores=int(spill.group(2)) if spill else None,
                   spill_loads=int(spill.group(3)) if spill else None, shared=shared)
        if out["regs"] is None:
            raise RuntimeError(f"no register count in the ptxas log: {text[:400]!r}")
        out["occupancy"] = occupancy(out["regs"], shared, spec["options"]["num_warps"], arch)
        if driver:
            k._init_handles()
            out.update(driver_regs=int(k.n_regs), driver_spills=int(k.n_spills))
        if shared > SMEM_LIMIT[arch]:
            out.update(ok=False, error=f"shared memory {shared} B > the sm_{arch} per-block limit {SMEM_LIMIT[arch]} B")
        elif (out["spill_stores"] or 0) > MAX_SPILL:
            out.update(ok=False, error=f"{out['spill_stores']} B of register spills (more than {MAX_SPILL} B)")
    except Exception as e:
        msg = f"{type(e).__name__}: {e}"
        out["error"] = msg[:2000]
    out["s"] = round(time.time() - t0, 2)
    return out


def _worker_init():
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, ROOT)


def compile_all(units, jobs: int, progress=True, driver=False):
    """units: [(key, spec, arch)] -> {(key, arch): result}, in `jobs` processes (spawned when a GPU
    driver is used: CUDA does not survive fork)."""
    import multiprocessing
    results = {}
    t0 = time.time()
    ctx = multiprocessing.get_context("spawn" if driver else "fork")
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init) as ex:
        futs = {ex.submit(compile_one, dict(spec), arch, driver): (key, arch) for key, spec, arch in units}
        for i, fut in enumerate(cf.as_completed(futs), 1):
            results[futs[fut]] = fut.result()
            if progress and (i % 50 == 0 or i == len(futs)):
                print(f"  compiled {i}/{len(futs)} in {time.time() - t0:.0f} s", flush=True)
    return results


# ------------------------------------------------------------------------------- table

def table_path(version: str) -> str:
    return os.path.join(STATIC, f"triton-{version}.json")


def short(kernel: str) -> str:
    return kernel.rsplit(".", 2)[-2] + "." + kernel.rsplit(".", 1)[-1]


def build_table(specs: dict, results: dict) -> dict:
    import triton
    rows = []
    for key, spec in sorted(specs.items(), key=lambda kv: (kv[1]["kernel"], kv[0])):
        row = {k: spec[k] for k in ("kernel", "signature", "constexprs", "attrs", "options", "tuned", "origin")}
        for arch in ARCHS:
            row[f"sm_{arch}"] = results[(key, arch)]
        rows.append(row)
    return {"triton": triton.__version__, "sources_sha256": sources_hash(), "sources": kernel_sources(),
            "archs": [f"sm_{a}" for a in ARCHS], "smem_limit": {f"sm_{a}": SMEM_LIMIT[a] for a in ARCHS},
            "count": len(rows), "specs": rows}


def summarise(table: dict) -> list[str]:
    """Per kernel and arch: compile units, failures, max registers, max spill stores, max shared memory,
    min occupancy."""
    per = {}
    for row in table["specs"]:
        for arch in ARCHS:
            r = row[f"sm_{arch}"]
            d = per.setdefault((short(row["kernel"]), arch), dict(n=0, fail=0, regs=0, spill=0, nspill=0, smem=0,
                                                                  occ=1.0))
            d["n"] += 1
            if not r["ok"]:
                d["fail"] += 1
                continue
            d["regs"] = max(d["regs"], r["regs"])
            d["spill"] = max(d["spill"], r["spill_stores"] or 0)
            d["nspill"] += int((r["spill_stores"] or 0) > 0)
            d["smem"] = max(d["smem"], r["shared"])
            d["occ"] = min(d["occ"], r["occupancy"])
    lines = ["| kernel | arch | units | failed | max regs | max spill stores (B) | units with any spill | "
             "max smem (B) | min occupancy |", "|---|---|---|---|---|---|---|---|---|"]
    for (k, arch), d in sorted(per.items()):
        lines.append(f"| {k} | sm_{arch} | {d['n']} | {d['fail']} | {d['regs']} | {d['spill']} | {d['nspill']} | "
                     f"{d['smem']} | {d['occ']:.2f} |")
    return lines


def dumps_table(table: dict) -> str:
    """The table as JSON with one line per spec (compact rows; the header fields one per line): about 1 / 180
    of the lines of an indented dump, and a diff still shows which spec changed."""
    head = {k: v for k, v in table.items() if k != "specs"}
    lines = ["{"] + [f"{json.dumps(k)}: {json.dumps(head[k], sort_keys=True)}," for k in sorted(head)]
    rows = [json.dumps(r, sort_keys=True, separators=(",", ":")) for r in table["specs"]]
    lines += ['"specs": ['] + [r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)] + ["]", "}"]
    return "\n".join(lines) + "\n"


def write_table(table: dict):
    os.makedirs(STATIC, exist_ok=True)
    path = table_path(table["triton"])
    with open(path, "w") as f:
        f.write(dumps_table(table))
    return path


def load_table(version: str) -> dict:
    path = table_path(version)
    if not os.path.exists(path):
        raise SystemExit(f"no AOT table for Triton {version} at {path}: run `make aot-table`")
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------------------- CLI

def ci_units(specs: dict, rows: dict | None = None):
    """The CI subset. With the table current (its kernel-source hash is the sources', for this Triton
    version, and it holds every spec: `rows`, its rows by spec key), every specialisation's result is
    already the table's, made from the same sources, Triton and ptxas: CI compiles each kernel's first
    specialisation and its most register-hungry one, and compares them with the table - the toolchain
    still reproduces it (the full sweep: `make aot-table`, or `tools/aot.py check` without --ci).
    Otherwise every distinct specialisation once, deduplicated on what decides whether it compiles
    (kernel, argument types, constexprs, warps / stages)."""
    if rows is not None:
        per = {}
        for key, spec in sorted(specs.items()):
            regs = max((rows.get(key, {}).get(f"sm_{a}") or {}).get("regs") or 0 for a in ARCHS)
            first, most = per.get(spec["kernel"], (key, (regs, key)))
            per[spec["kernel"]] = (first, max(most, (regs, key)))
        return sorted({k for first, (_, most) in per.values() for k in (first, most)})
    seen, keys = set(), []
    for key, spec in sorted(specs.items()):
        d = json.dumps([spec["kernel"], spec["signature"], spec["constexprs"], spec["options"]], sort_keys=True)
        if d not in seen:
            seen.add(d)
            keys.append(key)
    return keys


# ------------------------------------------------------------------------------- CUDA kernels (_C)

CUDA_TABLE = os.path.join(STATIC, "cuda.json")
CUDA_ARCHS_WANTED = ("sm_80", "sm_90")  # cubins; plus compute_90 PTX


def csrc_hash() -> str:
    """What the CUDA kernels are compiled from: csrc/'s .cu, .cuh and .h files (not csrc/emu/, the CPU
    emulation the tests build them against)."""
    import glob

    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tools.prebuilt import files_hash
    return files_hash(sorted(p for p in glob.glob(os.path.join(ROOT, "csrc", "**", "*"), recursive=True)
                             if p.endswith((".cu", ".cuh", ".h"))
                             and not p.startswith(os.path.join(ROOT, "csrc", "emu", ""))))


def cuobjdump() -> str:
    """Triton bundles cuobjdump (the toolkit here has none)."""
    try:
        import triton
        p = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        if os.path.exists(p):
            return p
    except ImportError:
        pass
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    for p in (shutil.which("cuobjdump"), os.path.join(home, "bin", "cuobjdump")):
        if p and os.path.exists(p):
            return p
    raise SystemExit("no cuobjdump found (Triton's bundled one, PATH or $CUDA_HOME/bin)")


def _demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    pretty = []
    for full in out.splitlines():
        full = re.sub(r"ssgan_fast::|\(anonymous namespace\)::", "", full)
        pretty.append(full.split("(")[0].removeprefix("void "))  # drop the argument list
    return pretty


def cuda_resources(so: str) -> dict:
    """{elf: [archs], ptx: [archs], kernels: [{name, arch, regs, stack, shared, local}]} of a built _C."""
    tool = cuobjdump()
    elf = subprocess.run([tool, "--list-elf", so], capture_output=True, text=True).stdout
    ptx = subprocess.run([tool, "--list-ptx", so], capture_output=True, text=True).stdout
    res = subprocess.run([tool, "--dump-resource-usage", so], capture_output=True, text=True, check=True).stdout
    kernels, arch, mangled = [], None, []
    for line in res.splitlines():
        m = re.match(r"\s*arch = (sm_\d+)", line)
        if m:
            arch = m.group(1)
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            mangled.append(m.group(1))
            continue
        m = re.match(r"\s*REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", line)
        if m and mangled and len(kernels) < len(mangled):
            kernels.append(dict(arch=arch, regs=int(m.group(1)), stack=int(m.group(2)), shared=int(m.group(3)),
                                local=int(m.group(4))))
    for k, name in zip(kernels, _demangle(mangled), strict=False):
        k["name"] = name
    return {"elf": sorted(set(re.findall(r"\.(sm_\d+)\.cubin", elf))),
            "ptx": sorted(set(re.findall(r"\.(sm_\d+)\.ptx", ptx))),
            "kernels": sorted(kernels, key=lambda k: (k["name"], k["arch"]))}


def built_extension():
    import ssgan_fast._C as C
    return C


def cuda_main(check: bool) -> int:
    C = built_extension()
    if not C.WITH_CUDA:
        print("ssgan_fast._C was built without CUDA kernels: nothing to check")
        return 1 if check else 0
    info = cuda_resources(C.__file__)
    problems = []
    for arch in CUDA_ARCHS_WANTED:
        if arch not in info["elf"]:
            problems.append(f"_C holds no {arch} code (it has {info['elf']}; built for {C.CUDA_ARCHS!r})")
    if "sm_90" not in info["ptx"]:
        problems.append(f"_C holds no compute_90 PTX for newer GPUs (PTX: {info['ptx']})")
    for k in info["kernels"]:
        if k["stack"] or k["local"]:
            problems.append(f"{k['name']} on {k['arch']} uses {k['stack']} B of stack / {k['local']} B of local "
                            "memory (register spills)")
    table = {"nvcc_cuda": C.CUDA_VERSION, "csrc_sha256": csrc_hash(), **info}
    if not check:
        os.makedirs(STATIC, exist_ok=True)
        with open(CUDA_TABLE, "w") as f:
            json.dump(table, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"wrote {CUDA_TABLE}: {len(info['kernels'])} kernels, cubins {info['elf']}, PTX {info['ptx']}")
    else:
        with open(CUDA_TABLE) as f:
            want = json.load(f)
        if want["csrc_sha256"] != table["csrc_sha256"]:
            problems.append("tools/aot_tables/cuda.json is stale (csrc/ changed): run `make aot-table`")
        have = {(k["name"], k["arch"]): k for k in info["kernels"]}
        for k in want["kernels"]:
            got = have.get((k["name"], k["arch"]))
            if got is None:
                problems.append(f"{k['name']} ({k['arch']}) is in the table but not in the built _C")
            elif got["regs"] != k["regs"] and want["nvcc_cuda"] == table["nvcc_cuda"]:
                problems.append(f"{k['name']} ({k['arch']}): {got['regs']} registers, the table says {k['regs']}")
    width = max(len(k["name"]) for k in info["kernels"])
    for k in info["kernels"]:
        print(f"{k['name']:{width}s} {k['arch']}  regs {k['regs']:3d}  stack {k['stack']}  local {k['local']}  "
              f"shared {k['shared']}")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


# ------------------------------------------------------------------------------- on a GPU machine

def device_limits() -> dict:
    import torch
    p = torch.cuda.get_device_properties(0)
    threads = p.max_threads_per_multi_processor
    return dict(regs=p.regs_per_multiprocessor, threads=threads, smem=p.shared_memory_per_multiprocessor,
                blocks=32, warps=threads // 32)


def compare_with_table(rows: dict, results: dict, arch: int, limits: dict) -> tuple[list, list]:
    """(records, mismatches): each compiled unit's registers / spills (ptxas log and driver) and the
    occupancy from the device's limits, against the table's sm_<arch> column."""
    records, bad = [], []
    for key, r in results.items():
        row = rows[key]
        want = row[f"sm_{arch}"]
        rec = {"kernel": short(row["kernel"]), "origin": row.get("origin", ""), "table": want, "device": r}
        if r.get("ok"):
            r["occupancy_device"] = occupancy(r["regs"], r["shared"], row["options"]["num_warps"], arch, limits)
            got = (r["regs"], r["spill_stores"], r["occupancy_device"])
            exp = (want.get("regs"), want.get("spill_stores"), want.get("occupancy"))
            # the driver's n_spills is the local memory per thread in 4-byte words: ptxas's stack frame / 4
            if got != exp or r.get("driver_regs", r["regs"]) != r["regs"] or \
                    r.get("driver_spills", 0) != (r["stack"] or 0) // 4:
                bad.append(f"{rec['kernel']}: device regs/spills/occupancy {got} (driver {r.get('driver_regs')}/"
                           f"{r.get('driver_spills')}), table {exp}  [{rec['origin']}]")
        else:
            bad.append(f"{rec['kernel']}: {r.get('error', '')[:300]}  [{rec['origin']}]")
        records.append(rec)
    return records, bad


def device_main(a) -> int:
    import torch
    import triton
    if not torch.cuda.is_available():
        print("tools/aot.py device: no CUDA device here (the static check is `tools/aot.py check`)")
        return 2
    major, minor = torch.cuda.get_device_capability()
    arch = major * 10 + minor
    table = load_table(triton.__version__)
    if f"sm_{arch}" not in table["archs"]:
        print(f"the table has no sm_{arch} column ({table['archs']})")
        return 2
    from ssgan_fast.kernels._launch import Spec
    rows = {Spec(r).key: r for r in table["specs"]}
    t0 = time.time()
    results = compile_all([(k, r, arch) for k, r in rows.items()], a.jobs, driver=True)
    limits = device_limits()
    records, bad = compare_with_table(rows, {k: v for (k, _), v in results.items()}, arch, limits)
    print(f"{torch.cuda.get_device_name()} sm_{arch}, Triton {triton.__version__}: {len(results)} units compiled and "
          f"loaded in {time.time() - t0:.0f} s; {len(bad)} differ from the table (limits {limits})")
    for b in bad[:40]:
        print("DIFF:", b)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "arch": f"sm_{arch}", "triton": triton.__version__,
                       "limits": limits, "differ": len(bad), "units": records}, f, indent=0)
    return 1 if bad else 0


def write_summary() -> str:
    """tools/aot_tables/README.md: per kernel and Triton version, and the CUDA kernels."""
    import glob
    lines = ["# Static GPU checks (no GPU needed): `make aot-table`", "",
             "Every Triton specialisation the ops launch (papers' and benchmarks' shapes, every dispatch branch, every",
             "autotune config, the CPU test suite's launches), compiled ahead of time for sm_90 and sm_80 with",
             "`triton.compile(ASTSource, target=GPUTarget('cuda', arch, 32))`: registers and spills from the bundled",
             "ptxas's `-v` log, shared memory from the compiled metadata, occupancy from the SM limits (warp slots",
             "filled). Full records: `triton-<version>.json`; the CUDA kernels of `ssgan_fast._C`: `cuda.json`.", ""]
    for path in sorted(glob.glob(os.path.join(STATIC, "triton-*.json"))):
        with open(path) as f:
            t = json.load(f)
        lines += [f"## Triton {t['triton']}: {t['count']} specialisations x {len(t['archs'])} architectures", ""]
        lines += summarise(t) + [""]
    if os.path.exists(CUDA_TABLE):
        with open(CUDA_TABLE) as f:
            c = json.load(f)
        lines += [f"## CUDA kernels of ssgan_fast._C (nvcc {c['nvcc_cuda']}): cubins {', '.join(c['elf'])}; PTX "
                  f"{', '.join('compute_' + a[3:] for a in c['ptx'])}", "",
                  "| kernel | arch | registers | stack (B) | local (B) | static shared (B) |",
                  "|---|---|---|---|---|---|"]
        for k in c["kernels"]:
            lines.append(f"| `{k['name']}` | {k['arch']} | {k['regs']} | {k['stack']} | {k['local']} | {k['shared']} |")
        lines.append("")
    path = os.path.join(STATIC, "README.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("table", "check", "list", "cuda", "device", "summary"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--launches", nargs="*", default=[], help="JSONL files of recorded test-suite launches")
    ap.add_argument("--ci", action="store_true", help="check: compile the deduplicated CI subset only")
    ap.add_argument("--quick", action="store_true", help="a small enumeration (development)")
    ap.add_argument("--check", action="store_true", help="cuda: compare with the committed table instead of writing it")
    ap.add_argument("--out", default=None, help="device: write the comparison (JSON) here")
    a = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    if a.cmd == "cuda":
        return cuda_main(a.check)
    if a.cmd == "device":
        return device_main(a)
    if a.cmd == "summary":
        print("wrote", write_summary())
        return 0
    import triton
    t0 = time.time()
    specs = enumerate_specs(full=not a.quick, launches=a.launches)
    per = {}
    for s in specs.values():
        per[short(s["kernel"])] = per.get(short(s["kernel"]), 0) + 1
    print(f"Triton {triton.__version__}: {len(specs)} specialisations (incl. autotune configs) in "
          f"{time.time() - t0:.1f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())), flush=True)
    if a.cmd == "list":
        return 0
    if a.cmd == "table":
        units = [(k, s, arch) for k, s in specs.items() for arch in ARCHS]
        results = compile_all(units, a.jobs)
        table = build_table(specs, results)
        path = write_table(table)
        print("\n".join(summarise(table)))
        print(f"wrote {path} ({table['count']} specialisations x {len(ARCHS)} archs) in {time.time() - t0:.0f} s")
        return 0 if all(r["ok"] for r in results.values()) else 1
    return check(specs, a, t0)


def check(specs: dict, a, t0: float) -> int:
    import triton
    table = load_table(triton.__version__)
    problems = []
    if table["sources_sha256"] != sources_hash():
        changed = [k for k, v in kernel_sources().items() if table["sources"].get(k) != v]
        problems.append(f"the AOT table is stale: kernel sources changed since it was made ({', '.join(changed)}); "
                        "run `make aot-table` and commit tools/aot_tables/")
    from ssgan_fast.kernels._launch import Spec
    rows = {Spec(row).key: row for row in table["specs"]}
    missing = [k for k in specs if k not in rows]
    if missing:
        s = specs[missing[0]]
        problems.append(f"{len(missing)} specialisation(s) the ops launch are not in the table, e.g. "
                        f"{short(s['kernel'])} from '{s.get('origin', '')}': run `make aot-table`")
    keys = ci_units(specs, None if problems else rows) if a.ci else list(specs)
    units = [(k, specs[k], arch) for k in keys for arch in ARCHS]
    print(f"compiling {len(units)} units ({len(keys)} specialisations x {len(ARCHS)} archs)", flush=True)
    results = compile_all(units, a.jobs)
    for (key, arch), r in sorted(results.items(), key=lambda kv: kv[0]):
        name = short(specs[key]["kernel"])
        if not r["ok"]:
            problems.append(f"{name} sm_{arch} ({specs[key].get('origin', '')}): {r['error'][:600]}")
            continue
        want = rows.get(key, {}).get(f"sm_{arch}")
        if want and want.get("ok") and (want["regs"], want["spill_stores"]) != (r["regs"], r["spill_stores"]):
            problems.append(f"{name} sm_{arch}: {r['regs']} registers / {r['spill_stores']} B spilled, the table says "
                            f"{want['regs']} / {want['spill_stores']}: rerun `make aot-table`")
    ok = sum(r["ok"] for r in results.values())
    print(f"Triton {triton.__version__}: {ok}/{len(results)} compiled; {len(problems)} problem(s) in "
          f"{time.time() - t0:.0f} s")
    for p in problems[:40]:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # compile real GPU code: Triton decides at import
    sys.exit(main())

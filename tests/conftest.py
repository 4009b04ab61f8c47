import functools
import json
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Triton kernels run on CPU tensors through the interpreter when there is no GPU. Must be set
# before Triton is imported; on a GPU machine the kernels are compiled as usual.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_addoption(parser):
    parser.addoption("--triton-launches", metavar="FILE", default=None,
                     help="write the GPU specialisation of every Triton launch (JSON lines) for tools/aot.py")


# Every Triton launch the suite makes (under the interpreter) must be a specialisation that the
# ahead-of-time table compiled for sm_90 / sm_80 (tools/aot_tables/triton-<version>.json).
_RECORDER = None


def pytest_sessionstart(session):
    global _RECORDER
    try:
        from ssgan_fast.kernels import _launch
    except Exception as e:  # no Triton: nothing is launched
        import importlib.util
        if importlib.util.find_spec("triton") is not None:  # Triton is there: the package is broken, say so
            rep = session.config.pluginmanager.get_plugin("terminalreporter")
            if rep:
                rep.write_line(f"note: ssgan_fast.kernels did not import ({type(e).__name__}: {e}); the suite's "
                               "Triton launches are not checked against the AOT table", yellow=True)
        return
    _RECORDER = _launch.Recorder()
    _launch.set_recorder(_RECORDER)


def pytest_runtest_setup(item):
    if _RECORDER is not None:
        _RECORDER.label = item.nodeid


def _aot_table_keys():
    import triton
    from ssgan_fast.kernels._launch import Spec
    path = os.path.join(ROOT, "tools", "aot_tables", f"triton-{triton.__version__}.json")
    if not os.path.exists(path):
        return None, path
    with open(path) as f:
        return {Spec(r).key for r in json.load(f)["specs"]}, path


def pytest_sessionfinish(session, exitstatus):
    if _RECORDER is None:
        return
    from ssgan_fast.kernels import _launch
    _launch.set_recorder(None)
    out = session.config.getoption("--triton-launches")
    if out:
        _launch.write_specs(_RECORDER.specs.values(), out)
    if not _RECORDER.specs or os.environ.get("SSGAN_FAST_AOT_COVERAGE") == "0":
        return
    keys, path = _aot_table_keys()
    rep = session.config.pluginmanager.get_plugin("terminalreporter")
    if keys is None:
        if rep:
            rep.write_line(f"note: no AOT table {os.path.relpath(path, ROOT)} for this Triton version: "
                           "the suite's Triton launches are not checked against one")
        return
    missing = [s for k, s in _RECORDER.specs.items() if k not in keys]
    if missing and not out:
        if rep:
            rep.write_line(f"FAILED: {len(missing)} Triton launch specialisation(s) of this run are not in "
                           f"{os.path.relpath(path, ROOT)} (never compiled for sm_90 / sm_80), e.g. "
                           f"{missing[0]['kernel']} from {missing[0]['origin'] or 'a test'}: "
                           "run `make aot-table` and commit tools/aot_tables/", red=True)
        session.exitstatus = 1


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip without a CUDA device; `slow` ones (the full real-data matrix) run only
    when asked for (pytest -m slow)."""
    no_gpu = pytest.mark.skip(reason="needs a CUDA device")
    not_asked = pytest.mark.skip(reason="slow: run with -m slow")
    slow_asked = "slow" in (config.getoption("-m") or "")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_gpu)
        if "slow" in item.keywords and not slow_asked:
            item.add_marker(not_asked)


@functools.cache
def cuda_emu():
    """ssgan_fast._C_emu, built once per session (tools/cuda_emu.py: incremental, build/cuda_emu/)."""
    from tools import cuda_emu as tool
    return tool.build()


@pytest.fixture
def use_backend(monkeypatch):
    """use_backend("cpp") forces SSGAN_FAST_BACKEND for the rest of the test; cuda_emu builds the CPU
    emulation of the CUDA kernels first (once)."""
    def _set(name):
        if name == "cuda_emu":
            cuda_emu()
        monkeypatch.setenv("SSGAN_FAST_BACKEND", name)
    return _set


@pytest.fixture
def private_caches(tmp_path, monkeypatch):
    """Weights and cached statistics in the test's own folders (nothing shared with other tests or the user)."""
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("SSGAN_FAST_CACHE", str(tmp_path / "stats"))


@pytest.fixture
def small_inception(monkeypatch):
    """The random-weight Inception (extractor inception-random) fed 75 px instead of FID's 299: the same
    code path at a sixteenth of the CPU time, for tests of the sides, the trainer and the CLIs. The 299 px
    network itself is checked against pytorch-fid in tests/metrics (which do not use this fixture)."""
    import ssgan_fast.evaluation as ev
    monkeypatch.setattr(ev, "_random_inception", functools.partial(ev._random_inception, input_size=75))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """The training CLI sets the process's intra-op threads (ssgan_fast._sys.pick_threads); tests that call
    it must not leave the rest of the suite on its choice."""
    import torch
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)

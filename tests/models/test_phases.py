"""Every model's train_step reads as its paper's algorithm: a few lines that call named phase methods
(`_d_phase`, `_c_phase`, `_g_phase`, ...), each at most MAX_LINES long."""
import inspect

import pytest

from ssgan_fast.models import base

MAX_LINES = 40


def _methods(cls):
    """(qualified name, function) of train_step and every _*_phase method that cls uses (its MRO within
    ssgan_fast.models)."""
    seen = {}
    for klass in cls.__mro__:
        if not klass.__module__.startswith("ssgan_fast.models"):
            continue
        for name, fn in vars(klass).items():
            if (name == "train_step" or (name.startswith("_") and name.endswith("_phase"))) and name not in seen:
                seen[name] = (f"{klass.__name__}.{name}", fn)
    return seen


def _problems(cls):
    methods = _methods(cls)
    if "train_step" not in methods:
        return ["no train_step"]
    step_src = inspect.getsource(methods["train_step"][1])
    phases = [n for n in methods if n != "train_step"]
    out = []
    if len(phases) < 2:
        out.append(f"train_step should call named phase methods, found {phases}")
    if not any(f"self.{n}" in step_src for n in phases):
        out.append(f"train_step calls none of its phases {phases}")
    for qual, fn in methods.values():
        lines = len(inspect.getsource(fn).splitlines())
        if lines > MAX_LINES:
            out.append(f"{qual} is {lines} lines (at most {MAX_LINES}): split it into named phases")
    return out


@pytest.mark.parametrize("name", sorted(base.MODELS))
def test_train_step_is_made_of_short_phases(name):
    assert _problems(base.MODELS[name]) == []


def test_the_check_catches_a_long_phase_and_a_monolithic_step(tmp_path, monkeypatch):
    body = "\n".join(f"        x += {i}" for i in range(MAX_LINES))
    src = ("from ssgan_fast.models.base import GANModel\n\n"
           "class Long(GANModel):\n"
           "    def train_step(self, batch, step, amp=None):\n        return self._d_phase() + self._g_phase()\n\n"
           "    def _d_phase(self):\n        return 1\n\n"
           f"    def _g_phase(self):\n        x = 0\n{body}\n        return x\n\n"
           "class Flat(GANModel):\n"
           "    def train_step(self, batch, step, amp=None):\n        return 1\n")
    (tmp_path / "ssgan_fast_models_fake.py").write_text(src)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    mod = importlib.import_module("ssgan_fast_models_fake")
    for cls in (mod.Long, mod.Flat):
        cls.__module__ = "ssgan_fast.models.fake"
    assert any("Long._g_phase is" in p for p in _problems(mod.Long))
    assert not any("_d_phase" in p for p in _problems(mod.Long))
    assert _problems(mod.Flat) and "named phase methods" in _problems(mod.Flat)[0]


@pytest.mark.parametrize("name", sorted(base.MODELS))
def test_phases_write_nothing_into_the_shared_draw(name):
    """The drawn batch namespace (`s`) is read-only after _draw: a phase hands what a later phase needs over
    as a return value (SphericGAN's G images to C, LCP-GAN's text features to G, CVAE-GAN's feature centres
    to the histories), never as a new attribute of `s`."""
    import re
    import sys
    src = inspect.getsource(sys.modules[base.MODELS[name].__module__])
    writes = re.findall(r"\bs\.(\w+)\s*=(?!=)", src)
    assert not writes, f"{name}: phases write s.{writes}"


@pytest.mark.parametrize("name", sorted(base.MODELS))
def test_models_step_only_through_the_shared_update(name):
    """Optimizer steps go through GANModel._optimize (zero, one backward, step each named optimizer): no model
    calls the precision's step / backward or an optimizer's zero_grad itself in a phase."""
    import re
    import sys
    src = inspect.getsource(sys.modules[base.MODELS[name].__module__])
    direct = re.findall(r"amp\.(?:step|backward)\(|_opts\[[^\]]+\]\.(?:zero_grad|step)\(", src)
    assert not direct, f"{name}: {direct}"

"""The drop-in examples run, agree with their baselines, and the diffs in docs/dropin.md are their real diffs."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
ACGAN = ["acgan_plain.py", "acgan_aam.py", "acgan_prototype.py", "acgan_cutmix.py"]
REPORT = re.compile(r"after (\d+) steps: D's classifier accuracy on real digits ([\d.]+), on G's samples ([\d.]+)")


def _run(script: str, *args: str) -> str:
    r = subprocess.run([sys.executable, str(EX / script), *args], capture_output=True, text=True, timeout=600,
                       cwd=str(EX))
    assert r.returncode == 0, f"{script} failed:\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.mark.parametrize("script", ACGAN)
def test_acgan_example_trains(script):
    out = _run(script, "--steps", "3", "--batch", "16")
    m = REPORT.search(out)
    assert m, out
    assert int(m.group(1)) == 3
    assert 0.0 <= float(m.group(2)) <= 1.0 and 0.0 <= float(m.group(3)) <= 1.0


def test_fid_examples_agree():
    fid = []
    for script in ("fid_numpy.py", "fid_feature_stats.py"):
        m = re.search(r"FID ([-\d.e+]+)", _run(script, "--noise", "0.7"))
        assert m
        fid.append(float(m.group(1)))
    assert fid[0] > 0
    assert fid[1] == pytest.approx(fid[0], rel=1e-6)


def _diffs():
    spec = importlib.util.spec_from_file_location("examples_diffs", EX / "diffs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_diffs_are_the_real_diffs():
    readme = (ROOT / "docs" / "dropin.md").read_text()
    blocks = re.findall(r"<!-- diff (\S+) (\S+) -->\n```diff\n(.*?)```\n", readme, re.S)
    assert {b for _, b, _ in blocks} == {"acgan_aam.py", "acgan_prototype.py", "acgan_cutmix.py",
                                         "fid_feature_stats.py"}
    diffs = _diffs()
    assert [(a, b) for a, b, _ in blocks] == diffs.PAIRS
    for a, b, text in blocks:
        assert text == diffs.unified(a, b), f"docs/dropin.md diff {a} -> {b} is stale: regenerate (examples/diffs.py)"

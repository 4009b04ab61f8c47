"""`python -m ssgan_fast.experiments backends`: fused vs reference ops, paired over seeds."""
import json
import os

import pytest

from ssgan_fast.experiments import main as exp_main


def test_backends_command_pairs_fused_and_reference(tmp_path, capsys):
    out = tmp_path / "bk"
    assert exp_main(["backends", "--seeds", "2", "--steps", "1", "--out", str(out),
                     "--set", "train.eval_samples_per_class=8"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["seeds"] == 2 and r["steps"] == 1 and len(r["runs"]["fused"]) == len(r["runs"]["ref"]) == 2
    for seed in range(2):  # each run trained with its seed and the backend it was given
        for which, backend in (("fused", "auto"), ("ref", "ref")):
            cfg = json.loads((out / f"sphericgan-{which}-s{seed}" / "config.json").read_text())
            assert cfg["train"]["seed"] == seed and cfg["train"]["steps"] == 1
            assert cfg["train"]["eval_samples_per_class"] == 8
            meta = json.loads((out / f"sphericgan-{which}-s{seed}" / "experiment.json").read_text())
            assert meta["backend"] == backend
    paired = r["paired"]
    assert set(paired) >= {"fid_clf", "cfid_clf", "ra"}  # SphericGAN's paper metrics, digits: classifier space
    for k, row in paired.items():  # one step in: the two backends agree to rounding
        f, ref = r["runs"]["fused"], r["runs"]["ref"]
        assert row["diff_mean"] == pytest.approx(sum(b[k] - a[k] for a, b in zip(f, ref, strict=False)) / 2)
        for a, b in zip(f, ref, strict=False):
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-2), k
    assert "wilcoxon" in capsys.readouterr().out
    # repeated with one more seed: the finished runs are reused, only the new seed trains
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
    assert exp_main(["backends", "--seeds", "3", "--steps", "1", "--out", str(out),
                     "--set", "train.eval_samples_per_class=8"]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    r3 = json.loads((out / "results.json").read_text())
    assert r3["runs"]["fused"][:2] == r["runs"]["fused"] and len(r3["runs"]["ref"]) == 3
    # other settings: trained again; without --steps each run trains the preset's (here --set) steps
    assert exp_main(["backends", "--seeds", "1", "--out", str(out),
                     "--set", "train.steps=2", "--set", "train.eval_samples_per_class=9"]) == 0
    first = out / "sphericgan-fused-s0" / "metrics.json"
    assert first.stat().st_mtime_ns > stamps[first]
    r = json.loads((out / "results.json").read_text())
    assert r["steps"] == 2 and "--steps" not in json.loads((first.parent / "experiment.json").read_text())["cmd"]


def test_backends_command_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        exp_main(["backends", "--model", "nosuchgan"])
    with pytest.raises(SystemExit):
        exp_main(["backends", "--seeds", "0"])


def test_backends_trace_compares_with_a_one_ulp_control(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SSGAN_FAST_BACKEND", "cpp")  # restored afterwards, whatever the arms set
    assert exp_main(["backends", "--trace", "3", "--out", str(tmp_path)]) == 0
    assert os.environ["SSGAN_FAST_BACKEND"] == "cpp"
    r = json.loads((tmp_path / "trace.json").read_text())
    assert r["steps"] == 3 and sorted(r["gaps"]) == ["1", "2", "3"]
    first = r["gaps"]["1"]
    assert 0 <= first["ref"] < 1e-4  # the first step's losses agree to rounding
    assert set(r["param_distance"]) == {"ref", "fused+1ulp"}
    assert 0 < r["param_distance"]["fused+1ulp"] < 1e-2  # the perturbation took, and stayed small
    assert "1 ulp vs fused" in capsys.readouterr().out

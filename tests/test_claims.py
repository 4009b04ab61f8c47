"""`python -m ssgan_fast.experiments claims`: each paper's claim, method against its baseline, on paired seeds."""
import json

import numpy as np
import pytest
from scipy import stats

from ssgan_fast.claims import CLAIMS, _tag, claim_arms, markdown_table, paired, verdict
from ssgan_fast.experiments import main as exp_main


def test_paired_statistics_on_known_values():
    a, b = np.array([10.0, 12.0, 11.0, 13.0, 9.0]), np.array([8.0, 9.5, 9.0, 10.0, 8.5])
    r = paired(a, b)
    assert r["base_mean"] == pytest.approx(11.0) and r["mean"] == pytest.approx(9.0)
    assert r["diff_mean"] == pytest.approx(-2.0) and r["diff_sd"] == pytest.approx(np.std(b - a, ddof=1))
    assert r["t_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert r["wilcoxon_p"] == pytest.approx(stats.wilcoxon(b, a).pvalue)
    # FID is lower-is-better: a significant drop is "better"; for GAN-test the same drop is "worse"
    assert verdict("fid_clf", r) == "better" and verdict("gan_test", r) == "worse"
    noisy = paired(a, a + np.array([1.0, -1.0, 0.5, -0.5, 0.1]))
    assert verdict("fid_clf", noisy) == "no difference shown"
    same = paired(a, a.copy())
    assert same["t_p"] is None and verdict("ra", same) == "no difference shown"
    one = paired(a[:1], b[:1])
    assert one["diff_sd"] == 0.0 and one["t_p"] is None


def test_every_claim_names_its_paper_baseline_and_metrics():
    for name, c in CLAIMS.items():
        assert c.baseline in c.arms and len(c.arms) >= 2, name
        assert c.metrics and c.paper and c.where, name
        assert set(c.quick) <= set(c.arms), name
        tags = [_tag(a) for a in c.arms]  # run folder names: one path part each ("w/o" made a sub-folder)
        assert len(set(tags)) == len(tags) and all("/" not in t and t for t in tags), (name, tags)
    assert {n for n, c in CLAIMS.items() if c.quick} == {"aam-acgan", "medgan"}
    assert CLAIMS["medgan"].arms["triplegan"][0] == "triplegan"
    for name, c in CLAIMS.items():  # the default set is the paper's rows; diagnostics only with --all-arms
        assert c.baseline not in c.further and set(c.further) <= set(c.arms)
        assert set(claim_arms(name)) == set(c.arms) - set(c.further)
        assert claim_arms(name, all_arms=True) == tuple(c.arms) and claim_arms(name, quick=True) == c.quick
    assert claim_arms("medgan") == ("triplegan", "medgan")


def test_claims_command_trains_paired_arms_and_writes_table_plots_and_grids(tmp_path, capsys):
    out = tmp_path / "claims"
    argv = ["claims", "--models", "medgan", "--seeds", "2", "--steps", "2", "--jobs", "2", "--out", str(out),
            "--set", "train.eval_samples_per_class=8", "--all-arms"]
    assert exp_main(argv) == 0
    r = json.loads((out / "claims.json").read_text())
    c = r["claims"]["medgan"]
    assert r["seeds"] == 2 and set(c["runs"]) == {"triplegan", "medgan", "medgan (baseline's settings)"}
    assert c["steps"] == [2] and r["all_arms"] and r["cpu_s"] > 0
    assert all(m["cpu_s"] > 0 for per_seed in c["runs"].values() for m in per_seed)  # each run's own CPU time
    for arm, model in (("triplegan", "triplegan"), ("medgan", "medgan"), ("medgan (baseline's settings)", "medgan")):
        for seed in range(2):  # each arm trained its own model with the seed, the --set and the budget
            cfg = json.loads((out / "medgan" / f"{_tag(arm)}-s{seed}" / "config.json").read_text())
            assert cfg["train"]["model"] == model and cfg["train"]["seed"] == seed and cfg["train"]["steps"] == 2
            assert cfg["train"]["eval_samples_per_class"] == 8 and cfg["train"]["eval_metrics"] == "is,fid,intra_fid"
    row = c["paired"]["medgan"]
    assert {"is_clf_mean", "fid_clf", "intra_fid_clf", "recognition_percent", "spread_ratio"} <= set(row)
    runs = c["runs"]
    for k, v in row.items():
        assert v["diff_mean"] == pytest.approx(np.mean([b[k] - a[k] for a, b in zip(runs["triplegan"], runs["medgan"],
                                                                                 strict=True)]))
    for png in ("claim-medgan.png", "claim-medgan-samples.png"):
        assert (out / png).stat().st_size > 1000
    text = capsys.readouterr().out
    assert "### medgan" in text and "| medgan | FID (clf space) |" in text
    assert markdown_table(r) in text
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("medgan/*/metrics.json")}
    assert exp_main(argv) == 0  # repeated: every finished run is reused
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


@pytest.mark.parametrize("argv", [["claims", "--models", "nosuchgan"], ["claims", "--seeds", "0"],
                                  ["claims", "--jobs", "0"], ["claims", "--models", "cvaegan", "--quick"],
                                  ["claims", "--quick", "--all-arms"]])
def test_claims_command_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit) as e:
        exp_main(argv)
    assert e.value.code == 2


def test_a_finished_run_is_reused_only_while_its_preset_still_resolves_to_it(tmp_path):
    """The reuse check compares the run's model settings with what its command resolves to now: an edited
    preset (here: a run trained with another s) retrains instead of reusing a run of another model."""
    import sys

    from ssgan_fast.claims import _same_settings
    from ssgan_fast.train import build_parser, resolve
    cmd = [sys.executable, "-m", "ssgan_fast.train", "--model", "aam-acgan", "--seed", "0", "--out", str(tmp_path),
           "--name", "r", "--set", "model.cls=aam"]
    now = resolve(build_parser().parse_args(cmd[3:])).model_cfg
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {**now, "extra_default": 1}}))
    assert _same_settings(run, cmd[3:])
    (run / "config.json").write_text(json.dumps({"model": {**now, "s": now["s"] + 1.0}}))
    assert not _same_settings(run, cmd[3:])
    assert not _same_settings(tmp_path / "missing", cmd[3:])

"""Every command line, walked with a table of bad values: exit 2, one line on stderr naming the problem,
no traceback (issue 35). SSGAN_FAST_DEBUG=1 keeps the traceback for bug reports."""
import json
import shutil

import pytest

from ssgan_fast.evaluate import main as evaluate_main
from ssgan_fast.experiments import main as experiments_main
from ssgan_fast.generate import main as generate_main
from ssgan_fast.train import main as train_main

CLIS = {"train": train_main, "evaluate": evaluate_main, "generate": generate_main, "experiments": experiments_main}
TINY = ["--size", "8", "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8",
        "--set", "model.latent_dim=8", "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200",
        "--batch", "4", "--no-progress", "--no-final-eval", "--sample-every", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny finished runs: sphericgan (the one resumed) and medgan (another model's checkpoint)."""
    d = tmp_path_factory.mktemp("cli_runs")
    assert train_main(TINY + ["--out", str(d), "--name", "a", "--steps", "1"]) == 0
    assert train_main(["--model", "medgan", "--size", "8", "--batch", "4", "--no-progress", "--no-final-eval",
                       "--sample-every", "0", "--out", str(d), "--name", "m", "--steps", "1"]) == 0
    bad_yaml = d / "bad.yaml"
    bad_yaml.write_text("train:\n  steps: 3\n model: [\n")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "exists.json").write_text("{}")
    for cls in ("a", "b"):  # a folder of only corrupt JPEGs
        (d / "corrupt" / cls).mkdir(parents=True)
        for i in range(3):
            (d / "corrupt" / cls / f"{i}.jpg").write_bytes(b"not a jpeg")
    return d


def _call(cli, argv, capsys):
    capsys.readouterr()
    try:
        code = CLIS[cli](argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# (cli, argv, a fragment of the one line); {d} is the runs folder of the fixture
CASES = [
    # train: flag types (int, float, choice, count, fraction, path)
    ("train", ["--steps", "abc"], "'abc' is not an integer"),
    ("train", ["--steps", "0"], "--steps"),
    ("train", ["--batch", "-4"], "must be >= 1"),
    ("train", ["--threads", "-1"], "--threads"),
    ("train", ["--threads", "two"], "'two' is not an integer"),
    ("train", ["--label-fraction", "1.5"], "in (0, 1]"),
    ("train", ["--label-fraction", "x"], "not a number"),
    ("train", ["--labels-per-class", "0"], ">= 1"),
    ("train", ["--max-bad-fraction", "2"], "in [0, 1]"),
    ("train", ["--ckpt-every", "-1"], ">= 0"),
    ("train", ["--amp", "fp8"], "invalid choice"),
    ("train", ["--model", "nosuchgan"], "invalid choice"),
    ("train", ["--nosuchflag"], "unrecognized"),
    ("train", ["--data", "nosuch"], "nosuch"),
    ("train", ["--data", "folder:/does/not/exist"], "does not exist"),
    ("train", ["--preset", "nosuch"], "no such preset"),
    ("train", ["--data", "folder:{d}/corrupt", "--labels-per-class", "1"], "6 of 6 images are corrupt"),
    # train: --set values, types and ranges
    ("train", ["--set", "train.steps=abc"], "steps must be a number"),
    ("train", ["--set", "train.batch_labeled=2.5"], "whole number"),
    ("train", ["--set", "train.log_every=0"], "log_every must be >= 1"),
    ("train", ["--set", "train.ema_decay=5"], "ema_decay must be in [0, 1)"),
    ("train", ["--set", "train.ckpt_every=-1"], "ckpt_every must be >= 0"),
    ("train", ["--set", "train.ema=maybe"], "ema must be true/false"),
    ("train", ["--set", "train.name=[1, 2]"], "name must be text"),
    ("train", ["--set", "model.lr=.inf"], "finite number"),
    ("train", ["--set", "model.nope=1"], "unknown key"),
    ("train", ["--set", "oops"], "train.<field>"),
    # train: config files and resume
    ("train", ["--config", "{d}/missing.yaml"], "does not exist"),
    ("train", ["--config", "{d}/bad.yaml"], "bad.yaml, line 3"),
    ("train", ["--config", "{d}/list.yaml"], "expected a mapping"),
    ("train", ["--resume", "{d}/nope"], "nope"),
    ("train", ["--resume", "{d}/a", "--batch", "8"], "would change"),
    # evaluate
    ("evaluate", ["--samples", "{d}/missing.npz"], "does not exist"),
    ("evaluate", ["--fake", "digits", "--splits", "0"], "--splits"),
    ("evaluate", ["--fake", "digits", "--batch", "0"], "--batch"),
    ("evaluate", ["--fake", "digits", "--per-class", "x"], "not an integer"),
    ("evaluate", ["--fake", "digits", "--metrics", "fid,nope"], "nope"),
    ("evaluate", ["--fake", "digits", "--extractor", "nope"], "invalid choice"),
    ("evaluate", ["--fake", "digits", "--out", "{d}/exists.json"], "--overwrite"),
    ("evaluate", ["--fake", "digits", "--out", "{d}"], "folder"),
    ("evaluate", [], "required"),
    # generate
    ("generate", ["--ckpt", "{d}/nope", "--out", "{d}/s.npz"], "nope"),
    ("generate", ["--ckpt", "{d}/a", "--per-class", "0", "--out", "{d}/s.npz"], ">= 1"),
    ("generate", ["--ckpt", "{d}/a", "--out", "{d}/exists.json"], "--overwrite"),
    ("generate", ["--ckpt", "{d}/a", "--seed", "-1", "--out", "{d}/s.npz"], ">= 0"),
    ("generate", ["inpaint", "--ckpt", "{d}/a", "--images", "{d}", "--iters", "0", "--out", "{d}/i"], ">= 1"),
    ("generate", ["morph", "--ckpt", "{d}/a", "--classes", "1", "x", "--out", "{d}/m.png"], "invalid int"),
    # experiments
    ("experiments", ["ring2d", "--variance", "-1"], "> 0"),
    ("experiments", ["ring2d", "--rows", "nope"], "unknown --rows"),
    ("experiments", ["ring2d", "--seeds", "0"], ">= 1"),
    ("experiments", ["cvae-ring", "--lr", "0"], "> 0"),
    ("experiments", ["backends", "--trace", "-1"], ">= 0"),
    ("experiments", ["claims", "--models", "nosuchgan"], "unknown --models"),
    ("experiments", ["claims", "--jobs", "0"], ">= 1"),
    ("experiments", ["nosuch"], "invalid choice"),
]


@pytest.mark.parametrize("cli,argv,fragment", CASES, ids=[f"{c}:{' '.join(a)}" for c, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(cli, argv, fragment, runs, capsys, tmp_path):
    argv = [a.replace("{d}", str(runs)) for a in argv]
    if cli == "train" and "--resume" not in argv:
        argv += ["--out", str(tmp_path), "--no-progress", "--no-final-eval"]
    code, err = _call(cli, argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    if cli == "train":
        assert not any(tmp_path.iterdir()), "a refused run left a folder behind"


def test_resume_names_what_differs_for_another_models_checkpoint_and_an_edited_config(runs, capsys, tmp_path):
    run = tmp_path / "a"
    shutil.copytree(runs / "a", run)
    shutil.copy(runs / "m" / "ckpt" / "last.pt", run / "ckpt" / "last.pt")  # another model's checkpoint
    code, err = _call("train", ["--resume", str(run), "--steps", "2", "--no-progress", "--no-final-eval"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "another configuration" in err and "train.model 'medgan' in the checkpoint, 'sphericgan' now" in err
    shutil.copy(runs / "a" / "ckpt" / "last.pt", run / "ckpt" / "last.pt")
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["ch"] = 8  # an edited config.json
    (run / "config.json").write_text(json.dumps(cfg))
    code, err = _call("train", ["--resume", str(run), "--steps", "2", "--no-progress", "--no-final-eval"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "model.ch 4 in the checkpoint, 8 now" in err
    cfg["model"]["ch"] = 4
    (run / "config.json").write_text(json.dumps(cfg))
    assert train_main(["--resume", str(run), "--steps", "2", "--no-progress", "--no-final-eval"]) == 0


def test_debug_env_keeps_the_traceback(monkeypatch, runs):
    monkeypatch.setenv("SSGAN_FAST_DEBUG", "1")
    with pytest.raises(ValueError, match="log_every"):
        train_main(["--set", "train.log_every=0", "--no-progress"])
    with pytest.raises(ValueError, match="does not exist"):
        evaluate_main(["--samples", str(runs / "missing.npz")])


def test_resume_with_fewer_steps_than_done_is_refused(runs, capsys, tmp_path):
    run = tmp_path / "a"
    shutil.copytree(runs / "a", run)
    assert train_main(["--resume", str(run), "--steps", "3", "--no-progress", "--no-final-eval"]) == 0
    code, err = _call("train", ["--resume", str(run), "--steps", "2", "--no-progress", "--no-final-eval"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "at step 3, past the 2 steps" in err, err

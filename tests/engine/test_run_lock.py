"""A run folder is locked while a process trains it; a killed trainer's lock is taken over, and its
resume logs every step once (losses.jsonl is cut back to the checkpoint's step)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ssgan_fast.train import main as train_main

TINY = ["--model", "sphericgan", "--size", "8", "--batch", "4", "--no-progress", "--no-final-eval",
        "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set", "model.latent_dim=8",
        "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200", "--sample-every", "0",
        "--set", "train.log_every=1"]


def _wait_for(path, timeout=120):
    t0 = time.time()
    while not path.exists():
        if time.time() - t0 > timeout:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.2)


def test_second_trainer_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "r"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-m", "ssgan_fast.train", *TINY, "--out", str(tmp_path), "--name", "r",
                          "--steps", "100000", "--ckpt-every", "7"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        _wait_for(run / "ckpt" / "last.pt")
        with pytest.raises(SystemExit) as e:  # a second --resume of the same run while the first trains
            train_main(["--resume", str(run), "--steps", "100000", "--no-progress", "--no-final-eval"])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"PID {p.pid}" in err[0] and "being trained" in err[0]
        time.sleep(1.0)  # some steps logged after the checkpoint
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    logged = [json.loads(x)["step"] for x in (run / "losses.jsonl").read_text().splitlines() if x.strip().endswith("}")]
    import torch
    at = torch.load(run / "ckpt" / "last.pt", weights_only=False)["step"]
    if max(logged) == at:  # killed right at a checkpoint: nothing to cut back; add a line as the kill would leave
        with open(run / "losses.jsonl", "a") as f:
            f.write(json.dumps({"step": at + 1, "x": 0.0}) + "\n" + '{"step": ' + str(at + 2))
        logged.append(at + 1)
    assert max(logged) > at  # steps were logged after the checkpoint (and one line cut short, maybe)
    # the killed run's lock is taken over; the resume continues from the checkpoint and logs each step once
    assert train_main(["--resume", str(run), "--steps", str(max(logged) + 3), "--no-progress",
                       "--no-final-eval"]) == 0
    steps = [json.loads(x)["step"] for x in (run / "losses.jsonl").read_text().splitlines()]
    assert steps == list(range(1, max(logged) + 4)), (at, steps[-20:])


def test_an_interrupted_start_resumes_from_scratch_and_a_lost_split_is_redrawn_and_kept(tmp_path, caplog):
    """Killed before its first checkpoint (config.json + split.json only): --resume, the command the
    messages name, starts the run again from step 0 with its own settings, each step logged once."""
    assert train_main(TINY + ["--out", str(tmp_path), "--name", "full", "--steps", "3"]) == 0
    assert train_main(TINY + ["--out", str(tmp_path), "--name", "r", "--steps", "3"]) == 0
    run = tmp_path / "r"
    for f in (run / "ckpt").iterdir():  # as if killed before the first checkpoint: the losses of 2 steps remain
        f.unlink()
    lines = (run / "losses.jsonl").read_text().splitlines()
    (run / "losses.jsonl").write_text("\n".join(lines[:2]) + "\n")
    split = (run / "split.json").read_text()
    (run / "split.json").unlink()
    with caplog.at_level("WARNING", logger="ssgan_fast"):
        assert train_main(["--resume", str(run), "--no-progress", "--no-final-eval"]) == 0
    text = caplog.text
    assert "no checkpoint yet" in text and "split.json is missing" in text
    assert (run / "split.json").read_text() == split  # the same draw, kept
    steps = [json.loads(x)["step"] for x in (run / "losses.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (run / "losses.jsonl").read_text() == (tmp_path / "full" / "losses.jsonl").read_text()  # as a fresh run


@pytest.mark.parametrize("phase", ["preparation", "final evaluation"])
def test_ctrl_c_outside_the_training_loop_is_one_line_and_exit_130(phase, tmp_path, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM) during the preparation or the final evaluation: one line naming what to do next,
    exit 130, no temp files; an interrupted preparation's folder restarts with --resume."""
    from ssgan_fast.engine.trainer import Trainer
    from ssgan_fast.models.sphericgan import SphericGAN

    def interrupt(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(SphericGAN if phase == "preparation" else Trainer,
                        "prepare" if phase == "preparation" else "evaluate", interrupt)
    argv = [a for a in TINY if a != "--no-final-eval"] + ["--out", str(tmp_path), "--name", "r", "--steps", "2"]
    assert train_main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and not list(tmp_path.rglob("*.tmp*"))
    run = tmp_path / "r"
    if phase == "preparation":
        assert err[0] == f"interrupted before training started; start it again with --resume {run}"
        monkeypatch.undo()
        assert train_main(["--resume", str(run), "--no-progress", "--no-final-eval"]) == 0
    else:
        assert "interrupted during the final evaluation; the trained run is kept in" in err[0]
    assert (run / "ckpt" / "last.pt").is_file()

"""kill -9 at random times, including during checkpoint writes, then --resume, again and again: every
resume continues, no half-written file is left, and losses.jsonl ends with each step once (issue 35).
In the slow set: ``pytest -m slow tests/engine/test_kill_loop.py`` (SSGAN_FAST_KILLS sets the number of
kills, default 20)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

TINY = ["--model", "sphericgan", "--size", "8", "--batch", "4", "--no-progress", "--no-final-eval",
        "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set", "model.latent_dim=8",
        "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200", "--sample-every", "0",
        "--set", "train.log_every=1"]


def _last_logged(run):
    f = run / "losses.jsonl"
    try:
        lines = f.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError):
        return 0


def _ckpt_step(run):
    import torch
    f = run / "ckpt" / "last.pt"
    return torch.load(f, map_location="cpu", weights_only=False)["step"] if f.is_file() else 0


@pytest.mark.slow
def test_kill_9_loop_resumes_every_time_and_leaves_no_half_written_file(tmp_path):
    kills = int(os.environ.get("SSGAN_FAST_KILLS", "20"))
    total = 2000
    run = tmp_path / "r"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # a checkpoint every 3 steps: many kills land inside a write (a write takes a few ms of each step)
    first = [sys.executable, "-m", "ssgan_fast.train", *TINY, "--out", str(tmp_path), "--name", "r",
             "--steps", str(total), "--ckpt-every", "3"]
    resume = [sys.executable, "-m", "ssgan_fast.train", "--resume", str(run), "--no-progress", "--no-final-eval"]
    rng = random.Random(0)
    log = []
    for i in range(kills):
        beyond_old = _last_logged(run)
        p = subprocess.Popen(first if i == 0 else resume, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        before = _ckpt_step(run)
        # the killed run logged a few steps past its checkpoint, which the resume truncates and trains again:
        # wait for a step beyond both
        beyond = max(beyond_old, before + 1)
        t0 = time.time()
        while time.time() - t0 < 120 and p.poll() is None and _last_logged(run) <= beyond:
            time.sleep(0.02)  # training under way (past the checkpoint it resumed from), then a random moment
        time.sleep(rng.uniform(0.0, 0.6))
        if p.poll() is not None:
            err = p.stderr.read().decode()
            assert p.returncode == 0, err
            break
        p.send_signal(signal.SIGKILL)
        p.wait()
        mid_write = any(f.name.startswith(".last.pt.tmp") for f in (run / "ckpt").glob(".*"))
        after = _ckpt_step(run)  # the checkpoint is readable after every kill
        assert after >= before
        log.append(f"{after}{'*' if mid_write else ''}")
    # the last resume runs to the end
    p = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert _ckpt_step(run) == total
    assert not [f for f in run.rglob("*") if ".tmp" in f.name], "a half-written file was left behind"
    steps = [json.loads(x)["step"] for x in (run / "losses.jsonl").read_text().splitlines()]
    assert steps == list(range(1, total + 1)), "losses.jsonl must hold each step once"
    print(f"{len(log)} kills; the checkpoint's step after each (* = killed during a checkpoint write): {log}")

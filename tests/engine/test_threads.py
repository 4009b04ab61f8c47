"""The CPU threading a training process picks (ssgan_fast._sys.pick_threads, bench/busy_threads.py): one
intra-op thread for small CPU steps or a busy machine, the flag and OMP_NUM_THREADS first; printed at start."""
from __future__ import annotations

import pytest
import torch

from ssgan_fast._sys import pick_threads
from ssgan_fast.train import main as train_main


@pytest.fixture
def keep_threads(monkeypatch):
    n = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(n)


def test_rule(keep_threads, monkeypatch):
    torch.set_num_threads(2)
    assert pick_threads(None, "cpu", 16, cpus=2, load=0.0)[0] == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(2)
    assert pick_threads(None, "cpu", 64, cpus=2, load=0.0) == (2, "torch's default, one per core (--threads N "
                                                                  "to change)")
    n, why = pick_threads(None, "cpu", 64, cpus=2, load=1.7)
    assert n == 1 and "busy" in why and torch.get_num_threads() == 1
    assert pick_threads(3, "cpu", 16, cpus=2, load=0.0) == (3, "--threads") and torch.get_num_threads() == 3
    torch.set_num_threads(2)
    assert pick_threads(0, "cpu", 16, cpus=2, load=0.0)[0] == 2  # the choice before the rule
    assert pick_threads(None, "cuda", 16, cpus=2, load=0.0)[0] == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert pick_threads(None, "cpu", 16, cpus=2, load=0.0) == (2, "OMP_NUM_THREADS")


def test_train_prints_its_choice(keep_threads, tmp_path, caplog):
    import logging
    args = ["--size", "8", "--set", "model.ch=4", "--set", "model.z_dim=8", "--batch", "4", "--steps", "1",
            "--no-progress", "--no-final-eval", "--model", "triplegan", "--device", "cpu", "--out", str(tmp_path)]
    with caplog.at_level(logging.INFO, logger="ssgan_fast"):
        assert train_main(args + ["--name", "a"]) == 0
    assert "threads: 1 (8 px steps are too small" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ssgan_fast"):
        assert train_main(args + ["--name", "b", "--threads", "2"]) == 0
    assert "threads: 2 (--threads)" in caplog.text

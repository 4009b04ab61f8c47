"""Checkpoint faults lose nothing: a write that fails (a full disk) keeps last.pt and prev.pt as they were,
removes its temporary file, stops the run with one line and exit 3; --resume works once there is room.
Stale temporary files of killed writers are removed."""
import errno
import os
import subprocess
import sys

import pytest
import torch

from ssgan_fast.engine import checkpoint as ck
from ssgan_fast.train import main as train_main

TINY = ["--model", "sphericgan", "--size", "8", "--batch", "4", "--no-progress", "--no-final-eval",
        "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--set", "model.latent_dim=8",
        "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200", "--sample-every", "0"]


def test_failed_write_keeps_both_checkpoints_and_removes_its_temp(tmp_path):
    folder = tmp_path / "ckpt"
    ck.save_checkpoint({"step": 1, "model": {}}, folder)
    ck.save_checkpoint({"step": 2, "model": {}}, folder)
    before = {n: (folder / n).read_bytes() for n in ("last.pt", "prev.pt")}

    class Full:
        """A file object that takes 100 bytes, then fails as a full disk does."""
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_open = open

    def full_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if "w" in mode and ".tmp" in str(path) else f
    import builtins
    builtins.open, old = full_open, builtins.open
    try:
        try:
            ck.save_checkpoint({"step": 3, "model": {"w": torch.zeros(1000)}}, folder)
            raise AssertionError("the write should have failed")
        except ck.CheckpointWriteError as e:
            msg = str(e)
    finally:
        builtins.open = old
    assert "No space left" in msg and str(folder) in msg and "MB" in msg and "untouched" in msg
    assert {n: (folder / n).read_bytes() for n in ("last.pt", "prev.pt")} == before
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "prev.pt"]  # no temporary file left


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / f".last.pt.tmp{pid}").write_bytes(b"x" * 1000)  # a writer killed mid-write
    (folder / f".last.pt.tmp{os.getpid()}x").write_bytes(b"y")  # not a tmp name of ours: kept
    ck.save_checkpoint({"step": 1, "model": {}}, folder)
    names = sorted(p.name for p in folder.iterdir())
    assert f".last.pt.tmp{pid}" not in names and "last.pt" in names and f".last.pt.tmp{os.getpid()}x" in names


def test_disk_full_stops_the_run_with_one_line_and_resume_continues(tmp_path, monkeypatch, capsys):
    base = TINY + ["--out", str(tmp_path), "--name", "r", "--ckpt-every", "2"]
    assert train_main(base + ["--steps", "2"]) == 0
    real = ck._write_temp

    def enospc(obj, path):
        raise ck.CheckpointWriteError(f"could not write {path} (No space left on device; it needs about 1.0 MB)")
    monkeypatch.setattr(ck, "_write_temp", enospc)
    capsys.readouterr()
    assert train_main(["--resume", str(tmp_path / "r"), "--steps", "4", "--no-progress", "--no-final-eval"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left" in err[0] and "--resume" in err[0] and "Traceback" not in err[0]
    assert torch.load(tmp_path / "r" / "ckpt" / "last.pt", weights_only=False)["step"] == 2
    monkeypatch.setattr(ck, "_write_temp", real)  # room again: the run continues from step 2
    assert train_main(["--resume", str(tmp_path / "r"), "--steps", "4", "--no-progress", "--no-final-eval"]) == 0
    assert torch.load(tmp_path / "r" / "ckpt" / "last.pt", weights_only=False)["step"] == 4


def test_real_full_disk_on_a_small_tmpfs(tmp_path, capsys):
    """The same on a real full file system (a tmpfs the test mounts, where it may: root on Linux)."""
    import shutil
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode:
        import pytest
        pytest.skip("cannot mount a tmpfs here (not root, or no mount)")
    try:
        run = mnt / "r"
        assert train_main(TINY + ["--out", str(mnt), "--name", "r", "--ckpt-every", "2", "--steps", "2"]) == 0
        size = (run / "ckpt" / "last.pt").stat().st_size
        filler = mnt / "filler"
        with open(filler, "wb") as f:  # leave less room than one checkpoint
            f.write(b"\0" * max(0, shutil.disk_usage(mnt).free - size // 2))
        before = (run / "ckpt" / "last.pt").read_bytes()
        capsys.readouterr()
        assert train_main(["--resume", str(run), "--steps", "4", "--no-progress", "--no-final-eval"]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No space left" in err[0] and str(run) in err[0], err
        assert (run / "ckpt" / "last.pt").read_bytes() == before
        assert not list((run / "ckpt").glob(".*tmp*"))
        filler.unlink()
        assert train_main(["--resume", str(run), "--steps", "4", "--no-progress", "--no-final-eval"]) == 0
        assert torch.load(run / "ckpt" / "last.pt", weights_only=False)["step"] == 4
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_outputs_are_checked_before_the_work_and_never_overwritten(tmp_path, capsys):
    """generate / evaluate refuse an existing output without --overwrite, a folder where a file is asked for
    (and the reverse), and an unwritable parent - one line, exit 2, before any sampling."""
    from ssgan_fast.engine.run import check_output
    from ssgan_fast.generate import main as gen_main
    f, d = tmp_path / "a.npz", tmp_path / "dir"
    f.write_bytes(b"user's file")
    d.mkdir()
    (d / "keep.png").write_bytes(b"x")
    for path, kind, over, msg in ((f, "file", False, "exists"), (d, "file", True, "is a folder"),
                                  (f, "folder", True, "is a file"), (d, "folder", False, "exists")):
        with pytest.raises(ValueError, match=msg):
            check_output(path, kind, over)
    assert check_output(f, "file", True) == f and check_output(tmp_path / "new" / "x.npz") == tmp_path / "new" / "x.npz"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root may write anywhere
            with pytest.raises(ValueError, match="not writable"):
                check_output(ro / "x.npz")
    finally:
        ro.chmod(0o700)
    run = tmp_path / "r"
    assert train_main(TINY + ["--out", str(tmp_path), "--name", "r", "--steps", "1"]) == 0
    for argv in (["--out", str(f)], ["--out", str(d)],
                 ["--out", str(tmp_path / "s.npz"), "--png", str(d / "keep.png")]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            gen_main(["--ckpt", str(run), "--per-class", "1", *argv])
        assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert f.read_bytes() == b"user's file" and (d / "keep.png").read_bytes() == b"x"
    assert gen_main(["--ckpt", str(run), "--per-class", "1", "--out", str(f), "--overwrite"]) == 0
    import numpy as np
    assert np.load(f)["images"].shape[0] == 10
    assert gen_main(["--ckpt", str(run), "--per-class", "1", "--out", str(tmp_path / "noext")]) == 0
    assert (tmp_path / "noext").is_file() and not (tmp_path / "noext.npz").exists()  # exactly the name given


def test_unwritable_output_is_refused_at_start_and_an_unwritable_cache_only_warned(tmp_path, monkeypatch, capsys,
                                                                                  caplog):
    """Read-only folders are found before any work: the output folder exits 2 in one line; the statistics
    cache / weights folders are warned about, and the evaluation runs without caching."""
    from ssgan_fast.engine import run as R
    ro = tmp_path / "ro"
    ro.mkdir()
    import tempfile
    orig = tempfile.TemporaryFile

    def probe(*a, dir=None, **k):  # noqa: A002 - tempfile's own keyword
        if dir is not None and str(dir).startswith(str(ro)):
            raise OSError(errno.EROFS, "Read-only file system")
        return orig(*a, dir=dir, **k)
    monkeypatch.setattr(tempfile, "TemporaryFile", probe)
    assert "Read-only file system" in R.unwritable(ro / "not" / "yet")
    assert R.unwritable(tmp_path / "fine" / "new") is None
    with pytest.raises(SystemExit) as e:
        train_main(TINY + ["--out", str(ro / "runs"), "--steps", "1"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "cannot be written" in err
    assert not (ro / "runs").exists()
    monkeypatch.setenv("SSGAN_FAST_CACHE", str(ro / "cache"))
    with caplog.at_level("WARNING", logger="ssgan_fast"):
        R.check_start_folders(tmp_path / "out", evaluation=True)
    assert "statistics cache" in caplog.text and "SSGAN_FAST_CACHE" in caplog.text


def test_failed_side_writes_warn_once_and_the_run_finishes(tmp_path, monkeypatch, caplog):
    """Losses, TensorBoard, sample grids and metrics files that cannot be written (a full disk) do not stop a
    run that can still checkpoint: one warning per kind, exit 0, the checkpoint written; a statistics cache
    that cannot be written loses only the caching."""
    from ssgan_fast.engine.trainer import Trainer
    from ssgan_fast.metrics import cache

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Trainer, "sample_grid", full)
    monkeypatch.setattr(cache, "save_stats", full)
    monkeypatch.setattr(ck, "save_atomic_text", full)
    import ssgan_fast.engine.trainer as T
    monkeypatch.setattr(T, "save_atomic_text", full)
    try:
        from torch.utils.tensorboard import SummaryWriter
        monkeypatch.setattr(SummaryWriter, "add_scalar", full)
    except ImportError:
        pass
    monkeypatch.setenv("SSGAN_FAST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path / "w"))
    argv = [a for a in TINY if a != "--no-final-eval"]
    with caplog.at_level("WARNING", logger="ssgan_fast"):
        assert train_main(argv + ["--out", str(tmp_path), "--name", "r", "--steps", "4", "--sample-every", "2",
                                  "--set", "train.log_every=1", "--set", "train.eval_samples_per_class=4",
                                  "--set", "train.eval_classifier_epochs=1", "--set", "train.eval_metrics=fid"]) == 0
    text = caplog.text
    assert text.count("writing sample grids failed") == 1 and text.count("writing metrics files failed") == 1
    assert "reference statistics not cached" in text
    assert (tmp_path / "r" / "ckpt" / "last.pt").is_file() and not list(tmp_path.glob("cache/*.tmp*"))
    assert len((tmp_path / "r" / "losses.jsonl").read_text().splitlines()) == 4

"""Checkpoints: atomic writes, the previous checkpoint kept beside the last, and checked loads.

``save_atomic`` writes to a temporary file in the same folder, fsyncs, then os.replace - a crash
mid-write never leaves a truncated file where the last good one was; a failed write (a full disk)
removes its temporary file and raises ``CheckpointWriteError`` naming the folder and the bytes it
needed. ``save_checkpoint`` writes the new file completely first and only then rotates (``last.pt``
-> ``prev.pt``, new -> ``last.pt``), so a failed write leaves both earlier checkpoints as they were
and two good checkpoints exist once two were saved. Temporary files that a killed process left
behind (``.last.pt.tmp<PID>`` of a PID that is no longer running) are removed at the next save.
``load_checkpoint`` reads ``last.pt``; a damaged one (truncated, garbage, not a checkpoint) falls
back to ``prev.pt`` and says so; if neither loads, ``CheckpointError`` names both files and why.
"""
from __future__ import annotations

import io
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("ssgan_fast")

REQUIRED = ("step", "model")


class CheckpointError(ValueError):
    """No loadable checkpoint: the message names the file(s) and what is wrong."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder): nothing earlier was touched."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder) -> list[Path]:
    """Remove the `.NAME.tmpPID` files of processes that no longer run (a kill -9 mid-write); returns them."""
    gone = []
    for f in Path(folder).glob(".*.tmp*"):
        pid = f.name.rpartition(".tmp")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            f.unlink(missing_ok=True)
            gone.append(f)
    return gone


def _write_temp(obj, path: Path) -> Path:
    """obj fully written and fsynced to a temporary file beside path; on failure the temporary file is
    removed and CheckpointWriteError says where and how much was needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as e:  # torch.save reports a short write as RuntimeError (inline_container)
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        need = _size_of(obj)
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        room = "" if free is None else f", {free / 2**20:.1f} MB free"
        why = _reason(e, need, free)
        raise CheckpointWriteError(f"could not write {path} ({why}; it needs about {need / 2**20:.1f} MB{room}, "
                                   f"{written / 2**20:.1f} MB were written and removed); the earlier checkpoints "
                                   f"in {path.parent} are untouched") from None
    except BaseException:  # KeyboardInterrupt / SystemExit mid-write: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _reason(e: BaseException, need: int, free: int | None) -> str:
    """The OSError behind e (torch.save wraps a failed write in a RuntimeError), else a full disk where
    the free space is short of the checkpoint's size, else e's first line."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        seen = seen.__cause__ or seen.__context__
    if free is not None and free < need:
        return "No space left on device"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _size_of(obj) -> int:
    """The bytes torch.save writes for obj (counted, not stored)."""
    class _Count(io.RawIOBase):
        n = 0

        def writable(self):
            return True

        def write(self, b):
            self.n += len(b)
            return len(b)
    c = _Count()
    try:
        torch.save(obj, c)
    except Exception:  # noqa: BLE001 - only an estimate for the message
        return 0
    return c.n


def save_atomic_text(path, text: str) -> None:
    """Write a text file whole or not at all (temp file + rename; the temp file is removed on failure)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_atomic(obj, path) -> None:
    path = Path(path)
    os.replace(_write_temp(obj, path), path)


def save_checkpoint(obj, folder) -> Path:
    """folder/last.pt (atomic); the one it replaces becomes folder/prev.pt - only once the new file is
    completely written, so a failed write changes neither."""
    folder = Path(folder)
    last = folder / "last.pt"
    remove_stale_temps(folder)
    tmp = _write_temp(obj, last)
    if last.is_file():
        os.replace(last, folder / "prev.pt")
    os.replace(tmp, last)
    return last


def read_checkpoint(path, map_location="cpu") -> dict:
    """One checkpoint file, checked: CheckpointError (naming the file) for a missing, truncated or
    foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        s = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError / UnpicklingError / ValueError / EOFError ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not a torch file ({type(e).__name__}: {msg})") from None
    if not isinstance(s, dict) or any(k not in s for k in REQUIRED):
        what = sorted(s)[:8] if isinstance(s, dict) else type(s).__name__
        raise CheckpointError(f"{path} is not a ssgan_fast checkpoint (keys {what})")
    return s


def load_checkpoint(folder, map_location="cpu") -> tuple[dict, Path]:
    """(state, file) from folder/last.pt, else folder/prev.pt (logged)."""
    folder = Path(folder)
    errors = []
    for name in ("last.pt", "prev.pt"):
        try:
            s = read_checkpoint(folder / name, map_location)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            log.warning("%s; using the previous checkpoint %s (step %d)", errors[0], folder / name, s["step"])
        return s, folder / name
    raise CheckpointError("; ".join(errors))


def rng_state() -> dict:
    s = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])

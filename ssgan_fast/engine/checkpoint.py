"""Checkpoints: atomic writes, the previous checkpoint kept beside the last, and checked loads.

``save_atomic`` writes to a temporary file in the same folder, fsyncs, then os.replace - a crash
mid-write never leaves a truncated file where the last good one was. ``save_checkpoint`` first
moves the current ``last.pt`` to ``prev.pt``, so two good checkpoints exist once two were saved.
``load_checkpoint`` reads ``last.pt``; a damaged one (truncated, garbage, not a checkpoint) falls
back to ``prev.pt`` and says so; if neither loads, ``CheckpointError`` names both files and why.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("ssgan_fast")

REQUIRED = ("step", "model")


class CheckpointError(ValueError):
    """No loadable checkpoint: the message names the file(s) and what is wrong."""


def save_atomic(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(obj, folder) -> Path:
    """folder/last.pt (atomic); the one it replaces becomes folder/prev.pt."""
    folder = Path(folder)
    last = folder / "last.pt"
    if last.is_file():
        os.replace(last, folder / "prev.pt")
    save_atomic(obj, last)
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

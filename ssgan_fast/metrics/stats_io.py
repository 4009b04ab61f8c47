"""FID statistics files in pytorch-fid's format: an ``.npz`` with ``mu`` [dim] and ``sigma`` [dim, dim]
(what ``python -m pytorch_fid --save-stats`` writes and reads), so that FID can be computed against
statistics made by pytorch-fid (or handed over by another project) and ours can be read by pytorch-fid.

Files written here add two keys pytorch-fid ignores: ``extractor`` (the extractor identity, with its
weights hash) and ``n`` (the feature count). Reading checks the dimension against the extractor's and,
where the file names its extractor, that it is the one in use ("a statistics file of another
extractor" is an error, not a silently meaningless FID); a file without the key (pytorch-fid's own) is
accepted as FID Inception pool3 statistics.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..ops import FeatureStats

__all__ = ["save_fid_stats", "load_fid_stats", "check_fid_stats", "StatsFileError"]


class StatsFileError(ValueError):
    """A statistics file that cannot be used: missing, unreadable, wrong keys, another extractor."""


def save_fid_stats(path, stats: FeatureStats, extractor: str) -> Path:
    """Write the pooled mean and covariance of ``stats`` as pytorch-fid's ``mu`` / ``sigma`` (float64),
    atomically (temp file + rename); returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise StatsFileError(f"{path}: statistics files are .npz (pytorch-fid's format)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, mu=stats.mean().cpu().numpy(), sigma=stats.cov().cpu().numpy(), extractor=np.array(extractor),
             n=np.array(stats.total()))
    os.replace(tmp, path)
    return path


def load_fid_stats(path, extractor: str | None = None, dim: int | None = None) -> dict:
    """{"mu": float64 tensor [dim], "sigma": [dim, dim], "extractor": str or None, "n": int or None} of a
    pytorch-fid style file; checks the extractor identity and the dimension when given."""
    path = Path(path)
    if not path.is_file():
        raise StatsFileError(f"statistics file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.keys())
            if not {"mu", "sigma"} <= keys:
                raise StatsFileError(f"{path} is not a FID statistics file: pytorch-fid's format holds 'mu' and "
                                     f"'sigma', this one {sorted(keys)}")
            mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
            ident = str(z["extractor"]) if "extractor" in keys else None
            n = int(z["n"]) if "n" in keys else None
    except (OSError, ValueError) as e:
        if isinstance(e, StatsFileError):
            raise
        raise StatsFileError(f"{path} is not a readable .npz ({e})") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise StatsFileError(f"{path}: mu must be [dim] and sigma [dim, dim], got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise StatsFileError(f"{path} holds NaN or inf statistics")
    check_fid_stats(path, ident, mu.shape[0], extractor, dim)
    return {"mu": torch.from_numpy(mu), "sigma": torch.from_numpy(sigma), "extractor": ident, "n": n}


def check_fid_stats(path, ident: str | None, file_dim: int, extractor: str | None, dim: int | None):
    """Raise StatsFileError where statistics of extractor ``ident`` (None: not recorded) and dimension
    ``file_dim`` cannot be compared with features of ``extractor`` / ``dim``."""
    if dim is not None and file_dim != dim:
        raise StatsFileError(f"{path} holds {file_dim}-dimensional statistics but the extractor gives {dim} "
                             "features (statistics of another extractor?)")
    if extractor is not None and ident is not None and ident != extractor:
        raise StatsFileError(f"{path} holds statistics of the extractor {ident}, not of {extractor} in use: a FID "
                             "between them means nothing")

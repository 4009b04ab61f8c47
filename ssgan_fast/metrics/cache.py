"""Reference statistics of real data (and, for KID / the k-NN metrics, their features), cached as .npz
keyed by data set + extractor identity.

Folder: ``$SSGAN_FAST_CACHE`` (default ``~/.cache/ssgan_fast/stats``). The key is a hash of a dict
(data spec, split, resolution, extractor ident - which contains a hash of its weights - and the
class count), so changed weights or data never reuse stale statistics. Files are written
atomically (temp file + rename).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..ops import FeatureStats

log = logging.getLogger("ssgan_fast")

_FIELDS = ("count", "sum", "xtx", "shift", "has_shift")


def cache_dir() -> Path:
    return Path(os.environ.get("SSGAN_FAST_CACHE", "~/.cache/ssgan_fast/stats")).expanduser()


def cache_key(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def save_stats(path: Path, key: dict, stats: dict[str, FeatureStats | None]) -> None:
    arrays = {"__key__": np.frombuffer(json.dumps(key, sort_keys=True).encode(), dtype=np.uint8)}
    for name, st in stats.items():
        if st is None:
            continue
        if isinstance(st, torch.Tensor):  # kept features / labels (KID, the k-NN metrics)
            arrays[f"{name}.tensor"] = st.numpy()
            continue
        sd = st.state_dict()
        arrays[f"{name}.meta"] = np.array([sd["dim"], -1 if sd["num_classes"] is None else sd["num_classes"]])
        for f in _FIELDS:
            arrays[f"{name}.{f}"] = sd[f].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_stats(path: Path, device="cpu") -> dict[str, FeatureStats]:
    out = {}
    with np.load(path) as z:
        for k in z.keys():
            if k.endswith(".tensor"):
                out[k[:-len(".tensor")]] = torch.from_numpy(z[k])
        names = {k.split(".")[0] for k in z.keys() if k.endswith(".meta")}
        for name in names:
            dim, nc = (int(v) for v in z[f"{name}.meta"])
            st = FeatureStats(dim, None if nc < 0 else nc, device=device)
            sd = {"dim": dim, "num_classes": None if nc < 0 else nc}
            sd.update({f: torch.from_numpy(z[f"{name}.{f}"]) for f in _FIELDS})
            out[name] = st.load_state_dict(sd)
    return out


# the last reference statistics used in this process, by (cache key, device): a trainer's periodic
# evaluations read them from memory, not from the file each time (read-only: no metric changes them)
_MEMORY: OrderedDict = OrderedDict()
MEMORY_ENTRIES = 2


def _remember(mkey: tuple, stats: dict) -> dict:
    _MEMORY[mkey] = stats
    _MEMORY.move_to_end(mkey)
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return stats


def lookup(key: dict, device="cpu") -> dict[str, FeatureStats | torch.Tensor] | None:
    """The cached statistics of `key` (this process's memory, else the file), or None (never computed,
    or an unreadable file: said in the log)."""
    mkey = (cache_key(key), str(torch.device(device)), str(cache_dir()))
    if mkey in _MEMORY:
        _MEMORY.move_to_end(mkey)
        return _MEMORY[mkey]
    path = cache_dir() / f"{cache_key(key)}.npz"
    if not path.is_file():
        return None
    try:
        log.info("reference statistics from cache %s", path)
        return _remember(mkey, load_stats(path, device))
    except Exception as e:  # a truncated / foreign file: recompute, say so
        log.warning("ignoring unreadable statistics cache %s (%s); recomputing", path, e)
        return None


def store(key: dict, stats: dict, device="cpu") -> None:
    """Cache `stats` under `key` (file and memory); an unwritable or full cache loses only the caching,
    never the statistics."""
    _remember((cache_key(key), str(torch.device(device)), str(cache_dir())), stats)
    path = cache_dir() / f"{cache_key(key)}.npz"
    try:
        save_stats(path, key, stats)
        log.info("reference statistics cached in %s", path)
    except OSError as e:
        for tmp in path.parent.glob(f"{path.stem}.tmp{os.getpid()}*"):
            tmp.unlink(missing_ok=True)
        log.warning("reference statistics not cached (%s: %s)", path, e.strerror or e)


def portable(stats: dict) -> dict:
    """The statistics as host state dicts / host tensors (to send to other processes)."""
    return {k: (None if v is None else ("tensor", v.cpu()) if isinstance(v, torch.Tensor) else
                ("stats", {f: (t.cpu() if isinstance(t, torch.Tensor) else t) for f, t in v.state_dict().items()}))
            for k, v in stats.items()}


def from_portable(obj: dict, device="cpu") -> dict:
    out = {}
    for k, v in obj.items():
        if v is None or v[0] == "tensor":
            out[k] = None if v is None else v[1]
        else:
            sd = v[1]
            out[k] = FeatureStats(sd["dim"], sd["num_classes"], device=device).load_state_dict(sd)
    return out


def cached(key: dict, compute, device="cpu", use_cache: bool = True) -> dict[str, FeatureStats | torch.Tensor]:
    """compute() -> {name: FeatureStats or a host tensor (kept features)}; loaded from the cache when the
    key was computed before."""
    got = lookup(key, device) if use_cache else None
    if got is not None:
        return got
    stats = compute()
    if use_cache:
        store(key, stats, device)
    return stats

"""Run folders: where a new run goes, and loading a finished (or running) one without the
training machinery.

New runs are numbered as stylegan2-ada numbers them: ``runs/00001-sphericgan-digits/``,
``runs/00002-sphericgan-digits/``, ... (one more than the highest number in the folder), so a
second run never writes into the first. ``--name NAME`` picks the folder ``runs/NAME`` exactly;
it must not exist yet (or be empty).

``load_run(dir, device)`` gives the configuration, the model with its checkpointed weights and
fitted state, the EMA generator and the data set's description (saved in config.json) on a
device: no data set, split, loader, CUDA graphs or compile. ``generate``, ``evaluate``,
``experiments`` and the trainer's own sampling use it.
"""
from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models import get_model
from ..models.base import NotPrepared, config_from_dict
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from .config import TrainConfig

log = logging.getLogger("ssgan_fast")

_NUMBERED = re.compile(r"^(\d{5,})-")
#: what the CLIs report as one line with exit code 2 (bad input), never a traceback; DataError,
#: CheckpointError and EvalError are ValueErrors, WeightsError a FileNotFoundError
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotImplementedError, NotPrepared)
EVAL_SEED = 123  # the noise seed of evaluation samples (the same samples on every device and run)


def check_output(path, kind: str = "file", overwrite: bool = False, flag: str = "--out") -> Path:
    """Checked before the work: `path` can be written as a `kind` ("file" or "folder") - a file that
    exists (or a non-empty folder) only with overwrite, never a folder where a file is asked for (or the
    reverse), and the nearest existing parent writable. ValueError in one line naming the flag."""
    import os
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise ValueError(f"{flag} {p} is a folder: give a file name")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p} is a file: give a folder")
    if not overwrite and (p.is_file() or (p.is_dir() and any(p.iterdir()))):
        raise ValueError(f"{flag} {p} exists: pass --overwrite to replace it, or choose another name")
    parent = p if (kind == "folder" and p.is_dir()) else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {p}: {parent} is not writable")
    return p


def unwritable(folder) -> str | None:
    """Why files cannot be created in `folder` (or, where it does not exist yet, in its nearest existing
    parent, where it would be made), or None. Probed by creating and removing a temporary file: permission
    bits, read-only mounts and immutable folders all show (os.access does not see them all for root)."""
    import tempfile
    p = Path(folder).expanduser()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        return f"{p} is not writable ({e.strerror or e})"
    return None


def check_start_folders(out=None, evaluation: bool = True) -> None:
    """At the start of a command, before its work: the output folder must be writable (ValueError, one
    line); the statistics cache and the weights folder are only warned about (the metrics are then
    computed without caching)."""
    if out is not None:
        why = unwritable(out)
        if why:
            raise ValueError(f"the output folder {out} cannot be written: {why}")
    if evaluation:
        from ..metrics.cache import cache_dir
        from ..weights import weights_dir
        for what, d, env in (("statistics cache", cache_dir(), "SSGAN_FAST_CACHE"),
                             ("weights folder", weights_dir(), "SSGAN_FAST_WEIGHTS")):
            why = unwritable(d)
            if why:
                log.warning("the %s %s cannot be written (%s): nothing will be cached there; point $%s at a "
                            "writable folder to keep the work", what, d, why, env)


def data_info(ds) -> dict:
    """What a model needs to know of its data set (saved in config.json)."""
    info = {"kind": ds.kind, "size": getattr(ds, "size", 0), "channels": getattr(ds, "channels", 0),
            "num_classes": ds.num_classes, "class_names": list(getattr(ds, "class_names", []) or [])}
    attrs = getattr(ds, "attrs", None)
    if attrs is not None:
        info.update(num_attrs=int(attrs.shape[1]), attr_names=list(ds.attr_names))
    return info


def new_run_dir(out, desc: str, name: str = "") -> Path:
    """Create and return the folder of a new run: out/NAME (must be new or empty) or the next
    numbered out/<00001>-<desc>."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if name:
        d = out / name
        if d.exists() and (not d.is_dir() or any(d.iterdir())):
            raise ValueError(f"run folder {d} already exists and is not empty: pick another --name, leave --name out "
                             f"for a numbered folder, or continue it with --resume {d}")
        d.mkdir(exist_ok=True)
        return d
    desc = re.sub(r"[^A-Za-z0-9_.+-]+", "_", desc).strip("_") or "run"
    n = 1 + max((int(m.group(1)) for p in out.iterdir() if (m := _NUMBERED.match(p.name))), default=0)
    while True:
        d = out / f"{n:05d}-{desc}"
        try:
            d.mkdir()
            return d
        except FileExistsError:  # another process took the number
            n += 1


@dataclass
class Run:
    """A run folder loaded for sampling and evaluation."""
    dir: Path
    cfg: TrainConfig
    info: dict
    model: torch.nn.Module
    ema: dict | None
    step: int
    checkpoint: Path
    device: torch.device

    def generator(self, use_ema: bool = True) -> dict:
        if use_ema and self.ema:
            return self.ema
        return {n: getattr(self.model, n) for n in self.model.generator_modules()}


def saved_info(run_dir: Path, cfg: TrainConfig) -> dict:
    saved = json.loads((run_dir / "config.json").read_text())
    info = saved.get("data_info")
    if info is None:  # a run folder from before data_info was saved: describe the data set again
        from ..data import open_dataset
        info = data_info(open_dataset(cfg.data, "train", cfg.size))
    return info


def split_run_spec(spec) -> tuple[Path, bool]:
    """'RUN' or 'RUN:best' -> (the run folder, whether ckpt/best.pt is asked for)."""
    s = str(spec)
    if s.endswith(":best"):
        return Path(s[:-len(":best")]), True
    return Path(s), False


def run_checkpoint(d: Path, best: bool, map_location="cpu") -> tuple[dict, Path]:
    """(state, file) of a run folder: ckpt/best.pt where asked for (``RUN:best``), else the last
    checkpoint (falling back to prev.pt)."""
    if not best:
        return load_checkpoint(d / "ckpt", map_location=map_location)
    path = d / "ckpt" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{d}:best: no ckpt/best.pt (the run was trained without --best-metric, or has "
                                "not been evaluated yet)")
    return read_checkpoint(path, map_location=map_location), path


def load_run(run_dir, device=None, use_ema: bool = True) -> Run:
    """Model + EMA + data description of a run folder, on `device` (default: the run's, or CPU
    where that device is not available). ``RUN:best`` loads ckpt/best.pt (kept by --best-metric) instead
    of the last checkpoint."""
    d, best = split_run_spec(run_dir)
    if not (d / "config.json").is_file():
        raise FileNotFoundError(f"{d} is not a run folder (no config.json)")
    cfg = TrainConfig.from_run(d, progress=False)
    if device is None:
        device = cfg.device if not cfg.device.startswith("cuda") or torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    info = saved_info(d, cfg)
    state, path = run_checkpoint(d, best, map_location=dev)
    Model = get_model(cfg.model)
    model = Model(config_from_dict(Model.Config, cfg.model_cfg, f"model config of {cfg.model}"), info).to(dev)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path} does not fit the model of {d / 'config.json'}: "
                              f"{str(e).splitlines()[0]}") from None
    model.eval()
    ema = None
    if use_ema and state.get("ema"):
        ema = {}
        for n, sd in state["ema"].items():
            m = copy.deepcopy(getattr(model, n))
            m.load_state_dict(sd)
            ema[n] = m.eval().requires_grad_(False)
    return Run(d, cfg, info, model, ema, int(state["step"]), path, dev)


@torch.no_grad()
def generate(model, modules: dict, num_classes: int, per_class: int, seed: int = EVAL_SEED, device="cpu",
             kind: str = "image", batch: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, or float32 [N, 2] points for 2-D data; int64 labels), per_class per class."""
    xs, ys = [], []
    for x, y in generate_batches(model, modules, num_classes, per_class, seed, device, batch):
        xs.append(x.float().cpu())
        ys.append(y.cpu())
    x, labels = torch.cat(xs), torch.cat(ys)
    if kind == "points":
        return x.numpy().astype(np.float32), labels.numpy()
    return to_uint8(x), labels.numpy()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW -> uint8 NHWC (the inverse of the loaders' conversion)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate_batches(model, modules: dict, num_classes: int, per_class: int, seed: int = EVAL_SEED, device="cpu",
                     batch: int = 100, lo: int = 0, hi: int | None = None):
    """Yield (samples [B, ...] in [-1, 1] on `device`, labels [B]): per_class of each class, class by
    class, the noise drawn from a CPU generator seeded with `seed` (the same samples on any device).
    ``lo`` / ``hi``: only the batches that hold samples [lo, hi) are generated (a distributed share; the
    noise of the batches before is drawn, so every sample is the one of the full pass)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    hi = len(labels) if hi is None else hi
    for i in range(0, hi, batch):
        y = labels[i:i + batch]
        z = model.noise(len(y), generator=g, device="cpu").to(device)
        a, e = max(lo - i, 0), min(hi - i, len(y))
        if a < e:
            x = model.sample(y.to(device), z, modules)
            yield (x, y) if (a, e) == (0, len(y)) else (x[a:e], y[a:e])


def samples_of(model, modules: dict, num_classes: int, per_class: int, device="cpu", batch: int = 100,
               seed: int = EVAL_SEED):
    """The generator's samples for evaluation (``ssgan_fast.evaluation.Samples``), generated batch by
    batch on each pass (nothing kept)."""
    from ..evaluation import Samples
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    def part(lo=0, hi=None):
        return generate_batches(model, modules, num_classes, per_class, seed, device, batch, lo, hi)
    return Samples(labels, part, batch=batch, shard=part)


def save_points_density(pts: torch.Tensor, path, lo: torch.Tensor, hi: torch.Tensor, bins: int = 128) -> None:
    """A log-count density image of 2-D points over the box [lo, hi] (points outside are dropped)."""
    import torchvision.utils as vu
    ij = ((pts - lo) / (hi - lo) * (bins - 1)).round().long()
    ok = ((ij >= 0) & (ij < bins)).all(1)
    img = torch.zeros(bins * bins).index_add_(0, (bins - 1 - ij[ok, 1]) * bins + ij[ok, 0], torch.ones(int(ok.sum())))
    img = torch.log1p(img).view(1, bins, bins)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    vu.save_image(img / img.max().clamp_min(1e-9), path)


class torchrun_group:
    """``with torchrun_group(device) as g:`` - under torchrun (WORLD_SIZE > 1) the process group of the
    launch (NCCL on this rank's GPU when the device is CUDA, else gloo), destroyed on exit; ``g.device``:
    the device to use (``cuda:LOCAL_RANK`` for a CUDA run), ``g.rank`` / ``g.world``. Without torchrun:
    rank 0 of 1 and the device as given."""

    def __init__(self, device: str | None):
        import os
        self.device, self.world, self.rank = device, int(os.environ.get("WORLD_SIZE", "1")), 0
        self.local = int(os.environ.get("LOCAL_RANK", "0"))
        self._mine = False

    def __enter__(self):
        import torch.distributed as dist
        if self.world > 1 and not dist.is_initialized():
            use_cuda = torch.cuda.is_available() and (self.device or "cuda").startswith("cuda")
            if use_cuda:
                torch.cuda.set_device(self.local)
                self.device = f"cuda:{self.local}"
            dist.init_process_group("nccl" if use_cuda else "gloo")
            self._mine = True
        if self.world > 1:
            self.rank = dist.get_rank()
        return self

    def __exit__(self, *exc):
        import torch.distributed as dist
        if self._mine and dist.is_initialized():
            dist.destroy_process_group()
        return False


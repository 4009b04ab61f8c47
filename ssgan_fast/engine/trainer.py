"""The training engine: run folder, loop, AMP, EMA, checkpoints, resume, logging, final metrics.

Run folder runs/<name>/: config.json, split.json, losses.jsonl (one line per logged step),
samples/step_<n>.png (fixed noise, one row per class), ckpt/last.pt (atomic), metrics.json.
Resume (--resume DIR) restores networks, optimizers, EMA, AMP scaler, RNG states (CPU, CUDA,
numpy, python), the loader's sampler and augmentation state and the step: on CPU a resumed run
reproduces the uninterrupted run's losses bit for bit. SIGINT / SIGTERM finish the current step,
save and exit. A non-finite loss stops the run naming the step and the loss (the last checkpoint
is kept), or - with skip_nonfinite - restores the pre-step state and skips it, counted in the log.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from ..data import Augment, PrepData, Split, make_loader, make_split, open_dataset, split_from_file
from ..models import get_model
from .amp import Amp
from .checkpoint import load_checkpoint, rng_state, save_atomic_text, save_checkpoint, set_rng_state
from .config import TrainConfig
from .graphs import StepGraphs, capture_blocker, prepare_optimizers
from .run import EVAL_SEED, data_info, generate, new_run_dir, samples_of, save_points_density

log = logging.getLogger("ssgan_fast")


class NonFiniteLoss(RuntimeError):
    pass


def compile_model(model, backend: str = "inductor") -> None:
    """torch.compile each network of the model in place (nn.Module.compile: state_dict keys and
    checkpoints stay the same)."""
    # SphericGAN's G / F update backpropagates one graph twice (retain_graph), which AOT autograd's
    # donated buffers forbid: turn them off for this process.
    import torch._functorch.config as fc
    fc.donated_buffer = False
    for _, m in model.named_children():
        m.compile(backend=backend)
    log.info("torch.compile (%s) on %s", backend, ", ".join(n for n, _ in model.named_children()))


def _floats(losses: dict) -> dict:
    """Loss values as Python floats with one device-to-host copy (not one sync per loss)."""
    ts = {k: v for k, v in losses.items() if isinstance(v, torch.Tensor)}
    out = {k: float(v) for k, v in losses.items() if k not in ts}
    if ts:
        vals = torch.stack([v.detach().float().reshape(()) for v in ts.values()]).tolist()
        out.update(zip(ts, vals, strict=False))
    return {k: out[k] for k in losses}


class RunLocked(ValueError):
    """Another process trains this run folder."""


def lock_run_dir(run_dir: Path):
    """An exclusive lock on run_dir/.lock for this process's life (flock: released when the process ends,
    however it ends, so a killed trainer's lock is simply taken over). The file names the holder's PID.
    Returns the open file (keep it); RunLocked names the holder where another process has it."""
    import fcntl
    import os
    f = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunLocked(f"{run_dir} is being trained by PID {holder} (lock {run_dir / '.lock'}): wait for it to "
                        "finish or stop it first") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def truncate_losses(path: Path, step: int) -> int:
    """Drop the lines of losses.jsonl logged after `step` (a run killed after its last checkpoint logged
    steps that the resumed run trains again); atomic rewrite. Returns the lines dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            s = json.loads(line).get("step", 0)
        except ValueError:
            continue  # a line cut short by the kill
        if s <= step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if len(keep) != len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(keep))
        tmp.replace(path)
        log.info("losses.jsonl: %d line(s) after the checkpoint's step %d dropped", len(lines) - len(keep), step)
    return len(lines) - len(keep)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        self.cfg = cfg.check()
        if cfg.graphs and cfg.compile:
            raise ValueError("--graphs and --compile: pick one (the engine captures eager steps; inductor has its own "
                             "CUDA graphs)")
        if cfg.graphs and cfg.graphs_mode not in ("cuda", "emulate"):
            raise ValueError(f"train.graphs_mode must be cuda or emulate, got {cfg.graphs_mode!r}")
        self.device = torch.device(cfg.device)
        import torch.distributed as dist
        self.dist = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.dist else 0
        self.world = dist.get_world_size() if self.dist else 1
        self.main = self.rank == 0
        torch.manual_seed(cfg.seed)  # the same initial networks on every rank
        np.random.seed(cfg.seed)
        self.ds = open_dataset(cfg.data, "train", cfg.size)
        info = self.info = data_info(self.ds)
        self._lock = None
        if resume:
            self.run_dir = Path(resume)
            if not (self.run_dir / "config.json").is_file():
                raise ValueError(f"--resume {resume}: not a run folder (no config.json)")
            if self.main:
                self._lock = lock_run_dir(self.run_dir)
        split_file = self.run_dir / "split.json" if resume else None
        if resume and split_file.is_file():
            self.split = Split.load(split_file, self.ds.labels)
        else:
            if resume:  # never silently: the split is redrawn from the run's own settings, and kept
                log.warning("%s is missing: the labeled split is drawn again from the run's settings (the same "
                            "draw as before unless the data or the labeled file changed)", split_file)
            if cfg.labeled:
                self.split = split_from_file(cfg.labeled, self.ds)
            else:
                self.split = make_split(self.ds.labels, self.ds.num_classes, cfg.labels_per_class,
                                        cfg.label_fraction, cfg.split_seed)
            if resume and self.main:
                self.split.save(split_file)
        Model = get_model(cfg.model)
        from ..models.base import config_from_dict
        self.model_cfg = config_from_dict(Model.Config, cfg.model_cfg, f"model config of {cfg.model}")
        self.model = Model(self.model_cfg, info).to(self.device)
        self.amp = Amp(cfg.amp, self.device)
        prepare_optimizers(self.model.optimizers(), self.device, cfg.graphs and cfg.graphs_mode == "cuda")
        if cfg.compile:
            compile_model(self.model, cfg.compile_backend)
        self.ema = None
        if cfg.ema:
            self.ema = {n: copy.deepcopy(getattr(self.model, n)).eval().requires_grad_(False)
                        for n in self.model.generator_modules()}
        aug = Augment(cfg.augment_flip, cfg.augment_crop, cfg.augment_translate)
        if not 0 <= cfg.max_bad_fraction <= 1:
            raise ValueError(f"train.max_bad_fraction must be in [0, 1], got {cfg.max_bad_fraction}")
        self.loader = make_loader(cfg.loader, self.ds, self.split, cfg.batch_labeled, cfg.batch_unlabeled,
                                  self.device, aug, seed=cfg.seed + self.rank, rank=self.rank, world_size=self.world,
                                  max_bad_fraction=cfg.max_bad_fraction)
        self.graphs, self._graphs_off = None, "off"
        if cfg.graphs:
            why = capture_blocker(self.amp, self.world)
            if why:
                self._graphs_off = f"eager: {why}"
                log.warning("--graphs: %s; running eager", why)
            else:
                self.graphs = StepGraphs(self.model, self.amp, self.loader, self.device, cfg.graphs_mode,
                                         cfg.graphs_warmup)
        self.total = cfg.steps or cfg.epochs * self.loader.steps_per_epoch
        if self.total <= 0:
            raise ValueError("give steps > 0 or epochs > 0")
        g = torch.Generator().manual_seed(cfg.seed + 1)
        self.per_class = max(1, min(10, 100 // max(1, self.ds.num_classes)))
        self.fixed_labels = torch.arange(self.ds.num_classes).repeat_interleave(self.per_class).to(self.device)
        self.fixed_noise = self.model.noise(len(self.fixed_labels), generator=g, device="cpu").to(self.device)
        self.step = 0
        self.skipped = 0
        self.best = {"key": cfg.best_metric, "value": None, "step": None}  # ckpt/best.pt's score
        self.tb = None  # the TensorBoard writer while fit() runs
        self._stop = False
        # a fine-tuning source is read before the run folder is made (a bad one leaves nothing behind)
        fresh_resume = resume and not any((self.run_dir / "ckpt" / n).exists() for n in ("last.pt", "prev.pt"))
        init = self._read_init(cfg.init_from) if cfg.init_from and (not resume or fresh_resume) else None
        if fresh_resume:  # interrupted before its first checkpoint: start it again from step 0, as configured
            log.warning("%s has no checkpoint yet (stopped before the first one): starting it from step 0 with "
                        "its config.json and split", self.run_dir)
            if self.main:
                truncate_losses(self.run_dir / "losses.jsonl", 0)
        if resume and not fresh_resume:
            self._load(self.run_dir / "ckpt")  # the fitted preparation state comes back with the model
            if self.step > self.total:
                raise ValueError(f"{self.run_dir} is at step {self.step}, past the {self.total} steps asked for: give "
                                 f"--steps above {self.step} to continue it")
        else:
            if not resume:
                self.run_dir = self._new_run_dir()
            if self.main and not resume:
                self._lock = lock_run_dir(self.run_dir)
                self.split.save(self.run_dir / "split.json")
                (self.run_dir / "config.json").write_text(json.dumps(
                    {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(self.model_cfg), "data_info": info},
                    indent=1))
            if self.model.preparation:
                t0 = time.perf_counter()
                try:
                    self.model.prepare(PrepData(self.ds, self.split, self.device, cfg.seed,
                                                max_bad_fraction=cfg.max_bad_fraction), seed=cfg.seed)
                except KeyboardInterrupt as e:  # the folder is made: say which, so that --resume can restart it
                    e.run_dir = str(self.run_dir)
                    if self._lock is not None:
                        self._lock.close()
                    raise
                log.info("prepared %s in %.1f s", self.model.preparation, time.perf_counter() - t0)
        if init is not None:
            self._init_from(cfg.init_from, *init)
        self.model.require_prepared()  # never a silent constant prior: refuse to train unfitted
        if self.dist:
            # identical networks everywhere (rank 0's), then rank-specific noise; a DDP resume is not
            # bit-exact (the checkpoint holds rank 0's RNG state), a single-process one is
            for t in list(self.model.parameters()) + list(self.model.buffers()):
                dist.broadcast(t.data, 0)
            torch.manual_seed(cfg.seed + 1000 * self.rank + self.step)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {"step": self.step, "skipped": self.skipped, "model": self.model.state_dict(),
                "optim": {k: o.state_dict() for k, o in self.model.optimizers().items()},
                "ema": {k: m.state_dict() for k, m in (self.ema or {}).items()}, "amp": self.amp.state_dict(),
                "loader": self.loader.state_dict(), "rng": rng_state(), "split": str(self.run_dir / "split.json"),
                "config": dataclasses.asdict(self.cfg), "model_config": dataclasses.asdict(self.model_cfg),
                "best": dict(self.best)}

    @property
    def graphs_status(self) -> str:
        """"off", "eager: <why capture was not possible>", or the graph runner's own status."""
        return self.graphs.status if self.graphs is not None else self._graphs_off

    def _new_run_dir(self) -> Path:
        """A new run folder (numbered unless train.name is given); under DDP rank 0 picks it."""
        cfg = self.cfg
        d = None
        if self.main:
            d = str(new_run_dir(cfg.out, f"{cfg.model}-{cfg.data.split(':')[0]}", cfg.name))
        if self.dist:
            import torch.distributed as dist
            box = [d]
            dist.broadcast_object_list(box, 0)
            d = box[0]
        return Path(d)

    def save(self):
        """ckpt/last.pt (the one it replaces becomes ckpt/prev.pt); once per step at most, so prev.pt
        is always an older state than last.pt."""
        if self.main and getattr(self, "_saved_step", None) != self.step:
            save_checkpoint(self.state(), self.run_dir / "ckpt")
            self._saved_step = self.step

    def _load(self, folder: Path):
        s, path = load_checkpoint(folder, map_location=self.device)
        self._check_same_run(s, path)
        try:
            self._restore(s)
        except (RuntimeError, KeyError, ValueError) as e:  # a checkpoint whose config matches but weights do not
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"{path} does not fit the run's networks ({first})") from None
        for k, m in (self.ema or {}).items():
            m.load_state_dict(s["ema"][k])
        self.amp.load_state_dict(s["amp"])
        self.loader.load_state_dict(s["loader"])
        set_rng_state(s["rng"])
        self.step, self.skipped = s["step"], s["skipped"]
        self.best = dict(s.get("best") or self.best)
        if self.main:
            truncate_losses(self.run_dir / "losses.jsonl", self.step)
        log.info("resumed %s at step %d", path, self.step)

    def _read_init(self, spec: str) -> tuple[dict, Path]:
        """The --init-from source checkpoint, checked (read before the run folder is made)."""
        from .checkpoint import read_checkpoint
        from .run import run_checkpoint, split_run_spec
        p = Path(spec)
        if p.is_file():
            s, path = read_checkpoint(p, map_location=self.device), p
        else:
            d, best = split_run_spec(spec)
            if not (d / "ckpt").is_dir():
                raise ValueError(f"--init-from {spec}: neither a checkpoint file nor a run folder with ckpt/")
            try:
                s, path = run_checkpoint(d, best, map_location=self.device)
            except FileNotFoundError as e:
                raise ValueError(f"--init-from {spec}: {e}") from None
        src_model = (s.get("config") or {}).get("model")
        if src_model and src_model != self.cfg.model:
            raise ValueError(f"--init-from {spec}: a {src_model} run; this run trains {self.cfg.model}")
        return s, path

    def _init_from(self, spec: str, s: dict, path: Path) -> None:
        """Fine-tuning: the networks, the EMA and the fitted preparation from another run's checkpoint,
        tensor by tensor where name and shape match; the rest keeps its fresh initialisation and is listed
        (never a partial load of one tensor). Optimizer states only with init_keep_opt, and only when every
        tensor matched."""

        def take(module_sd: dict, src: dict, where: str):
            load, differ, absent = {}, [], []
            for k, v in module_sd.items():
                if k in src and tuple(src[k].shape) == tuple(v.shape):
                    load[k] = src[k]
                elif k in src:
                    differ.append(f"{where}{k} {tuple(src[k].shape)} -> {tuple(v.shape)}")
                else:
                    absent.append(f"{where}{k}")
            return load, differ, absent
        load, differ, absent = take(self.model.state_dict(), s["model"], "")
        self.model.load_state_dict(load, strict=False)
        for n, m in (self.ema or {}).items():
            src = (s.get("ema") or {}).get(n)
            if src is None:  # a source without an EMA: the EMA starts from the loaded networks
                m.load_state_dict(getattr(self.model, n).state_dict())
                continue
            ld, df, ab = take(m.state_dict(), src, f"ema.{n}.")
            m.load_state_dict(ld, strict=False)
            differ += df
            absent += ab
        log.info("--init-from %s: %d tensors loaded from %s (step %s)", spec, len(load), path, s.get("step"))
        if differ:
            log.warning("--init-from: %d tensor(s) re-initialised, their shapes differ (a new class count or "
                        "width): %s", len(differ), "; ".join(differ))
        if absent:
            log.warning("--init-from: %d tensor(s) not in the source, left as initialised: %s", len(absent),
                        ", ".join(absent))
        if self.cfg.init_keep_opt:
            if differ or absent:
                raise ValueError(f"--init-keep-opt: the optimizer states cannot be kept, {len(differ) + len(absent)} "
                                 "tensor(s) differ from the source's (drop --init-keep-opt to reset them)")
            for k, o in self.model.optimizers().items():
                o.load_state_dict(s["optim"][k])
            log.info("--init-keep-opt: the source's optimizer states are kept")

    RESUME_MAY_DIFFER = ("progress", "device", "steps", "epochs", "out", "name")

    def _check_same_run(self, s: dict, path: Path) -> None:
        """The checkpoint was written by this run's configuration (another model's checkpoint, or an edited
        config.json, is one line naming the settings that differ, not a load_state_dict traceback)."""
        diffs = []
        for where, saved, now in (("train", s.get("config") or {}, dataclasses.asdict(self.cfg)),
                                  ("model", s.get("model_config") or {}, dataclasses.asdict(self.model_cfg))):
            # compared as config.json holds them (tuples are lists there)
            saved, now = (json.loads(json.dumps(d, default=str)) for d in (saved, now))
            if where == "train":
                saved.pop("model_cfg", None)
                now.pop("model_cfg", None)
            for k in sorted(set(saved) | set(now)):
                if where == "train" and k in self.RESUME_MAY_DIFFER:
                    continue
                if saved.get(k, "<unset>") != now.get(k, "<unset>"):
                    diffs.append(f"{where}.{k} {saved.get(k, '<unset>')!r} in the checkpoint, "
                                 f"{now.get(k, '<unset>')!r} now")
        if diffs:
            more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
            raise ValueError(f"{path} was written by another configuration than {self.run_dir / 'config.json'}: "
                             f"{'; '.join(diffs[:4])}{more}")

    # ------------------------------------------------------------------ loop
    @torch.no_grad()
    def _ema_update(self):
        # warm-up: the average starts short and lengthens to ema_decay (an EMA of a few hundred
        # steps with decay 0.999 would still be mostly the random initial generator)
        d = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for n, m in self.ema.items():
            src = getattr(self.model, n)
            for pe, p in zip(m.parameters(), src.parameters(), strict=False):
                pe.lerp_(p.detach(), 1 - d)
            for be, b in zip(m.buffers(), src.buffers(), strict=False):
                be.copy_(b)

    def generator(self, use_ema: bool = True) -> dict:
        if use_ema and self.ema:
            return self.ema
        return {n: getattr(self.model, n) for n in self.model.generator_modules()}

    @torch.no_grad()
    def sample_grid(self, path: Path):
        import torchvision.utils as vu
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.ds.kind == "points":  # a density image of 2 000 samples (log counts, 128 x 128 bins)
            g = torch.Generator().manual_seed(self.cfg.seed + 2)
            y = torch.arange(2000) % self.ds.num_classes
            noise = self.model.noise(2000, generator=g, device="cpu").to(self.device)
            pts = self.model.sample(y.to(self.device), noise, self.generator()).float().cpu()
            real = torch.from_numpy(self.ds.points)
            save_points_density(pts, path, real.min(0).values - 0.5, real.max(0).values + 0.5)
            return
        x = self.model.sample(self.fixed_labels, self.fixed_noise, self.generator())
        grid = vu.make_grid(x.float().add(1).div(2).clamp(0, 1), nrow=self.per_class)
        vu.save_image(grid, path)
        if self.tb is not None:  # beside the losses in TensorBoard
            self._side("TensorBoard images", self.tb.add_image, "samples", grid.cpu(), self.step)

    def _side(self, what: str, fn, *args):
        """A write beside the checkpoints (losses, TensorBoard, sample grids, metrics files): an OSError (full
        disk, read-only folder) is warned about once per kind and the run goes on - it can still checkpoint."""
        try:
            return fn(*args)
        except OSError as e:
            warned = self.__dict__.setdefault("_warned", set())
            if what not in warned:
                warned.add(what)
                log.warning("writing %s failed (%s); training goes on, and this is not repeated", what,
                            e.strerror or e)
            return None

    def _tb_metrics(self, metrics: dict) -> None:
        """Every evaluation's metrics in TensorBoard (metrics/<key>), beside the losses."""
        tb = self.tb
        if tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            tb = SummaryWriter(str(self.run_dir / "tb"))
        for k, v in metrics.items():
            tb.add_scalar(f"metrics/{k}", v, self.step)
        tb.flush()
        if tb is not self.tb:
            tb.close()

    def _keep_best(self, metrics: dict) -> None:
        """ckpt/best.pt (atomic) when this evaluation's best_metric beats the best so far."""
        from ..evaluation import FEATURE_SPACE_SUFFIXES, higher_is_better
        want = self.cfg.best_metric
        alts = [f"{want}{sfx}{m}" for sfx in ("", *FEATURE_SPACE_SUFFIXES) for m in ("", "_mean")]
        key = next((k for k in alts if k in metrics), None)
        if key is None:
            log.warning("--best-metric %s: not among this evaluation's results (%s); no best checkpoint", want,
                        ", ".join(metrics))
            return
        v, old = metrics[key], self.best.get("value")
        if old is not None and not (v > old if higher_is_better(key) else v < old):
            return
        self.best = {"key": key, "value": v, "step": self.step}
        from .checkpoint import save_atomic
        try:
            save_atomic(self.state(), self.run_dir / "ckpt" / "best.pt")
            log.info("ckpt/best.pt: %s = %.4g at step %d", key, v, self.step)
        except OSError as e:  # CheckpointWriteError is an OSError: the run and last.pt are unaffected
            log.warning("ckpt/best.pt not written (%s)", e)

    def _signal(self, signum, frame):
        log.warning("signal %d: finishing the current step, saving and exiting", signum)
        self._stop = True

    def fit(self) -> dict:
        cfg = self.cfg
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        import io
        losses_f = (self._side("losses.jsonl", open, self.run_dir / "losses.jsonl", "a") if self.main else None
                    ) or io.StringIO()  # rank 0 logs

        def log_losses(line):
            losses_f.write(line)
            losses_f.flush()
        tb = None
        if self.main:
            try:  # TensorBoard scalars when it is installed
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(str(self.run_dir / "tb"))
                self.tb = tb
            except (ImportError, OSError) as e:
                log.info("no TensorBoard scalars for this run (%s); losses.jsonl has every logged step", e)
        bar = None
        if cfg.progress and self.main:
            from tqdm import tqdm
            bar = tqdm(total=self.total, initial=self.step, desc=cfg.model, unit="step", dynamic_ncols=True)
        t0, seen = time.perf_counter(), 0
        try:
            while self.step < self.total and not self._stop:
                snapshot = self._snapshot() if cfg.skip_nonfinite else None
                self.model.train()
                if self.graphs is not None:
                    n, losses = self.graphs(self.step)
                else:
                    batch = next(self.loader)
                    n = batch["x_l"].shape[0] + batch["x_u"].shape[0]
                    losses = self.model.train_step(batch, self.step, self.amp)
                self.amp.update()  # the engine's one scaler update per step (models never call it)
                vals = _floats(losses)
                bad = [k for k, v in vals.items() if not math.isfinite(v)]
                if bad:
                    if not cfg.skip_nonfinite:
                        raise NonFiniteLoss(f"non-finite loss {bad[0]} = {vals[bad[0]]} at step {self.step + 1}; "
                                            f"the last good checkpoint is {self.run_dir / 'ckpt' / 'last.pt'}")
                    self._restore(snapshot)
                    self.skipped += 1
                    self._bad_run = getattr(self, "_bad_run", 0) + 1
                    if self._bad_run > 50:
                        raise NonFiniteLoss(f"{self._bad_run} consecutive non-finite steps at step {self.step + 1} "
                                            f"({bad[0]}): giving up")
                    log.warning("step %d: non-finite %s, skipped (%d so far)", self.step + 1, bad, self.skipped)
                    continue
                self._bad_run = 0
                if self.ema:
                    self._ema_update()
                self.step += 1
                seen += n
                if self.step % cfg.log_every == 0 or self.step == self.total:
                    self._side("losses.jsonl", log_losses,
                               json.dumps({"step": self.step, **vals, "skipped": self.skipped}) + "\n")
                    if tb is not None:
                        for k, v in vals.items():
                            self._side("TensorBoard scalars", tb.add_scalar, k, v, self.step)
                if bar:
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        ips = seen / max(1e-9, time.perf_counter() - t0)
                        bar.set_postfix({k.split("/")[-1][:6]: f"{v:.3f}" for k, v in list(vals.items())[:4]} |
                                        {"img/s": f"{ips:.0f}"})
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.main:
                    self._side("sample grids", self.sample_grid, self.run_dir / "samples" / f"step_{self.step:07d}.png")
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save()
                if cfg.eval_every and self.step % cfg.eval_every == 0:  # every rank takes a share
                    self.evaluate()
            # the last checkpoint and grid under the same handlers: a signal now only asks to stop, which the
            # run is doing - the write is never cut short
            self.save()
            if self.main:
                self._side("sample grids", self.sample_grid, self.run_dir / "samples" / "final.png")
        finally:
            self._side("losses.jsonl", losses_f.close)
            if tb is not None:
                self._side("TensorBoard scalars", tb.close)
            self.tb = None
            if bar:
                bar.close()
            for s, h in old.items():
                signal.signal(s, h)
        return {"step": self.step, "skipped": self.skipped, "interrupted": self._stop, "graphs": self.graphs_status}

    def _snapshot(self) -> dict:
        """Copies (not views) of what a step changes: networks and optimizer states. state_dict()
        returns the live tensors, which the step updates in place."""
        return copy.deepcopy({"model": self.model.state_dict(),
                              "optim": {k: o.state_dict() for k, o in self.model.optimizers().items()}})

    def _restore(self, s):
        self.model.load_state_dict(s["model"])
        for k, o in self.model.optimizers().items():
            o.load_state_dict(s["optim"][k])
        if self.graphs is not None:
            self.graphs.reset()  # optimizer state (and cached model tensors) are new objects: capture again

    # ------------------------------------------------------------------ samples and metrics
    @torch.no_grad()
    def generate(self, per_class: int, use_ema: bool = True, seed: int = EVAL_SEED) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 NHWC images, or float32 [N, 2] points for 2-D data; int64 labels), per_class per class."""
        return generate(self.model, self.generator(use_ema), self.ds.num_classes, per_class, seed, self.device,
                        self.ds.kind)

    @torch.no_grad()
    def classifier_accuracy(self) -> tuple[float | None, str | None]:
        """(% of the data set's own test split that the model's classifier gets right, None) - or
        (None, why not): no test split, or no classifier in the model. Streamed from the files."""
        from ..evaluation import open_test, test_accuracy
        test, why = open_test(self.cfg.data, self.cfg.size)
        if test is None:
            return None, why
        if test.kind != "image":
            return None, "not an image data set"
        was = self.model.training
        self.model.eval()
        try:
            acc = test_accuracy(self.model.classify, test, self.device, max_bad_fraction=self.cfg.max_bad_fraction)
            return acc, None
        except NotImplementedError as e:
            return None, str(e)
        finally:
            self.model.train(was)

    def evaluate(self) -> dict:
        """The preset's metrics (train.eval_metrics) of EMA samples against the training data
        (ssgan_fast.evaluation), plus c_acc; written to metrics.json (and a line of metrics.jsonl). Under
        DDP every rank calls it and takes a share of the samples and real images; rank 0 writes."""
        from ..evaluation import evaluate
        cfg = self.cfg
        t0 = time.perf_counter()
        samples = samples_of(self.model, self.generator(), self.ds.num_classes, cfg.eval_samples_per_class, self.device,
                             cfg.eval_batch)
        was = self.model.training
        self.model.eval()
        try:
            out = evaluate(samples, cfg.data, cfg.size, cfg.eval_metrics, extractor=cfg.eval_extractor,
                           classifier_epochs=cfg.eval_classifier_epochs, classifier_arch=cfg.eval_classifier,
                           batch=cfg.eval_batch, device=self.device,
                           seed=cfg.seed, max_bad_fraction=cfg.max_bad_fraction, strict=False,
                           pr_features=cfg.eval_pr_features)
        finally:
            self.model.train(was)
        if not self.main:  # a share of a distributed evaluation: rank 0 writes the result
            return out
        acc, why = self.classifier_accuracy()
        if acc is not None:
            out["metrics"]["c_acc"] = acc
        else:
            out["skipped"]["c_acc"] = why
        out["step"] = self.step
        out["preparation"] = self.model.preparation_info()
        out["protocol"] = {"samples_per_class": cfg.eval_samples_per_class, "seed": EVAL_SEED,
                           "generator": "ema" if self.ema else "raw", "metrics": cfg.eval_metrics}
        out["timing"]["total_s"] = time.perf_counter() - t0
        def write_metrics():
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **out["metrics"]}) + "\n")
            save_atomic_text(self.run_dir / "metrics.json", json.dumps(out, indent=1))
        self._side("metrics files", write_metrics)
        self._side("TensorBoard scalars", self._tb_metrics, out["metrics"])
        if self.cfg.best_metric:
            self._keep_best(out["metrics"])
        log.info("step %d metrics (%s): %s", self.step, out["extractor"],
                 {k: round(v, 3) for k, v in out["metrics"].items()})
        return out

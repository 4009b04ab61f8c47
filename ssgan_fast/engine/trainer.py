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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import Augment, Split, images_to_tensor, make_loader, make_split, open_dataset
from ..models import get_model
from .amp import Amp
from .graphs import StepGraphs, capture_blocker, prepare_optimizers
from .checkpoint import rng_state, save_atomic, set_rng_state

log = logging.getLogger("ssgan_fast")


@dataclass
class TrainConfig:
    model: str = "sphericgan"
    data: str = "digits"
    size: int = 32
    labels_per_class: int | None = None
    label_fraction: float | None = None
    split_seed: int = 0
    loader: str = "auto"
    batch_labeled: int = 32
    batch_unlabeled: int = 32
    steps: int = 0
    epochs: int = 0
    amp: str | None = None
    graphs: bool = False
    graphs_mode: str = "cuda"  # cuda | emulate (any device: checks the capture contract, no speed-up)
    graphs_warmup: int = 2
    compile: bool = False
    compile_backend: str = "inductor"
    ema: bool = True
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "cpu"
    out: str = "runs"
    name: str = ""
    log_every: int = 10
    sample_every: int = 500
    ckpt_every: int = 500
    eval_every: int = 0
    eval_metrics: str = "fid,intra_fid,ra"
    eval_samples_per_class: int = 50
    skip_nonfinite: bool = False
    augment_flip: bool = False
    augment_crop: int = 0
    augment_translate: float = 0.0
    progress: bool = True
    model_cfg: dict = field(default_factory=dict)

    @classmethod
    def from_run(cls, run_dir, **overrides) -> "TrainConfig":
        """The configuration a run folder was started with (its config.json), with overrides."""
        f = Path(run_dir) / "config.json"
        if not f.is_file():
            raise ValueError(f"{run_dir} is not a run folder (no config.json)")
        saved = json.loads(f.read_text())
        return cls(**{**saved["train"], "model_cfg": saved["model"], **overrides})


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
        out.update(zip(ts, vals))
    return {k: out[k] for k in losses}


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        self.cfg = cfg
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
        self.run_dir = Path(resume) if resume else Path(cfg.out) / (cfg.name or f"{cfg.model}-{cfg.data.split(':')[0]}")
        self.ds = open_dataset(cfg.data, "train", cfg.size)
        info = {"kind": self.ds.kind, "size": getattr(self.ds, "size", 0), "channels": getattr(self.ds, "channels", 0),
                "num_classes": self.ds.num_classes, "class_names": list(getattr(self.ds, "class_names", []) or [])}
        attrs = getattr(self.ds, "attrs", None)
        if attrs is not None:
            info.update(num_attrs=int(attrs.shape[1]), attr_names=list(self.ds.attr_names))
        split_file = self.run_dir / "split.json"
        if resume and split_file.is_file():
            self.split = Split.load(split_file, self.ds.labels)
        else:
            self.split = make_split(self.ds.labels, self.ds.num_classes, cfg.labels_per_class, cfg.label_fraction,
                                    cfg.split_seed)
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
        self.loader = make_loader(cfg.loader, self.ds, self.split, cfg.batch_labeled, cfg.batch_unlabeled,
                                  self.device, aug, seed=cfg.seed + self.rank, rank=self.rank, world_size=self.world)
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
        self._stop = False
        if resume:
            self._load(self.run_dir / "ckpt" / "last.pt")
        else:
            if self.main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.split.save(split_file)
                (self.run_dir / "config.json").write_text(json.dumps(
                    {"train": dataclasses.asdict(cfg), "model": dataclasses.asdict(self.model_cfg)}, indent=1))
            if hasattr(self.model, "fit_prior"):
                imgs = images_to_tensor(self.ds.images) if self.ds.in_memory else None
                if imgs is not None:
                    self.model.fit_prior(imgs.to(self.device), seed=cfg.seed)
            if hasattr(self.model, "fit_clusters"):  # LCP-GAN: intra-class clusters of the labeled images
                lab = self.split.labeled
                imgs = images_to_tensor(np.stack([self.ds.load(int(i)) for i in lab]))
                self.model.fit_clusters(imgs.to(self.device), torch.as_tensor(self.ds.labels[lab]).to(self.device),
                                        seed=cfg.seed)
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
                "config": dataclasses.asdict(self.cfg), "model_config": dataclasses.asdict(self.model_cfg)}

    @property
    def graphs_status(self) -> str:
        """"off", "eager: <why capture was not possible>", or the graph runner's own status."""
        return self.graphs.status if self.graphs is not None else self._graphs_off

    def save(self):
        if self.main:
            save_atomic(self.state(), self.run_dir / "ckpt" / "last.pt")

    def _load(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        s = torch.load(path, map_location=self.device, weights_only=False)
        self._restore(s)
        for k, m in (self.ema or {}).items():
            m.load_state_dict(s["ema"][k])
        self.amp.load_state_dict(s["amp"])
        self.loader.load_state_dict(s["loader"])
        set_rng_state(s["rng"])
        self.step, self.skipped = s["step"], s["skipped"]
        log.info("resumed %s at step %d", path, self.step)

    # ------------------------------------------------------------------ loop
    @torch.no_grad()
    def _ema_update(self):
        # warm-up: the average starts short and lengthens to ema_decay (an EMA of a few hundred
        # steps with decay 0.999 would still be mostly the random initial generator)
        d = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for n, m in self.ema.items():
            src = getattr(self.model, n)
            for pe, p in zip(m.parameters(), src.parameters()):
                pe.lerp_(p.detach(), 1 - d)
            for be, b in zip(m.buffers(), src.buffers()):
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
            pts = self.model.sample(y.to(self.device), self.model.noise(2000, generator=g, device="cpu").to(self.device),
                                    self.generator()).float().cpu()
            lo, hi = torch.from_numpy(self.ds.points).min(0).values - 0.5, torch.from_numpy(self.ds.points).max(0).values + 0.5
            ij = ((pts - lo) / (hi - lo) * 127).round().long()
            ok = ((ij >= 0) & (ij < 128)).all(1)
            img = torch.zeros(128 * 128).index_add_(0, (127 - ij[ok, 1]) * 128 + ij[ok, 0], torch.ones(int(ok.sum())))
            img = torch.log1p(img).view(1, 128, 128)
            vu.save_image(img / img.max().clamp_min(1e-9), path)
            return
        x = self.model.sample(self.fixed_labels, self.fixed_noise, self.generator())
        vu.save_image(x.float().add(1).div(2).clamp(0, 1), path, nrow=self.per_class)

    def _signal(self, signum, frame):
        log.warning("signal %d: finishing the current step, saving and exiting", signum)
        self._stop = True

    def fit(self) -> dict:
        cfg = self.cfg
        old = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        import io
        losses_f = open(self.run_dir / "losses.jsonl", "a") if self.main else io.StringIO()  # rank 0 logs
        tb = None
        if self.main:
            try:  # TensorBoard scalars when it is installed
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:
                pass
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
                    losses_f.write(json.dumps({"step": self.step, **vals, "skipped": self.skipped}) + "\n")
                    losses_f.flush()
                    if tb is not None:
                        for k, v in vals.items():
                            tb.add_scalar(k, v, self.step)
                if bar:
                    bar.update(1)
                    if self.step % cfg.log_every == 0:
                        ips = seen / max(1e-9, time.perf_counter() - t0)
                        bar.set_postfix({k.split("/")[-1][:6]: f"{v:.3f}" for k, v in list(vals.items())[:4]} |
                                        {"img/s": f"{ips:.0f}"})
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.main:
                    self.sample_grid(self.run_dir / "samples" / f"step_{self.step:07d}.png")
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save()
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.main:
                    self.evaluate()
        finally:
            losses_f.close()
            if tb is not None:
                tb.close()
            if bar:
                bar.close()
            for s, h in old.items():
                signal.signal(s, h)
        self.save()
        if self.main:
            self.sample_grid(self.run_dir / "samples" / "final.png")
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
    def generate(self, per_class: int, use_ema: bool = True, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 NHWC images, or float32 [N, 2] points for 2-D data; int64 labels), per_class per class."""
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(self.ds.num_classes).repeat_interleave(per_class)
        out = []
        for i in range(0, len(labels), 100):
            y = labels[i:i + 100].to(self.device)
            z = self.model.noise(len(y), generator=g, device="cpu").to(self.device)
            out.append(self.model.sample(y, z, self.generator(use_ema)).float().cpu())
        x = torch.cat(out)
        if self.ds.kind == "points":
            return x.numpy().astype(np.float32), labels.numpy()
        imgs = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return imgs, labels.numpy()

    @torch.no_grad()
    def classifier_accuracy(self) -> float | None:
        """% of the held-out real images (the data set's test split) the model's classifier gets right;
        None where the data set has no test split or the model no classifier."""
        from ..data import DataError
        try:
            test = open_dataset(self.cfg.data, "test", self.cfg.size)
        except DataError:
            return None
        if test.kind != "image" or not test.in_memory:
            return None
        was = self.model.training
        self.model.eval()
        try:
            hits = 0
            for i in range(0, len(test), 256):
                x = images_to_tensor(test.images[i:i + 256]).to(self.device)
                hits += int((self.model.classify(x).cpu() == torch.as_tensor(test.labels[i:i + 256])).sum())
        except NotImplementedError:
            return None
        finally:
            self.model.train(was)
        return 100.0 * hits / len(test)

    def evaluate(self) -> dict:
        """FID / Intra-FID / RA of EMA samples in a digits-classifier feature space (ssgan_fast.evaluate)."""
        from ..evaluate import build_parser, evaluate
        imgs, labels = self.generate(self.cfg.eval_samples_per_class)
        path = self.run_dir / "eval_samples.npz"
        np.savez(path, images=imgs, labels=labels)
        args = build_parser().parse_args(["--samples", str(path), "--data", self.cfg.data, "--size", str(self.cfg.size),
                                          "--metrics", self.cfg.eval_metrics, "--extractor", "classifier",
                                          "--train-classifier", "--classifier-epochs", "10", "--device",
                                          str(self.device)])
        out = evaluate(args)
        acc = self.classifier_accuracy()
        if acc is not None:
            out["metrics"]["c_acc"] = acc
        out["step"] = self.step
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **out["metrics"]}) + "\n")
        (self.run_dir / "metrics.json").write_text(json.dumps(out, indent=1))
        log.info("step %d metrics: %s", self.step, {k: round(v, 3) for k, v in out["metrics"].items()})
        return out

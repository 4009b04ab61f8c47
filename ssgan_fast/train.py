"""Train a model.

    python -m ssgan_fast.train                                   # SphericGAN on the built-in digits, CPU
    python -m ssgan_fast.train --model sphericgan --data cub200:/data/CUB_200_2011 --amp bf16

Settings are layered: TrainConfig defaults < the model's preset (ssgan_fast/configs/<model>.yaml,
section `default`, then the section named after the data set family) < --config FILE (same
layout: `train:` / `model:`) < command-line flags < --set key=value (train.<field> or
model.<field>). Unknown keys and illegal combinations are rejected before anything runs (exit 2).
A new run goes into the next numbered folder, runs/00001-<model>-<data>/, runs/00002-.../ (or
runs/NAME with --name NAME, which must be new): a second run never touches the first. The folder
gets config.json, split.json, losses.jsonl, samples/*.png, ckpt/last.pt + ckpt/prev.pt and
metrics.json (the preset's paper metrics at the end of training).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from importlib import resources
from pathlib import Path

import torch
import yaml

log = logging.getLogger("ssgan_fast")


def build_parser() -> argparse.ArgumentParser:
    from ._cli import Parser, count, fraction, natural, unit
    from .data import LOADERS
    from .models import MODELS
    p = Parser(prog="python -m ssgan_fast.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sphericgan", choices=sorted(MODELS), help="which system to train")
    p.add_argument("--data", default="digits", help="data set spec (digits, cub200:/path, folder:/path, ...)")
    p.add_argument("--preset", default=None,
                   help="the section of the model's preset file to use instead of the one named after the data set "
                        "family, e.g. --preset dogs120 / celeba500 for lcpgan on class folders, --preset fs100 for "
                        "medgan (python -m ssgan_fast.train --model M --preset list lists them)")
    p.add_argument("--config", default=None, help="YAML file with train: / model: overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set model.lam=2 --set train.batch_labeled=64")
    p.add_argument("--amp", nargs="?", const="bf16", choices=("bf16", "fp16"), default=None,
                   help="mixed precision: autocast dtype, bare --amp = bf16 (fp16 adds a GradScaler)")
    p.add_argument("--graphs", action="store_true",
                   help="capture whole train steps in CUDA graphs after a short eager warm-up and replay them (CUDA "
                        "only; --amp bf16 or fp32; --set train.graphs_mode=emulate checks the capture contract on any "
                        "device without the speed-up)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks in place (backend train.compile_backend, default inductor)")
    p.add_argument("--ema", dest="ema", action="store_true", default=None, help="keep an EMA generator (default on)")
    p.add_argument("--no-ema", dest="ema", action="store_false")
    p.add_argument("--batch", type=count, default=None, help="labeled = unlabeled batch size")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=count, default=None)
    g.add_argument("--epochs", type=count, default=None)
    g2 = p.add_mutually_exclusive_group()
    g2.add_argument("--labels-per-class", type=count, default=None)
    g2.add_argument("--label-fraction", type=fraction, default=None)
    g2.add_argument("--labeled", default=None, metavar="FILE",
                    help="a file of image ids / paths (one per line) whose labels are kept: your own labeled subset")
    p.add_argument("--split-seed", type=natural, default=None)
    p.add_argument("--max-bad-fraction", type=unit, default=None,
                   help="stop when more than this fraction of the images is unreadable (default 0.01)")
    p.add_argument("--size", type=count, default=None, help="image resolution")
    p.add_argument("--loader", choices=LOADERS, default=None)
    p.add_argument("--out", default=None, help="folder of the runs (default runs/)")
    p.add_argument("--name", default=None,
                   help="run folder name (must be new); default: the next numbered runs/<00001>-<model>-<data>")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR exactly")
    p.add_argument("--seed", type=natural, default=None)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--eval-every", type=natural, default=None)
    p.add_argument("--sample-every", type=natural, default=None)
    p.add_argument("--ckpt-every", type=natural, default=None)
    p.add_argument("--init-from", default=None, metavar="RUN_OR_CKPT",
                   help="fine-tune: a new run starting from another run's weights (RUN, RUN:best or a .pt file) - G, "
                        "D, C, the EMA and the fitted preparation where the shapes match; layers whose shapes differ "
                        "(a new class count) are re-initialised and listed; new data and settings are allowed")
    p.add_argument("--init-keep-opt", action="store_true", default=None,
                   help="with --init-from: keep the source's optimizer states too (default: reset)")
    p.add_argument("--best-metric", default=None, metavar="KEY",
                   help="keep ckpt/best.pt by this metric of the evaluations (--eval-every and the final one), e.g. "
                        "fid_clf, fid, is_clf_mean, ra, c_acc; lower or higher is better is known per metric; "
                        "generate / evaluate take RUN:best")
    p.add_argument("--skip-nonfinite", action="store_true", default=None,
                   help="skip (and count) steps with a non-finite loss instead of stopping")
    p.add_argument("--no-final-eval", action="store_true", help="skip the metrics after training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=natural, default=None,
                   help="CPU intra-op threads (default: 1 for CPU runs at <= 16 px or on a busy machine, else one per "
                        "core; 0: torch's default, the choice before; OMP_NUM_THREADS is respected); printed at start")
    return p


def _parse_value(v: str):
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v


def presets_of(model: str) -> dict:
    """The sections of ssgan_fast/configs/<model>.yaml ({} for a model without a preset file)."""
    try:
        text = resources.files("ssgan_fast.configs").joinpath(f"{model}.yaml").read_text()
    except FileNotFoundError:  # a model without a preset: TrainConfig's and its Config's defaults
        return {}
    return yaml.safe_load(text) or {}


def _preset(model: str, data: str, preset: str | None = None) -> dict:
    presets = presets_of(model)
    family = data.split(":")[0]
    if preset is not None and preset not in presets:
        known = sorted(set(presets) - {"default"})
        raise ValueError(f"--preset {preset!r}: {model} has no such preset; known: {', '.join(known) or 'none'}")
    out = {"train": {}, "model": {}}
    for sec in ("default", preset or family):
        for k in ("train", "model"):
            out[k].update((presets.get(sec) or {}).get(k) or {})
    return out


def resolve(args) -> TrainConfig:  # noqa: F821
    from .engine.trainer import TrainConfig
    from .models import get_model
    from .models.base import config_from_dict
    layers = _preset(args.model, args.data, args.preset)
    if args.config:
        f = Path(args.config)
        if not f.is_file():
            raise ValueError(f"--config {f} does not exist")
        try:
            user = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as e:  # the file and the line, not a parser traceback
            mark = getattr(e, "problem_mark", None)
            where = f"{f}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(f)
            raise ValueError(f"--config {where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--config {f}: cannot be read ({e})") from None
        if not isinstance(user, dict):
            raise ValueError(f"--config {f}: expected a mapping with train: / model: sections, got "
                             f"{type(user).__name__}")
        bad = set(user) - {"train", "model"}
        if bad:
            raise ValueError(f"--config {f}: top-level keys must be train / model, got {sorted(bad)}")
        for k in ("train", "model"):
            sec = user.get(k) or {}
            if not isinstance(sec, dict):
                raise ValueError(f"--config {f}: {k}: must be a mapping of settings, got {sec!r}")
            layers[k].update(sec)
    t = layers["train"]
    flags = {"amp": args.amp, "graphs": args.graphs or None, "compile": args.compile or None, "ema": args.ema,
             "steps": args.steps, "epochs": args.epochs,
             "labels_per_class": args.labels_per_class, "label_fraction": args.label_fraction,
             "split_seed": args.split_seed, "labeled": args.labeled, "max_bad_fraction": args.max_bad_fraction,
             "size": args.size, "loader": args.loader, "out": args.out, "name": args.name,
             "seed": args.seed, "device": args.device, "eval_every": args.eval_every, "sample_every": args.sample_every,
             "ckpt_every": args.ckpt_every, "skip_nonfinite": args.skip_nonfinite, "best_metric": args.best_metric,
             "init_from": args.init_from, "init_keep_opt": args.init_keep_opt}
    t.update({k: v for k, v in flags.items() if v is not None})
    if args.steps is not None:
        t["epochs"] = 0
    if args.epochs is not None:
        t["steps"] = 0
    if args.labels_per_class is not None:
        t["label_fraction"] = None
        t["labeled"] = ""
    if args.label_fraction is not None:
        t["labels_per_class"] = None
        t["labeled"] = ""
    if args.labeled is not None:
        t["labels_per_class"] = t["label_fraction"] = None
    if args.batch is not None:
        t["batch_labeled"] = t["batch_unlabeled"] = args.batch
    for kv in args.set:
        key, eq, val = kv.partition("=")
        sec, dot, name = key.partition(".")
        if not eq or not dot or sec not in ("train", "model") or not name:
            raise ValueError(f"--set {kv!r}: use train.<field>=value or model.<field>=value")
        layers[sec][name] = _parse_value(val)
    t["model"], t["data"] = args.model, args.data
    t["preset"] = args.preset or args.data.split(":")[0]
    t["progress"] = not args.no_progress
    if "device" not in t:
        t["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(t) - fields)
    if unknown:
        raise ValueError(f"unknown train setting(s) {unknown}; allowed: {', '.join(sorted(fields - {'model_cfg'}))}")
    Model = get_model(args.model)
    config_from_dict(Model.Config, layers["model"], f"model settings of {args.model}")  # validate now
    t["model_cfg"] = layers["model"]
    cfg = config_from_dict(TrainConfig, t, "train settings").check()
    dev = torch.device(cfg.device)
    if cfg.graphs and cfg.graphs_mode == "cuda" and dev.type != "cuda":
        raise ValueError("--graphs captures CUDA graphs and needs a CUDA device (got --device "
                         f"{cfg.device}); drop --graphs on CPU (--set train.graphs_mode=emulate checks that the steps "
                         "are capturable, without a GPU)")
    if cfg.compile:
        from torch._dynamo import list_backends
        known = list_backends(exclude_tags=())
        if cfg.compile_backend not in known:
            raise ValueError(f"train.compile_backend {cfg.compile_backend!r} is not a torch.compile backend; "
                             f"known: {', '.join(sorted(known))}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg.device}: no CUDA device is available")
    if cfg.steps and cfg.epochs:
        raise ValueError("give steps or epochs, not both")
    from .metrics.classifier import check_classifier_arch
    try:
        check_classifier_arch(cfg.eval_classifier)
    except ValueError as e:
        raise ValueError(f"train.eval_classifier: {e}") from None
    # the final evaluation's settings, checked before any training (not after hours of it)
    from .evaluation import EXTRACTORS, PR_FEATURES, EvalError, parse_metrics
    try:
        parse_metrics(cfg.eval_metrics)
    except EvalError as e:
        raise ValueError(f"train.eval_metrics: {e}") from None
    if cfg.init_keep_opt and not cfg.init_from:
        raise ValueError("--init-keep-opt needs --init-from")
    if cfg.best_metric:
        from .evaluation import metric_of
        base = metric_of(cfg.best_metric)
        if base is None or (base != "c_acc" and base not in parse_metrics(cfg.eval_metrics)):
            raise ValueError(f"--best-metric {cfg.best_metric!r}: not a result of train.eval_metrics "
                             f"({cfg.eval_metrics}) or c_acc; add its metric to train.eval_metrics")
    for key, value, choices in (("eval_extractor", cfg.eval_extractor, EXTRACTORS),
                                ("eval_pr_features", cfg.eval_pr_features, PR_FEATURES)):
        if value not in choices:
            raise ValueError(f"train.{key}: {value!r} is not one of {', '.join(choices)}")
    return cfg


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ._sys import tune_malloc
    tune_malloc()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .engine.run import torchrun_group
    with torchrun_group(args.device) as g:  # launched by torchrun: the process group, this rank's GPU
        if g.world > 1:
            args.device = g.device
            args.no_progress = args.no_progress or g.rank != 0
        return _main(args, parser)


RESUME_FLAGS = ("resume", "steps", "no_progress", "no_final_eval", "device", "threads")  # what --resume takes


def _check_resume_flags(args, parser) -> None:
    """--resume continues a run exactly as configured: a flag that would change it (model, data, batch,
    settings, output, ...) is an error naming it, never silently ignored."""
    def name(dest, value):  # the flag that gives dest this value (--no-ema, not --ema, for ema=False)
        acts = [a for a in parser._actions if a.dest == dest and a.option_strings]
        hit = [a for a in acts if a.const is not None and a.const == value]
        return (hit or acts)[0].option_strings[0] if acts else dest
    defaults = vars(parser.parse_args([]))
    given = [name(k, v) for k, v in vars(args).items() if k not in RESUME_FLAGS and v != defaults.get(k)]
    if given:
        raise ValueError(f"--resume continues {args.resume} as it was configured; {', '.join(given)} would change "
                         "the run: drop them (--resume takes --steps, --device, --threads, --no-progress, "
                         "--no-final-eval), or start a new run")


def _main(args, parser) -> int:
    from .data import DataError
    from .engine.run import USER_ERRORS as user_errors
    from .engine.trainer import NonFiniteLoss, Trainer
    if args.preset == "list":
        for name, sec in presets_of(args.model).items():
            if name != "default":
                t = (sec or {}).get("train") or {}
                print(f"{name}: " + ", ".join(f"{k}={t[k]}" for k in ("size", "labels_per_class", "label_fraction",
                                                                     "batch_labeled", "steps", "epochs") if k in t))
        return 0
    import signal

    def term(signum, frame):  # SIGTERM outside the training loop ends like Ctrl-C: one line, exit 130
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, term)
    try:
        if args.resume:
            from .engine.config import TrainConfig
            _check_resume_flags(args, parser)
            over = {"progress": not args.no_progress}
            if args.device is not None:
                over["device"] = args.device
            if args.steps is not None:
                over.update(steps=args.steps, epochs=0)
            try:
                cfg = TrainConfig.from_run(args.resume, **over)
            except ValueError as e:
                raise ValueError(f"--resume: {e}") from e
        else:
            cfg = resolve(args)
        from ._sys import pick_threads
        threads, why = pick_threads(args.threads, cfg.device, cfg.size)
        log.info("threads: %d (%s)", threads, why)
        from .engine.run import check_start_folders
        check_start_folders(args.resume or cfg.out, evaluation=not args.no_final_eval or bool(cfg.eval_every))
        trainer = Trainer(cfg, resume=args.resume)
    except user_errors as e:
        parser.fail(e)
    except KeyboardInterrupt as e:  # before the first step: nothing trained; a made folder resumes from step 0
        where = getattr(e, "run_dir", None)
        print("interrupted before training started" + (f"; start it again with --resume {where}" if where else
                                                         ": nothing was written"), file=sys.stderr)
        return 130
    log.info("run %s: %s on %s (%d labeled / %d unlabeled), %d steps on %s", trainer.run_dir, cfg.model, cfg.data,
             len(trainer.split.labeled), len(trainer.split.unlabeled), trainer.total, cfg.device)
    from .engine.checkpoint import CheckpointWriteError
    try:
        result = trainer.fit()
    except NonFiniteLoss as e:
        log.error("%s", e)
        return 3
    except CheckpointWriteError as e:  # a full disk: the earlier checkpoints are intact, resume once there is room
        print(f"error: {e}; free space, then continue with --resume {trainer.run_dir}", file=sys.stderr)
        return 3
    except DataError as e:  # too many unreadable images met during training
        parser.fail(e)
    if result["interrupted"]:
        log.info("interrupted at step %d; checkpoint saved in %s", result["step"], trainer.run_dir / "ckpt")
        return 130
    if not args.no_final_eval and trainer.ds.kind == "image":  # every rank takes a share of the evaluation
        try:
            out = trainer.evaluate()
        except KeyboardInterrupt:
            print(f"interrupted during the final evaluation; the trained run is kept in {trainer.run_dir} "
                  f"(python -m ssgan_fast.evaluate --fake {trainer.run_dir} evaluates it)", file=sys.stderr)
            return 130
        except user_errors as e:
            parser.fail(type(e)(f"final evaluation: {e} (the trained run is kept in {trainer.run_dir})"))
        if trainer.main:
            print(json.dumps(out["metrics"], indent=1))
    log.info("done: the run is in %s%s", trainer.run_dir, f" (graphs: {result['graphs']})" if cfg.graphs else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())

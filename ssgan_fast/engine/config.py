"""The training configuration (TrainConfig) and the run folder's config.json."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


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
    # any of evaluate's metrics (ssgan_fast.evaluation.METRICS): fid, intra_fid, cfid, is, ra, gan_train, gan_test,
    # avg_conf, kid, intra_kid, pr, intra_pr, dc - one pass over the samples per extractor; presets name their paper's
    eval_metrics: str = "fid,intra_fid,ra"
    eval_samples_per_class: int = 50
    # the features of precision / recall: extractor (the eval extractor's) | vgg16 (VGG-16 fc2, as pr50k3)
    eval_pr_features: str = "extractor"
    # auto (Inception when its weights are present, else the classifier) | inception | classifier | inception-tf |
    # dinov2 | clip | clip-l14 (the spaces of published numbers; ssgan_fast.metrics.extractors)
    eval_extractor: str = "auto"
    eval_classifier_epochs: int = 10
    # small (a 3-stage CNN) | resnet18 (the AAM paper's GAN-train / GAN-test classifier, Sec. 4.3)
    eval_classifier: str = "small"
    eval_batch: int = 50
    # keep ckpt/best.pt by this result key of the evaluations (fid_clf, is_clf_mean, ra, c_acc, ...; the direction
    # is known per metric); "" = none
    best_metric: str = ""
    # fine-tuning: a new run that starts from another run's weights (RUN, RUN:best or a checkpoint file) where
    # the shapes match; init_keep_opt also keeps its optimizer states
    init_from: str = ""
    init_keep_opt: bool = False
    max_bad_fraction: float = 0.01  # more unreadable images than this fraction stops the run (naming them)
    # a file of image ids / paths whose labels are kept (the labeled subset), instead of a drawn split
    labeled: str = ""
    skip_nonfinite: bool = False
    augment_flip: bool = False
    augment_crop: int = 0
    augment_translate: float = 0.0
    progress: bool = True
    preset: str = ""  # the preset section the run was configured from (the data set family unless --preset)
    model_cfg: dict = field(default_factory=dict)

    def check(self) -> TrainConfig:
        """Range checks of the settings (types are checked where they are read: models.base.config_from_dict);
        ValueError naming the setting. Returns self."""
        def need(ok, key, what):
            if not ok:
                raise ValueError(f"train.{key} must be {what}, got {getattr(self, key)!r}")
        for key in ("size", "batch_labeled", "log_every", "eval_batch", "eval_samples_per_class"):
            need(getattr(self, key) >= 1, key, ">= 1")
        for key in ("batch_unlabeled", "steps", "epochs", "sample_every", "ckpt_every", "eval_every", "graphs_warmup",
                    "eval_classifier_epochs", "augment_crop", "augment_translate"):
            need(getattr(self, key) >= 0, key, ">= 0 (0: off)" if key.endswith("_every") else ">= 0")
        need(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1)")
        need(0 <= self.max_bad_fraction <= 1, "max_bad_fraction", "in [0, 1]")
        need(self.label_fraction is None or 0 < self.label_fraction <= 1, "label_fraction", "in (0, 1]")
        need(self.labels_per_class is None or self.labels_per_class >= 1, "labels_per_class", ">= 1")
        return self

    @classmethod
    def from_run(cls, run_dir, **overrides) -> TrainConfig:
        """The configuration a run folder was started with (its config.json), with overrides."""
        f = Path(run_dir) / "config.json"
        if not f.is_file():
            raise ValueError(f"{run_dir} is not a run folder (no config.json)")
        try:
            saved = json.loads(f.read_text())
            train, model = saved["train"], saved["model"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{f} is damaged or not a ssgan_fast config ({type(e).__name__}: {e})") from None
        known = {k.name for k in dataclasses.fields(cls)}
        unknown = sorted(set(train) - known)
        if unknown:
            raise ValueError(f"{f}: unknown train setting(s) {unknown} (a run of another ssgan_fast version?)")
        return cls(**{**train, "model_cfg": model, **overrides})



"""Each paper's claim, method against its own baseline, on the built-in digits (``python -m
ssgan_fast.experiments claims``).

Every claim trains its arms with one budget (the model's digits preset, the same steps for every arm:
the claim's ``steps``, shorter than the preset's for the slow models so that the whole set stays near
two CPU hours on 2 cores) on paired seeds - arm A and arm B of seed s share the seed, the data split and
the evaluation noise - and reports the paper's own metrics from each run's final evaluation (metrics.json; the digits
classifier's feature space, as every digits run), plus the weights-free digits scores (recognition by
an SVM, within-class spread: ``experiments.digits_run_scores``). For each metric: mean ± sd per arm,
the paired difference (method - baseline) and two-sided paired t / Wilcoxon signed-rank p-values.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# metric key -> (label, True where higher is better)
METRIC_INFO = {
    "gan_train": ("GAN-train %", True), "gan_test": ("GAN-test %", True), "fid_clf": ("FID (clf space)", False),
    "intra_fid_clf": ("class-wise FID (clf space)", False), "cfid_clf": ("cFID (clf space)", False),
    "is_clf_mean": ("IS (clf space)", True), "ra": ("RA %", True),
    "recognition_percent": ("recognised % (SVM)", True), "spread_ratio": ("spread ratio", True),
    "fd_pixels": ("FD of the 8x8 pixels", False),
}


@dataclass
class Claim:
    paper: str  # the paper's title
    where: str  # the table / section of the claim
    text: str  # the claim in one line
    arms: dict  # arm name -> (model, [--set KEY=VALUE, ...])
    baseline: str  # the arm the others are compared with
    metrics: tuple  # metrics.json keys (the paper's own metrics), then the digits scores
    eval_metrics: str  # train.eval_metrics of every arm
    quick: tuple = ()  # the arms of the --quick subset (empty: the claim is not in it)
    further: tuple = ()  # arms beyond the paper's rows (diagnostics), trained only with --all-arms
    cost_s: float = 150.0  # CPU seconds of one run (1 thread, measured): the longest claims are scheduled first
    notes: list = field(default_factory=list)
    steps: int | None = None  # every arm's steps (one budget where the arms' presets differ); None: the preset's


AAM_PAPER = "Label Geometry Aware Discriminator for Conditional Generative Networks"
CLAIMS = {
    "aam-acgan": Claim(
        AAM_PAPER, "Tables 2 and 4", "the AAM auxiliary classifier beats softmax ACGAN in GAN-train, GAN-test and FID",
        {"softmax": ("aam-acgan", ["model.cls=softmax"]), "aam": ("aam-acgan", ["model.cls=aam"]),
         "aam calibrated": ("aam-acgan", ["model.cls=aam", "model.calibrate=true"])}, "softmax",
        ("gan_train", "gan_test", "fid_clf"), "gan_train,gan_test,fid", quick=("softmax", "aam"),
        further=("aam calibrated",), cost_s=95.0,
        notes=["aam: the paper's Eq. 8 loss as written, at the digits preset's s = 8 (at s = 30 its G drew pixel "
               "noise); aam calibrated (--all-arms): the loss scaled to start at log C, AAMHead's drop-in default."]),
    "aam-stargan": Claim(
        AAM_PAPER, "Tables 2-4", "AAM-StarGAN beats StarGAN in GAN-train, GAN-test and FID",
        {"softmax": ("aam-stargan", ["model.cls=softmax"]), "aam": ("aam-stargan", ["model.cls=aam"]),
         "aam raw": ("aam-stargan", ["model.cls=aam", "model.calibrate=false"])}, "softmax",
        ("gan_train", "gan_test", "fid_clf"), "gan_train,gan_test,fid",
        notes=["aam: the digits preset's calibrated AAM loss (starts at log C); aam raw: the paper's Eq. 8 loss as "
               "written, which outweighs the WGAN-GP critic's terms about 16:1 at the start."], steps=1000,
        further=("aam raw",), cost_s=70.0),
    "medgan": Claim(
        "Mask-Embedded Discriminator with Region-based Semantic Regularization for Semi-Supervised Class-"
        "Conditional Image Synthesis", "Tables 2 and 3", "MED-GAN beats its Triple-GAN baseline in IS, FID and "
        "class-wise FID",
        {"triplegan": ("triplegan", []), "medgan": ("medgan", []),
         "medgan (baseline's settings)": ("medgan", ["model.label_init_std=2.0", "model.ms_weight=0.02"])},
        "triplegan", ("is_clf_mean", "fid_clf", "intra_fid_clf"), "is,fid,intra_fid", quick=("triplegan", "medgan"),
        steps=1000, further=("medgan (baseline's settings)",), cost_s=205.0,
        notes=["Both presets are tuned to the digits bar: MED-GAN's (mode seeking 0.1, 800 steps) and Triple-GAN's "
               "(A_label N(0, 2^2), mode seeking 0.02, 1 500 steps) differ; the third arm is MED-GAN with the "
               "baseline's values, the paper's protocol (the same networks and hyper-parameters, the components "
               "on). Every arm trains 1 000 steps."]),
    "cvaegan": Claim(
        "CVAE-GAN: Fine-Grained Image Generation through Asymmetric Training", "Sec. S7 (Fig. S8) and Sec. 3.1-3.2",
        "each pairwise feature-matching term of L_G (pixels, D features, C features) and the mean feature matching "
        "help: the full model against each one removed",
        {"full": ("cvaegan", []), "no L_G(img)": ("cvaegan", ["model.pair_img=false"]),
         "no L_G(D)": ("cvaegan", ["model.pair_d=false"]), "no L_G(C)": ("cvaegan", ["model.pair_c=false"]),
         "no mean FM": ("cvaegan", ["model.mean_fm_d=false", "model.mean_fm_c=false"])}, "full",
        ("fid_clf", "is_clf_mean", "ra"), "fid,is,ra", steps=400, cost_s=125.0),
    "sphericgan": Claim(
        "SphericGAN: Semi-supervised Hyper-spherical Generative Adversarial Networks for Fine-grained Image "
        "Synthesis", "Table 1", "latent clustering (LC), semantic verification (SV) and cluster alignment (CA) "
        "each improve on the baseline",
        {"baseline": ("sphericgan", ["model.latent_clustering=false", "model.semantic_verification=false",
                                     "model.cluster_alignment=false"]),
         "+LC": ("sphericgan", ["model.semantic_verification=false", "model.cluster_alignment=false"]),
         "+LC+SV": ("sphericgan", ["model.cluster_alignment=false"]),
         "+LC+SV+CA": ("sphericgan", [])}, "baseline",
        ("fid_clf", "cfid_clf", "is_clf_mean", "ra"), "fid,cfid,is,ra", cost_s=190.0,
        notes=["Every arm trains the preset's 800 steps: at 400 the baseline recognised 30 % of its digits (seed 0), "
               "too early for a comparison."]),
    "lcpgan": Claim(
        "Exploring Intra-class Variation Factors with Learnable Cluster Prompts for Semi-supervised Image "
        "Synthesis (LCP-GAN)", "Table 2",
        "clusters and learned class prompts improve on Semi-BigGAN",
        {"Semi-BigGAN": ("lcpgan", ["model.scheme=triple", "model.clusters=false", "model.prompt_d=false"]),
         "+Clusters": ("lcpgan", ["model.scheme=triple", "model.prompt_d=false", "model.d_clusters=true"]),
         "LCP-GAN w/o LP": ("lcpgan", ["model.learn_prompts=false"]),
         "LCP-GAN": ("lcpgan", [])}, "Semi-BigGAN",
        ("fid_clf", "intra_fid_clf", "ra"), "fid,intra_fid,ra", cost_s=205.0,
        further=("LCP-GAN w/o LP",),
        notes=["Every arm trains the preset's 800 steps.",
               "The +L_CLIP row needs CLIP's trained weights (none can be fetched here); the digits preset's CLIP "
               "is a small random network, so D_prompt's prompts are learned against random image features.",
               "LCP-GAN w/o LP (--all-arms): without learned prompts; with a random-weight CLIP it equals the full "
               "model (FID 9.5 against 9.3, p = 0.53 over 5 seeds), so the default set leaves it out."]),
}
DIGITS = ("recognition_percent", "spread_ratio", "fd_pixels")


def _run_one(claim_name: str, arm: str, model: str, sets: list, seed: int, out: Path, threads: int,
             eval_metrics: str, steps: int | None, device: str, extra: list = ()) -> dict:
    """Train one arm on one seed in its own process (OMP_NUM_THREADS=threads); reuse a finished run of
    the same command. Returns metrics.json's metrics + the digits scores + seconds."""
    from .experiments import _done_before, digits_run_scores
    name = f"{_tag(arm)}-s{seed}"
    run = out / claim_name / name
    cmd = [sys.executable, "-m", "ssgan_fast.train", "--model", model, "--seed", str(seed), "--out",
           str(run.parent), "--name", name, "--no-progress", "--device", device,
           "--set", f"train.eval_metrics={eval_metrics}"]
    cmd += [] if steps is None else ["--steps", str(steps)]
    for kv in [*extra, *sets]:  # the arm's own switches last: they define the arm
        cmd += ["--set", kv]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    spec = {"cmd": cmd[1:], "threads": threads}
    old = _done_before(run, spec)
    if old is None:
        if run.exists():
            aside = run.with_name(f"{run.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            run.rename(aside)
        t0 = time.perf_counter()
        code, cpu_s, err = _run_timed(cmd, env)
        if code != 0:
            raise RuntimeError(f"{claim_name} / {arm} seed {seed} failed (exit {code}):\n{err[-2000:]}")
        seconds = time.perf_counter() - t0
        (run / "experiment.json").write_text(json.dumps({**spec, "seconds": seconds, "cpu_s": cpu_s}))
    else:
        seconds, cpu_s = old["seconds"], old.get("cpu_s")
    m = json.loads((run / "metrics.json").read_text())["metrics"]
    scores = digits_run_scores(run)
    m.update({k: scores[k] for k in DIGITS})
    m["seconds"] = seconds
    if cpu_s is not None:
        m["cpu_s"] = cpu_s
    m["steps"] = json.loads((run / "config.json").read_text())["train"]["steps"]
    return m


def _same_settings(run: Path, argv: list) -> bool:
    """Whether a finished run's model settings (config.json) are what the training arguments `argv` (after
    `-m ssgan_fast.train`) resolve to now: every value the preset and the switches set. A reused run whose
    preset has changed since would be another model's."""
    from .train import build_parser, resolve
    try:
        have = json.loads((run / "config.json").read_text())["model"]
    except (OSError, ValueError, KeyError):
        return False
    want = json.loads(json.dumps(resolve(build_parser().parse_args(argv)).model_cfg))
    return all(have.get(k) == v for k, v in want.items())


def _run_timed(cmd: list, env: dict) -> tuple:
    """Run `cmd`; return (exit code, its CPU seconds (user + system, this child and its own children),
    the tail of its stderr). The CPU seconds do not grow when other work shares the cores, as wall time does."""
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own resource usage (others may run beside it)
        p.returncode = os.waitstatus_to_exitcode(status)
        err.seek(max(0, err.seek(0, 2) - 4000))
        return p.returncode, usage.ru_utime + usage.ru_stime, err.read().decode(errors="replace")


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Arm b against baseline a over paired seeds: means, sds, the paired difference b - a and its
    two-sided t / Wilcoxon p-values (None where undefined: one seed or no difference)."""
    from scipy import stats
    d = b - a
    sd = lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
    row = {"base_mean": float(a.mean()), "base_sd": sd(a), "mean": float(b.mean()), "sd": sd(b),
           "diff_mean": float(d.mean()), "diff_sd": sd(d), "t_p": None, "wilcoxon_p": None}
    if len(d) > 1 and np.any(d != 0):
        row["t_p"] = float(stats.ttest_rel(b, a).pvalue)
        row["wilcoxon_p"] = float(stats.wilcoxon(b, a).pvalue)
    return row


def verdict(key: str, row: dict, alpha: float = 0.05) -> str:
    """'better' / 'worse' (paired t p < alpha, in the metric's direction) or 'no difference shown'."""
    p = row["t_p"]
    if p is None or p >= alpha:
        return "no difference shown"
    up = METRIC_INFO.get(key, (key, True))[1]
    return "better" if (row["diff_mean"] > 0) == up else "worse"


def _tag(arm: str) -> str:
    """An arm's run-folder name part."""
    return arm.replace(" ", "_").replace("+", "p").replace("(", "").replace(")", "").replace("/", "")


def claim_arms(name: str, quick: bool = False, all_arms: bool = False) -> tuple:
    """The arms trained for claim `name`: the --quick subset, the paper's rows (default) or every arm."""
    c = CLAIMS[name]
    if quick:
        return c.quick
    return tuple(a for a in c.arms if all_arms or a not in c.further)


def run_claims(names: list, seeds: int, out: Path, jobs: int = 2, threads: int = 1, quick: bool = False,
               steps: int | None = None, device: str = "cpu", extra: list = (), all_arms: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for n in names:
        for seed in range(seeds):
            for arm in claim_arms(n, quick, all_arms):
                model, sets = CLAIMS[n].arms[arm]
                tasks.append((n, arm, model, sets, seed))
    tasks.sort(key=lambda t: -CLAIMS[t[0]].cost_s)  # longest first: the short runs fill the end (stable sort)
    est = sum(CLAIMS[t[0]].cost_s for t in tasks) * threads / max(1, jobs) / 60
    print(f"{len(tasks)} runs, {jobs} at a time: about {est:.0f} min on idle cores "
          f"(from each claim's measured CPU seconds per run at the default steps)", flush=True)
    t0 = time.perf_counter()

    def work(t):
        n, arm, model, sets, seed = t
        c = CLAIMS[n]
        m = _run_one(n, arm, model, sets, seed, out, threads, c.eval_metrics, steps or c.steps, device, extra)
        shown = "  ".join(f"{k} {m[k]:.2f}" for k in (*CLAIMS[n].metrics, *DIGITS) if k in m)
        print(f"{n} / {arm} seed {seed}: {shown}  ({m['seconds']:.0f} s)", flush=True)
        return t, m

    with ThreadPoolExecutor(max(1, jobs)) as ex:
        done = list(ex.map(work, tasks))
    runs = {}
    for (n, arm, _, _, seed), m in done:
        runs.setdefault(n, {}).setdefault(arm, {})[seed] = m
    result = {"seeds": seeds, "threads": threads, "jobs": jobs, "quick": quick, "all_arms": all_arms,
              "set": list(extra), "wall_s": time.perf_counter() - t0,
              "cpu_s": sum(m.get("cpu_s", float("nan")) for _, m in done), "claims": {}}
    for n, arms in runs.items():
        c = CLAIMS[n]
        base = arms[c.baseline]
        table = {}
        for arm, per_seed in arms.items():
            if arm == c.baseline:
                continue
            rows = {}
            for k in (*c.metrics, *DIGITS):
                if not all(k in per_seed[s] and k in base[s] for s in range(seeds)):
                    continue
                r = paired(np.array([base[s][k] for s in range(seeds)]),
                           np.array([per_seed[s][k] for s in range(seeds)]))
                r["verdict"] = verdict(k, r)
                rows[k] = r
            table[arm] = rows
        result["claims"][n] = {"paper": c.paper, "where": c.where, "claim": c.text, "baseline": c.baseline,
                               "seeds": seeds, "metrics": list(c.metrics) + list(DIGITS), "notes": c.notes,
                               "steps": sorted({m["steps"] for a in arms.values() for m in a.values()}),
                               "runs": {a: [arms[a][s] for s in range(seeds)] for a in arms}, "paired": table}
    (out / "claims.json").write_text(json.dumps(result, indent=1))
    for n in result["claims"]:
        plot_claim(n, result["claims"][n], out / f"claim-{n}.png")
        samples_grid(n, out, out / f"claim-{n}-samples.png", list(runs[n]))
    print(markdown_table(result))
    return result


def markdown_table(result: dict) -> str:
    lines = []
    for n, c in result["claims"].items():
        seeds = c.get("seeds", result["seeds"])
        lines += [f"### {n}: {c['claim']}", "", f"{c['paper']}, {c['where']}; {seeds} paired seeds, "
                  f"{', '.join(map(str, c['steps']))} steps; baseline: {c['baseline']}.", "",
                  "| arm | metric | baseline | arm | arm - baseline | t p | Wilcoxon p | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm, rows in c["paired"].items():
            for k, r in rows.items():
                p = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
                lines.append(f"| {arm} | {METRIC_INFO.get(k, (k,))[0]} | {r['base_mean']:.2f} ± {r['base_sd']:.2f} | "
                             f"{r['mean']:.2f} ± {r['sd']:.2f} | {r['diff_mean']:+.2f} ± {r['diff_sd']:.2f} | "
                             f"{p(r['t_p'])} | {p(r['wilcoxon_p'])} | {r['verdict']} |")
        lines += [f"- {note}" for note in c["notes"]] + [""]
    return "\n".join(lines)


def plot_claim(name: str, c: dict, path: Path) -> None:
    """One panel per metric: the value per seed, one line per arm (paired seeds on the x axis)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = c["metrics"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False)
    for ax, k in zip(axes[0], keys, strict=True):
        for arm, runs in c["runs"].items():
            vals = [r.get(k, np.nan) for r in runs]
            ax.plot(range(len(vals)), vals, marker="o", lw=2.5 if arm == c["baseline"] else 1.5,
                    ls="--" if arm == c["baseline"] else "-", label=arm)
        label, up = METRIC_INFO.get(k, (k, True))
        ax.set_title(f"{label} ({'higher' if up else 'lower'} is better)", fontsize=8)
        ax.set_xlabel("seed", fontsize=8)
        ax.set_xticks(range(len(next(iter(c["runs"].values())))))
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{name}: {c['claim']}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_grid(run_dir, rows: int = 4, upscale: int = 1):
    """(images [rows * cols, C, H, W] in [0, 1], cols) of a digits run for a person to judge: one row per
    noise draw (EVAL_SEED, so every run of a model gets the same noise), one column per class, from the
    EMA generator where kept. A translation model (AAM-StarGAN): one row per held-out test digit, the
    source first, then its translation into each domain. ``upscale``: nearest-neighbour magnification."""
    import torch
    import torch.nn.functional as F

    from .data import open_dataset
    from .engine.run import EVAL_SEED, load_run
    run = load_run(run_dir, "cpu")
    mods, nc = run.generator(), run.info["num_classes"]
    with torch.no_grad():
        if hasattr(run.model, "translate"):
            ds = open_dataset("digits", split="test", size=run.cfg.size)
            x = torch.from_numpy(ds.images[:rows]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
            imgs = torch.stack([x] + [run.model.translate(x, t, G=mods["G"]) for t in range(nc)], 1)
        else:
            g = torch.Generator().manual_seed(EVAL_SEED)
            z = run.model.noise(rows, generator=g, device="cpu")
            imgs = torch.stack([run.model.sample(torch.full((rows,), c), z, mods) for c in range(nc)], 1)
    cols = imgs.shape[1]
    imgs = imgs.flatten(0, 1).float().clamp(-1, 1).add(1).div(2)
    if upscale > 1:
        imgs = F.interpolate(imgs, scale_factor=upscale, mode="nearest")
    return imgs, cols


def samples_grid(name: str, out: Path, path: Path, arms: list, seed: int = 0, rows: int = 4) -> None:
    """One block of rows per arm (in `arms` order, a white row between blocks): seed `seed`'s run of
    each arm through ``run_grid``, the same noise (or the same source digits) for every arm."""
    import torch
    import torchvision.utils as vu
    blocks = []
    for arm in arms:
        imgs, cols = run_grid(out / name / f"{_tag(arm)}-s{seed}", rows, upscale=2)
        blocks += [imgs, torch.ones_like(imgs[:cols])]
    path.parent.mkdir(parents=True, exist_ok=True)
    vu.save_image(torch.cat(blocks[:-1]), path, nrow=cols, padding=1, pad_value=1.0)

"""Trainer engine and CLI: resume exactness, CLI errors, non-finite losses, DDP, --compile, skip snapshots."""
import json

import numpy as np
import pytest
import torch

from ssgan_fast.generate import main as generate_main
from ssgan_fast.train import main as train_main

TINY = ["--size", "8", "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8",
        "--set", "model.latent_dim=8", "--set", "model.num_prototypes=4", "--set", "model.prior_samples=200",
        "--batch", "4", "--no-progress", "--no-final-eval"]


def test_resume_is_bit_exact(tmp_path):
    common = TINY + ["--out", str(tmp_path), "--set", "train.log_every=1", "--ckpt-every", "3",
                     "--sample-every", "0"]
    assert train_main(common + ["--name", "full", "--steps", "6"]) == 0
    assert train_main(common + ["--name", "part", "--steps", "3"]) == 0
    assert train_main(["--resume", str(tmp_path / "part"), "--steps", "6", "--no-progress", "--no-final-eval"]) == 0
    full = (tmp_path / "full" / "losses.jsonl").read_text().splitlines()
    part = (tmp_path / "part" / "losses.jsonl").read_text().splitlines()
    assert len(full) == len(part) == 6
    assert full == part  # identical JSON lines: bit-for-bit the same losses
    for f in ("config.json", "split.json", "ckpt/last.pt", "samples/final.png"):
        assert (tmp_path / "full" / f).is_file()
    try:
        import tensorboard  # noqa: F401
        assert list((tmp_path / "full" / "tb").glob("events.*"))  # scalars written when TensorBoard is installed
    except ImportError:
        pass
    # generate from the run
    out = tmp_path / "s.npz"
    assert generate_main(["--ckpt", str(tmp_path / "full"), "--per-class", "3", "--out", str(out),
                          "--png", str(tmp_path / "g.png")]) == 0
    z = np.load(out)
    assert z["images"].shape == (30, 8, 8, 1) and z["images"].dtype == np.uint8
    assert sorted(set(z["labels"])) == list(range(10))


@pytest.mark.parametrize("argv,msg", [
    (["--graphs"], "CUDA device"),
    (["--set", "train.max_bad_fraction=2"], "max_bad_fraction"),
    (["--set", "model.nope=1"], "unknown key"),
    (["--set", "train.nope=1"], "unknown train setting"),
    (["--set", "model.lam=abc"], "number"),
    (["--set", "model.lam=.inf"], "finite number"),
    (["--set", "model.c_fake_weight=abc"], "c_fake_weight must be a number or null"),  # a `float | None` field
    (["--set", "model.g_sn=1"], "g_sn must be true/false"),
    (["--set", "lam=2"], "train.<field>"),
    (["--data", "folder:/does/not/exist"], "does not exist"),
    (["--labels-per-class", "500"], "fewer labeled"),
    (["--compile", "--set", "train.compile_backend=nope"], "compile_backend"),
])
def test_cli_rejects_bad_settings(argv, msg, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        train_main(argv + ["--out", str(tmp_path), "--steps", "1", "--no-progress", "--no-final-eval"])
    assert e.value.code == 2
    assert msg in capsys.readouterr().err


@pytest.mark.parametrize("extra,named", [(["--model", "medgan"], "--model"), (["--set", "model.lam=3"], "--set"),
                                         (["--batch", "8"], "--batch"), (["--no-ema"], "--no-ema"),
                                         (["--data", "digits", "--size", "16"], "--size"), (["--out", "x"], "--out")])
def test_resume_refuses_flags_that_would_change_the_run(extra, named, tmp_path, capsys):
    """--resume continues a run as configured: a flag that would change it exits 2 naming it (was: ignored)."""
    assert train_main(TINY + ["--out", str(tmp_path), "--name", "r", "--steps", "1"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        train_main(["--resume", str(tmp_path / "r"), "--steps", "2", *extra])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and named in err and "would change" in err
    assert train_main(["--resume", str(tmp_path / "r"), "--steps", "2", "--no-progress", "--no-final-eval",
                       "--device", "cpu"]) == 0


def test_set_reads_exponents_without_a_dot_as_numbers():
    """YAML 1.1 reads 1e-4 as a string; --set / --config values of number fields accept it all the same."""
    from ssgan_fast.models import get_model
    from ssgan_fast.models.base import config_from_dict
    M = get_model("aam-acgan")
    c = config_from_dict(M.Config, {"lr": "1e-4", "n_dis": "2", "s": "3E1"}, "x")
    assert c.lr == 1e-4 and c.n_dis == 2 and isinstance(c.n_dis, int) and c.s == 30.0
    with pytest.raises(ValueError, match="must be a number"):
        config_from_dict(M.Config, {"lr": "fast"}, "x")


def test_cli_help_lists_flags(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--data", "--amp", "--graphs", "--resume", "--set", "--steps", "--epochs", "--ckpt-every"):
        assert flag in text


def test_nonfinite_loss_stops_with_name(tmp_path, monkeypatch):
    from ssgan_fast.models import sphericgan
    orig = sphericgan.SphericGAN.train_step
    calls = []

    def bad(self, batch, step, amp=None):
        out = orig(self, batch, step, amp)
        calls.append(step)
        if step == 2 and calls.count(2) == 1:  # one bad step per run
            out["G/adv"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(sphericgan.SphericGAN, "train_step", bad)
    rc = train_main(TINY + ["--out", str(tmp_path), "--name", "nan", "--steps", "5"])
    assert rc == 3
    calls.clear()
    rc = train_main(TINY + ["--out", str(tmp_path), "--name", "skip", "--steps", "5", "--skip-nonfinite"])
    assert rc == 0
    last = json.loads((tmp_path / "skip" / "losses.jsonl").read_text().splitlines()[-1])
    assert last["skipped"] == 1 and last["step"] == 5


def _ddp_worker(rank, world, port, out):
    import os

    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    import functools

    import ssgan_fast.evaluation as ev
    from ssgan_fast.engine.trainer import Trainer
    from ssgan_fast.train import build_parser, resolve
    ev._random_inception = functools.partial(ev._random_inception, input_size=75)  # the small_inception fixture's
    os.environ.update(SSGAN_FAST_CACHE=str(out / "cache"), SSGAN_FAST_WEIGHTS=str(out / "weights"))
    tiny = ["--size", "8", "--set", "model.ch=4", "--set", "model.c_ch=4", "--set", "model.z_dim=8", "--batch", "4",
            "--no-progress", "--no-final-eval", "--set", "train.eval_every=3", "--set", "train.eval_metrics=fid,kid",
            "--set", "train.eval_extractor=inception-random", "--set", "train.eval_samples_per_class=3"]
    cfg = resolve(build_parser().parse_args(tiny + ["--out", str(out), "--name", "ddp", "--steps", "3",
                                                    "--model", "triplegan", "--device", "cpu"]))
    tr = Trainer(cfg)
    assert tr.world == 2 and tr.loader.sampler.unl.size < len(tr.split.unlabeled)  # a shard per rank
    tr.fit()  # the evaluation at step 3 runs on both ranks, each with its share
    torch.save({k: v for k, v in tr.model.state_dict().items()}, out / f"rank{rank}.pt")
    torch.save(dict(tr.evaluate()["metrics"]), out / f"metrics{rank}.pt")
    dist.destroy_process_group()


def test_ddp_two_gloo_processes(tmp_path):
    """torchrun-style 2-process run on CPU: every rank ends with the same networks (averaged grads)."""
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, tmp_path), nprocs=2)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a:
        if k.startswith(("G.", "D.", "C.")) and "running" not in k and "num_batches" not in k:
            assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "ddp" / "ckpt" / "last.pt").is_file()
    # the distributed evaluation: every rank gets rank 0's result, which rank 0 alone wrote (twice: step 3 in
    # fit, then the call above)
    m0, m1 = torch.load(tmp_path / "metrics0.pt"), torch.load(tmp_path / "metrics1.pt")
    assert {k: v for k, v in m0.items() if k != "c_acc"} == m1 and {"fid", "kid_mean"} <= set(m1)  # c_acc: rank 0's
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["fid"] == pytest.approx(m0["fid"])


@pytest.mark.parametrize("model,backend", [("sphericgan", "aot_eager"), ("sphericgan", "inductor"),
                                           ("aam-stargan", "inductor")])
def test_compile_flag_trains_and_checkpoints(model, backend, tmp_path, monkeypatch):
    """--compile compiles every network in place: the same losses as eager for the same seed (inductor
    fuses and reorders float math: close, not equal), and checkpoint keys unchanged. Spectral norm's
    power iteration (D runs several times before one backward) and StarGAN's gradient penalty
    (double backward, run uncompiled) are the parts that need care. Inductor draws its own random
    numbers (C's dropout) unless fallback_random is set, as here, to compare with eager."""
    import torch._inductor.config as ic
    monkeypatch.setattr(ic, "fallback_random", True)
    extra = TINY if model == "sphericgan" else ["--size", "8", "--batch", "4", "--no-progress", "--no-final-eval",
                                                "--set", "model.ch=4", "--set", "model.g_repeat=1",
                                                "--set", "model.n_critic=2"]
    common = extra + ["--out", str(tmp_path), "--steps", "2", "--set", "train.log_every=1", "--model", model]
    assert train_main(common + ["--name", "eager"]) == 0
    assert train_main(common + ["--name", "comp", "--compile", "--set", f"train.compile_backend={backend}"]) == 0
    e = [json.loads(row) for row in (tmp_path / "eager" / "losses.jsonl").read_text().splitlines()]
    c = [json.loads(row) for row in (tmp_path / "comp" / "losses.jsonl").read_text().splitlines()]
    tol = dict(rel=1e-4, abs=1e-5) if backend == "aot_eager" else dict(rel=2e-3, abs=2e-4)
    assert len(e) == len(c) == 2
    for a, b in zip(e, c, strict=False):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], **tol), k
    ke = torch.load(tmp_path / "eager" / "ckpt" / "last.pt", weights_only=False)["model"].keys()
    kc = torch.load(tmp_path / "comp" / "ckpt" / "last.pt", weights_only=False)["model"].keys()
    assert ke == kc


def test_skip_snapshot_restores_the_pre_step_state(tmp_path):
    """--skip-nonfinite must undo the bad step: the snapshot may not alias the live parameters."""
    from ssgan_fast.engine.trainer import Trainer
    from ssgan_fast.train import build_parser, resolve
    cfg = resolve(build_parser().parse_args(TINY + ["--out", str(tmp_path), "--steps", "1"]))
    tr = Trainer(cfg)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    snap = tr._snapshot()
    tr.model.train_step(next(tr.loader), 0, tr.amp)
    assert any(not torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    tr._restore(snap)
    for k, v in tr.model.state_dict().items():
        assert torch.equal(before[k], v), k

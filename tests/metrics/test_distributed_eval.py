"""Evaluation under torch.distributed (torchrun): two gloo processes each take a share of both sides and
merge; every metric equals the single-process value to float64 rounding, on every rank, with and without
the cached reference statistics."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from ssgan_fast.evaluation import Samples, evaluate
from ssgan_fast.evaluation.distributed import share, sliced

C, PER, SIZE = 3, 7, 16
METRICS = ["fid", "intra_fid", "cfid", "is", "kid", "pr", "dc", "ra"]


def _pictures(seed: int, shift: float, per: int = PER):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), per)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=float)[y][:, None, None, :]
    x = base + shift + rng.normal(0, 30, (len(y), SIZE, SIZE, 3))
    return x.clip(0, 255).astype(np.uint8), y


def _evaluate():
    import ssgan_fast.evaluation as ev
    if not isinstance(ev._random_inception, functools.partial):  # 75 px (the conftest's small_inception)
        ev._random_inception = functools.partial(ev._random_inception, input_size=75)
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0, per=8)
    return evaluate((fx, fy), (rx, ry), None, METRICS, extractor="inception-random", batch=4, classifier_epochs=2)


def _stats_file_sides(stats_dir):
    """FID with one side a statistics file (pytorch-fid .npz): samples against the real digits' file, and
    the samples' file against the real images."""
    import ssgan_fast.evaluation as ev
    if not isinstance(ev._random_inception, functools.partial):
        ev._random_inception = functools.partial(ev._random_inception, input_size=75)
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0, per=8)
    kw = dict(size=None, metrics=["fid"], extractor="inception-random", batch=4)
    return (evaluate((fx, fy), f"{stats_dir}/real.npz", **kw)["metrics"]["fid"],
            evaluate(f"{stats_dir}/fake.npz", (rx, ry), **kw)["metrics"]["fid"])


def _worker(rank, world, init, out, env, stats_dir):
    import os

    import torch.distributed as dist
    os.environ.update(env)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        for run in range(2):  # the second finds the reference statistics in rank 0's cache
            res = _evaluate()
            with open(f"{out}.{run}.{rank}", "w") as f:
                json.dump({"metrics": dict(res["metrics"]), "distributed": res.get("distributed")}, f)
        with open(f"{out}.stats.{rank}", "w") as f:
            json.dump(_stats_file_sides(stats_dir), f)
    finally:
        dist.destroy_process_group()


def test_share_and_sliced_cover_every_sample_once_in_order():
    for n, b, w in [(21, 4, 2), (5, 4, 3), (100, 7, 4), (1, 1, 2)]:
        parts = [share(n, b, r, w) for r in range(w)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(parts[i][1] == parts[i + 1][0] for i in range(w - 1))
        assert all(lo % b == 0 for lo, _ in parts)  # whole batches: the extractor sees the single-process batches
    x = torch.arange(10)
    got = list(sliced(((x[i:i + 4], x[i:i + 4]) for i in range(0, 10, 4)), 3, 9))
    assert torch.cat([a for a, _ in got]).tolist() == list(range(3, 9))
    s = Samples.from_arrays(np.zeros((10, 4, 4, 1), np.uint8), np.arange(10), batch=4)
    seen = []
    for r in range(2):
        lo, it = s.share(r, 2)
        ys = torch.cat([y for _, y in it])
        assert int(ys[0]) == lo
        seen += ys.tolist()
    assert seen == list(range(10))


def test_generate_batches_share_is_the_full_pass_slice():
    """A run's samples of one share are the same images as in the full pass (the noise of the batches before
    is drawn, their images are not)."""
    from ssgan_fast.engine.run import generate_batches

    class M:
        calls = 0

        def noise(self, n, generator, device):
            return torch.randn(n, 3, generator=generator)

        def sample(self, y, z, modules):
            M.calls += 1
            return z + y[:, None]
    full = torch.cat([x for x, _ in generate_batches(M(), {}, 4, 5, 7, "cpu", 3)])
    M.calls = 0
    part = torch.cat([x for x, _ in generate_batches(M(), {}, 4, 5, 7, "cpu", 3, lo=9, hi=15)])
    assert torch.equal(part, full[9:15]) and M.calls == 2


@pytest.mark.usefixtures("private_caches")
def test_two_gloo_processes_equal_one(tmp_path, monkeypatch):
    import os

    import torch.multiprocessing as mp

    import ssgan_fast.evaluation as ev
    monkeypatch.setattr(ev, "_random_inception", functools.partial(ev._random_inception, input_size=75))
    kw = dict(size=None, metrics=["fid"], extractor="inception-random", batch=4, use_cache=False)
    evaluate(_pictures(0, 30.0), _pictures(9, 0.0), save_real_stats=tmp_path / "real.npz", **kw)
    evaluate(_pictures(9, 0.0), _pictures(0, 30.0), save_real_stats=tmp_path / "fake.npz", **kw)
    env = {k: os.environ[k] for k in ("SSGAN_FAST_WEIGHTS", "SSGAN_FAST_CACHE")}
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "res"), env, str(tmp_path)), nprocs=2)
    monkeypatch.setenv("SSGAN_FAST_CACHE", str(tmp_path / "single-cache"))
    single_stats = _stats_file_sides(tmp_path)
    for rank in range(2):  # a statistics-file side: each rank streams its share of the images' side
        got = json.loads((tmp_path / f"res.stats.{rank}").read_text())
        assert got == pytest.approx(list(single_stats), rel=1e-9), rank
    single = _evaluate()["metrics"]
    assert set(single) >= {"fid", "intra_fid", "cfid", "is_mean", "kid_mean", "precision", "recall", "density",
                           "coverage", "ra"}
    for run in range(2):
        for rank in range(2):
            got = json.loads((tmp_path / f"res.{run}.{rank}").read_text())
            assert got["distributed"]["world_size"] == 2
            assert set(got["metrics"]) == set(single)
            for k, v in single.items():
                assert got["metrics"][k] == pytest.approx(v, rel=1e-9, abs=1e-12), (run, rank, k)

"""Evaluation over the ranks of a torch.distributed group (a run under torchrun, or
``torchrun -m ssgan_fast.evaluate``): every rank extracts the features of its share of the generated
samples and of the real images, and the shares are merged - feature statistics summed
(``FeatureStats.all_reduce``), the Inception Score's per-split sums summed, classifier hits summed, the kept
features (KID, precision / recall, density / coverage) gathered in rank order. Shares are whole batches,
contiguous, in rank order: every batch the extractor sees is the batch a single process would feed it,
and the gathered features are in the single-process order, so the values equal the single-process values
to float64 rounding (the sums are added in another order).

Rank 0 computes the metrics from the merged statistics (and alone trains what must be trained: the
RA classifier when none is cached, GAN-train's), then sends the result to the other ranks.
"""
from __future__ import annotations

import torch

__all__ = ["rank_world", "share", "sliced", "merge", "broadcast", "barrier"]


def _dist():
    import torch.distributed as dist
    return dist


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the default group; (0, 1) outside torch.distributed or with one process."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def share(n: int, batch: int, rank: int, world: int) -> tuple[int, int]:
    """Rank `rank`'s samples [lo, hi) of n in batches of `batch`: a contiguous block of whole batches."""
    nb = -(-n // batch)
    return min(n, nb * rank // world * batch), min(n, nb * (rank + 1) // world * batch)


def sliced(batches, lo: int, hi: int):
    """The samples [lo, hi) of a stream of (x, y) batches; batches after hi are never drawn."""
    i = 0
    for x, y in batches:
        b = x.shape[0]
        a, e = max(lo - i, 0), min(hi - i, b)
        if a < e:
            yield (x, y) if (a, e) == (0, b) else (x[a:e], y[a:e])
        i += b
        if i >= hi:
            return


def _backend_device(t: torch.Tensor) -> torch.device:
    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return t.device if t.device.type == "cpu" else torch.device("cpu")


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    dist = _dist()
    dev = _backend_device(t)
    u = t.to(dev)
    dist.all_reduce(u, op=op or dist.ReduceOp.SUM)
    t.copy_(u.to(t.device))
    return t


def merge(c, total: int | None = None, keep: bool = False):
    """Sum a Collected (ssgan_fast.metrics.scores) over the ranks, in place: statistics, per-class
    statistics, the IS sums (``total``: the samples of all ranks), hits; with ``keep``, gather the kept
    features (a rank with no samples has none). Every rank must call it with the same arguments."""
    dist = _dist()
    c.stats.all_reduce()
    if c.cstats is not None:
        c.cstats.all_reduce()
    if c.is_acc is not None:
        acc = c.is_acc
        k = torch.tensor([0 if acc.psum is None else acc.psum.shape[1]], dtype=torch.float64)
        _all_reduce(k, dist.ReduceOp.MAX)
        if acc.psum is None:
            acc.psum = torch.zeros(acc.splits, int(k), dtype=torch.float64)
        for t in (acc.plogp, acc.psum, acc.n):
            _all_reduce(t)
        acc.seen = int(acc.n.sum()) if total is None else total
    hits = torch.tensor([c.correct, c.count, c.conf_sum], dtype=torch.float64)
    _all_reduce(hits)
    c.correct, c.count, c.conf_sum = int(hits[0]), int(hits[1]), float(hits[2])
    if keep:
        parts = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (c.features, c.labels))
        parts = [p for p in parts if p[0] is not None]
        c.features = torch.cat([p[0] for p in parts]) if parts else None
        c.labels = torch.cat([p[1] for p in parts]) if parts else None
    return c


def broadcast(obj, src: int = 0):
    """`obj` of rank `src` on every rank (pickled)."""
    box = [obj]
    _dist().broadcast_object_list(box, src)
    return box[0]


def barrier() -> None:
    _dist().barrier()

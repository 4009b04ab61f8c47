"""Every autotune config a GPU can pick, executed under the Triton interpreter against the float64
reference. The interpreter normally runs its own tiles (kernels/cosine_logits._blocks, the fused kernels'
BLOCK_B 16 / BLOCK_D 32); SSGAN_FAST_TRITON_CONFIG=i runs each autotuned launch with its autotuner's i-th
config instead (kernels/_launch.py). Shapes leave ragged edges in every tiled dimension (B, K and D not
multiples of any BLOCK_*), and reach every BLOCK_K bucket of the fused kernels and the generic row kernels.
The kNN, CutMix, FeatureStats and prototype-EMA kernels are not autotuned: their fixed GPU tiles are what
the interpreter runs in the op tests."""
from __future__ import annotations

import pytest
import torch

from ssgan_fast.ops import aam_cross_entropy, aam_logits, clustering_loss, cosine_softmax
from ssgan_fast.ops import reference as R

from .util import assert_close

kl = pytest.importorskip("ssgan_fast.kernels._launch")
# (B, D, K): fused BLOCK_K 64 (forward, backward, cross-entropy), 128 (forward, backward), 256 (forward), and
# the generic row kernels (K > 256, two BLOCK_K 1024 chunks of the widest config)
SHAPES = [(37, 45, 50), (23, 20, 100), (19, 33, 200), (5, 45, 1100)]
N_CONFIGS = 4  # the most candidates any autotuner has (kernels/cosine_logits._TILES, cosine_logits_fused)


def _ops_against_reference(B, D, K):
    g = torch.Generator().manual_seed(B * 1000 + K)
    x0, w0, go = torch.randn(B, D, generator=g), torch.randn(K, D, generator=g), torch.randn(B, K, generator=g)
    t = torch.randint(0, K, (B,), generator=g)
    cases = [("cosine_softmax", lambda x, w: (cosine_softmax(x, w, 0.3) * go).sum(),
              lambda x, w: (R.cosine_softmax(x, w, 0.3) * go.double()).sum()),
             ("clustering_loss", lambda x, w: clustering_loss(x, w, 0.3), lambda x, w: R.clustering_loss(x, w, 0.3)),
             ("aam_logits", lambda x, w: (aam_logits(x, w, t) * go).sum(),
              lambda x, w: (R.aam_logits(x, w, t) * go.double()).sum()),
             ("aam_cross_entropy", lambda x, w: aam_cross_entropy(x, w, t), lambda x, w: R.aam_cross_entropy(x, w, t))]
    for name, op, ref in cases:
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        out = op(x, w)
        out.backward()
        xr, wr = x0.double().requires_grad_(), w0.double().requires_grad_()
        want = ref(xr, wr)
        want.backward()
        what = f"{name} B={B} D={D} K={K}"
        assert_close(out, want, 1e-5, 1e-4, what)
        assert_close(x.grad, xr.grad, 1e-5, 1e-4, what + " grad x")
        assert_close(w.grad, wr.grad, 1e-5, 1e-4, what + " grad w")


def _expected_configs():
    """(kernel name, config) of every candidate the shapes' launches can pick on a GPU."""
    from ssgan_fast.kernels import cosine_logits as rows
    from ssgan_fast.kernels import cosine_logits_fused as fused
    want = set()
    for tuned, kernel in ((rows._fwd_tuned, rows._fwd_rows_kernel), (rows._bwd_tuned, rows._bwd_rows_kernel),
                          (rows._ce_tuned, rows._ce_rows_kernel)):
        want |= {(kl._name(kernel), tuple(sorted(c.kwargs.items()))) for c in tuned.configs}
    for table, kernel, buckets in ((fused._fused_tuned, fused._fused_fwd_kernel, (64, 128, 256)),
                                   (fused._fused_bwd_tuned, fused._fused_bwd_kernel, (64, 128)),
                                   (fused._fused_ce_tuned, fused._fused_ce_kernel, (64,))):
        for bk in buckets:
            want |= {(kl._name(kernel), tuple(sorted(c.kwargs.items()))) for c in table[bk].configs}
    return want


def _run(pairs, monkeypatch):
    if not kl.interpreting():
        pytest.skip("a GPU autotunes itself; this runs the configs under the interpreter")
    monkeypatch.setenv("SSGAN_FAST_BACKEND", "triton")
    kl.EXECUTED_CONFIGS.clear()
    for i, shape in pairs:
        monkeypatch.setenv(kl.FORCED_CONFIG_ENV, str(i))
        _ops_against_reference(*shape)
    return kl.EXECUTED_CONFIGS


def test_every_autotune_config_at_ragged_shapes(monkeypatch):
    """Every config index at every shape (about 30 s on 2 cores): every candidate of every autotuner the
    shapes reach runs, and the run records that each did."""
    ran = _run([(i, s) for i in range(N_CONFIGS) for s in SHAPES], monkeypatch)
    missing = _expected_configs() - ran
    assert not missing, f"{len(missing)} autotune configs never executed, e.g. {sorted(missing)[:3]}"

"""Op contract: argument errors, backend selection, custom-op registration, torch.compile."""
import pytest
import torch

import ssgan_fast
from ssgan_fast import _backends
from ssgan_fast.nn import AAMHead, PrototypeHead
from ssgan_fast.ops import (
    aam_cross_entropy,
    aam_logits,
    clustering_loss,
    cosine_softmax,
    group_offsets,
    prototype_ema_update,
)

X = torch.randn(4, 6)
P = torch.randn(3, 6)
T = torch.tensor([0, 2, 1, 1])


@pytest.mark.parametrize("fn", [lambda x, p: cosine_softmax(x, p), lambda x, p: clustering_loss(x, p),
                                lambda x, p: aam_logits(x, p, T), lambda x, p: aam_cross_entropy(x, p, T)])
@pytest.mark.parametrize("backend", ["ref", "cpp"])
def test_bad_shapes_and_dtypes(fn, backend, use_backend):
    use_backend(backend)
    with pytest.raises(ValueError, match=r"x must be 2-D"):
        fn(X[0], P)
    with pytest.raises(ValueError, match=r"has D = 5 features"):
        fn(X[:, :5], P)
    with pytest.raises(TypeError, match=r"x must be a floating-point"):
        fn(X.long(), P)
    with pytest.raises(TypeError, match=r"must be a floating-point"):
        fn(X, P.int())
    with pytest.raises(ValueError, match=r"x is empty"):
        fn(X[:0], P)
    with pytest.raises(ValueError, match=r"is on meta"):
        fn(X, P.to("meta"))
    with pytest.raises(TypeError, match=r"must be a torch.Tensor"):
        fn(X.tolist(), P)


@pytest.mark.parametrize("backend", ["ref", "cpp"])
def test_bad_values(backend, use_backend):
    use_backend(backend)
    for tau in (0.0, -1.0, torch.tensor(-0.5)):
        with pytest.raises(ValueError, match=r"tau must be > 0"):
            cosine_softmax(X, P, tau)
    with pytest.raises(ValueError, match=r"target has values in \[0, 3\] but there are 3 classes"):
        aam_cross_entropy(X, P, torch.tensor([0, 3, 1, 1]))
    with pytest.raises(ValueError, match=r"target has values in \[-1, 2\]"):
        aam_logits(X, P, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(TypeError, match=r"target must be an integer tensor"):
        aam_logits(X, P, T.float())
    with pytest.raises(ValueError, match=r"target must have shape \[4\]"):
        aam_logits(X, P, T[:3])
    with pytest.raises(ValueError, match=r"reduction must be one of"):
        aam_cross_entropy(X, P, T, reduction="avg")
    with pytest.raises(ValueError, match=r"m \(the angular margin"):
        aam_logits(X, P, T, m=-0.1)
    with pytest.raises(ValueError, match=r"s \(the logit scale\)"):
        aam_logits(X, P, T, s=0.0)
    offsets = group_offsets([1, 2])
    with pytest.raises(ValueError, match=r"group labels has values in \[0, 2\] but there are 2 classes"):
        cosine_softmax(X, P, 1.0, (torch.tensor([0, 1, 2, 1]), offsets))
    with pytest.raises(ValueError, match=r"non-decreasing within \[0, K = 3\]"):
        cosine_softmax(X, P, 1.0, (torch.tensor([0, 1, 1, 1]), torch.tensor([0, 2, 5])))
    with pytest.raises(ValueError, match=r"owns no prototype"):
        cosine_softmax(X, P, 1.0, (torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 3])))
    with pytest.raises(ValueError, match=r"at least one prototype"):
        group_offsets([1, 0])
    with pytest.raises(TypeError, match=r"group must be a pair"):
        cosine_softmax(X, P, 1.0, torch.tensor([0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"momentum must be a float in \[0, 1\]"):
        prototype_ema_update(P.clone(), X, torch.rand(4, 3), 1.5)
    with pytest.raises(ValueError, match=r"weights must have shape \[N, K\] = \[4, 3\]"):
        prototype_ema_update(P.clone(), X, torch.rand(4, 2), 0.1)


def test_forced_backend_unavailable_raises(use_backend, monkeypatch):
    use_backend("cuda")
    with pytest.raises(RuntimeError, match=r"SSGAN_FAST_BACKEND=cuda was requested but cannot run on cpu"):
        cosine_softmax(X, P)
    use_backend("triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"SSGAN_FAST_BACKEND=triton was requested.*TRITON_INTERPRET=1"):
        aam_cross_entropy(X, P, T)
    use_backend("fastest")
    with pytest.raises(ValueError, match=r"SSGAN_FAST_BACKEND='fastest' is not a backend"):
        cosine_softmax(X, P)


def test_default_backend_on_cpu_is_cpp(monkeypatch):
    monkeypatch.delenv("SSGAN_FAST_BACKEND", raising=False)
    assert _backends.pick_backend(torch.device("cpu")) == "cpp"


def test_build_info_reports_every_backend(capsys):
    info = ssgan_fast.build_info(print_=True)
    assert set(info["backends"]) == {"ref", "cpp", "cuda", "triton", "cuda_emu"}  # cuda_emu: tests only, when forced
    assert info["backends"]["ref"]["available"] and info["backends"]["cpp"]["available"]
    for name, v in info["backends"].items():
        assert v["available"] or v["reason"], f"{name} is unavailable without a reason"
    out = capsys.readouterr().out
    assert "torch" in out and "cpp" in out


def test_kernels_package_is_installed_as_subpackage():
    import ssgan_fast.kernels.cosine_logits as k
    assert callable(k.softmax_rows) and callable(k.ce_bwd_rows)


@pytest.mark.parametrize("device,backend", [("cpu", "cpp"), pytest.param("cuda", "triton", marks=pytest.mark.gpu),
                                            pytest.param("cuda", "cuda", marks=pytest.mark.gpu)])
def test_opcheck(device, backend, use_backend):
    """Schema, fake (meta) kernels, autograd registration and AOT dispatch of each custom op.

    (Not run on the Triton interpreter: opcheck's schema mode makes Triton look for a GPU driver.)"""
    use_backend(backend)
    x = torch.randn(5, 7, device=device, requires_grad=True)
    p = torch.randn(4, 7, device=device, requires_grad=True)
    t = torch.tensor([0, 3, 1, 2, 2], device=device)
    tau = torch.tensor(0.5, dtype=torch.float64, device=device)
    lo = torch.tensor([0, 1, 0, 2, 0], device=device)
    hi = torch.tensor([2, 4, 4, 3, 1], device=device)
    ops = torch.ops.ssgan_fast
    cases = [
        (ops.cosine_softmax.default, (x, p, tau, 1.0, None, None, backend)),
        (ops.cosine_softmax.default, (x, p, None, 2.0, lo, hi, backend)),
        (ops.clustering_loss.default, (x, p, tau, 1.0, 4.0, backend)),
        (ops.aam_logits.default, (x, p, t, 30.0, 0.5, backend)),
        (ops.aam_cross_entropy.default, (x, p, t, 30.0, 0.5, "mean", True, backend, 2)),
        (ops.aam_cross_entropy.default, (x, p, t, 30.0, 0.5, "none", True, backend, 2)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration",
                                                    "test_aot_dispatch_dynamic"))
    torch.library.opcheck(ops.prototype_ema_update.default,
                          (p.detach().clone(), x.detach(), torch.rand(5, 4, device=device), 0.1, backend))


def _train_fn(x, p, w, t, labels, offsets):
    probs = cosine_softmax(x, p, 0.5, (labels, offsets))
    loss = clustering_loss(x, p, 0.3) + aam_cross_entropy(x, w, t, 16.0, 0.3)
    return loss + (probs * probs).sum() + aam_logits(x, w, t).mean()


@pytest.mark.parametrize("device,backend", [("cpu", "cpp"), pytest.param("cuda", "triton", marks=pytest.mark.gpu),
                                            pytest.param("cuda", "cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(compile_backend, device, backend, use_backend):
    """A function using every op compiles without graph breaks and matches eager, grads included."""
    use_backend(backend)
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, generator=g).to(device).requires_grad_()
    p = torch.randn(4, 6, generator=g).to(device).requires_grad_()
    w = torch.randn(5, 6, generator=g).to(device).requires_grad_()
    t = torch.randint(0, 5, (8,), generator=g).to(device)
    labels = torch.randint(0, 2, (8,), generator=g).to(device)
    offsets = group_offsets([2, 2]).to(device)
    eager = _train_fn(x, p, w, t, labels, offsets)
    ge = torch.autograd.grad(eager, (x, p, w))
    compiled = torch.compile(_train_fn, fullgraph=True, backend=compile_backend)
    out = compiled(x, p, w, t, labels, offsets)
    gc = torch.autograd.grad(out, (x, p, w))
    assert torch.allclose(out, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(gc, ge, strict=False):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_convergence_fused_equals_reference(use_backend):
    """A tiny classifier with an AAM head and a prototype head trains the same with fused and ref ops."""
    def run(backend):
        use_backend(backend)
        torch.manual_seed(0)
        data = torch.randn(64, 8)
        labels = (data[:, 0] > 0).long() + 2 * (data[:, 1] > 0).long()
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh())
        aam, proto = AAMHead(16, 4, s=8.0, m=0.2), PrototypeHead(16, 6, tau=0.5)
        opt = torch.optim.Adam([*net.parameters(), *aam.parameters(), *proto.parameters()], lr=1e-2)
        losses = []
        for _ in range(30):
            f = net(data)
            loss = aam.loss(f, labels) + 0.1 * proto.clustering_loss(f)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses
    fused, ref = run("cpp"), run("ref")
    assert fused[-1] < 0.5 * fused[0]
    assert max(abs(a - b) for a, b in zip(fused, ref, strict=False)) < 1e-3


@pytest.mark.parametrize("backend", ["cpp", "triton", "ref"])
def test_ops_under_autocast(backend, use_backend):
    """Inside a bf16 autocast region the ops still get their fp32 GEMMs (autocast is off inside)."""
    from ssgan_fast.ops import aam_cross_entropy, clustering_loss, cosine_softmax, prototype_ema_update
    use_backend(backend)
    x = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(5, 8, requires_grad=True)
    t = torch.randint(0, 5, (6,))
    want = cosine_softmax(x, w, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = cosine_softmax(x, w, 0.5)
        loss = clustering_loss(x, w) + aam_cross_entropy(x, w, t)
        prototype_ema_update(w.detach().clone(), x.detach(), got.detach(), 0.1)
    loss.backward()
    torch.testing.assert_close(got, want)
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("family", ["prototype", "aam", "cutmix", "feature_stats", "knn"])
def test_each_family_walks_its_own_triton_dispatch(family):
    """tools/aot.py finds each family's AOT walk in the family's module (aot_cases): the walk exists,
    yields labelled cases, and every case runs on meta tensors without data (the quick grid)."""
    import importlib

    from ssgan_fast.kernels._launch import recording
    cases = list(importlib.import_module(f"ssgan_fast.ops.{family}").aot_cases(False))
    assert cases and all(isinstance(label, str) and callable(fn) for label, fn in cases)
    with recording(dry=True) as rec:
        for label, fn in cases[:3]:
            rec.label = label
            fn()
    assert rec.specs, f"{family}'s first AOT cases launched no Triton kernel"

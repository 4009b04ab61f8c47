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


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_non_contiguous_inputs(backend, use_backend):
    """Transposed / strided views give the same values and grads as contiguous copies."""
    use_backend(backend)
    g = torch.Generator().manual_seed(7)
    xt = torch.randn(6, 9, generator=g).t().requires_grad_()     # [9, 6], column-major
    wbig = torch.randn(7, 12, generator=g)
    w = wbig[:, ::2].detach().requires_grad_()                     # [7, 6], strided
    t = torch.randint(0, 7, (9,), generator=g)
    for fn in (lambda a, b: cosine_softmax(a, b, 0.4).square().sum(),
               lambda a, b: aam_cross_entropy(a, b, t, 10.0, 0.3),
               lambda a, b: aam_logits(a, b, t, 10.0, 0.3).square().sum()):
        xt.grad = w.grad = None
        fn(xt, w).backward()
        xr, wr = xt.detach().double().contiguous().requires_grad_(), w.detach().double().contiguous().requires_grad_()
        use_backend("ref")
        fn(xr, wr).backward()
        use_backend(backend)
        assert torch.allclose(xt.grad.double(), xr.grad, atol=1e-5, rtol=1e-4)
        assert torch.allclose(w.grad.double(), wr.grad, atol=1e-5, rtol=1e-4)


def test_double_backward_is_refused_not_wrong(use_backend):
    """Second derivatives (e.g. an R1 penalty through the head) raise instead of being silently 0."""
    use_backend("cpp")
    x = torch.randn(4, 6, requires_grad=True)
    loss = aam_cross_entropy(x, P, T, 10.0, 0.2) + cosine_softmax(x, P).square().sum()
    (gx,) = torch.autograd.grad(loss, x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|differentiate"):
        gx.square().sum().backward()


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


@pytest.mark.parametrize("op", ["cosine_softmax", "clustering_loss", "aam_logits", "aam_cross_entropy"])
def test_cxx_autograd_glue_equals_the_python_autograd_glue(op, use_backend):
    """The autograd glue, not the kernels: eager calls on the cpp backend run the C++ autograd
    Function (csrc/autograd.cpp), and it must give the values and gradients of the Python Function
    (the Triton path's form) around the same cpp host calls - what is saved, the temperature's
    gradient (dtau), the group ranges, every reduction and the fused / recomputed cross-entropy
    branches. The kernels themselves are checked against the float64 reference in test_prototype /
    test_aam."""
    from ssgan_fast.ops import _cosine_logits as CL
    use_backend("cpp")
    g = torch.Generator().manual_seed(3)
    x0, w0 = torch.randn(9, 13, generator=g), torch.randn(7, 13, generator=g)
    y = torch.randint(0, 7, (9,), generator=g)
    up = torch.randn(9, 7, generator=g)
    lo, hi = torch.tensor([0, 2, 2, 0, 5, 0, 2, 5, 0]), torch.tensor([2, 5, 5, 2, 7, 2, 5, 7, 2])
    tau0 = torch.tensor(0.7)

    def run(python: bool, variant):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        tau = tau0.clone().requires_grad_()
        kw = {"python_function": python}  # the eager form; the host is the cpp backend's either way
        if op == "cosine_softmax":
            args = (x, w, tau, 1.0, lo, hi, "cpp") if variant else (x, w, None, 2.0, None, None, "cpp")
            out = CL.cosine_softmax_op(*args, **kw)
            (out * up).sum().backward()
        elif op == "clustering_loss":
            out = CL.clustering_loss_op(x, w, tau if variant else None, 1.0 if variant else 2.0, 4.0, "cpp", **kw)
            out.backward()
        elif op == "aam_logits":
            out = CL.aam_logits_op(x, w, y, 30.0, 0.5 if variant else 0.0, "cpp", **kw)
            (out * up).sum().backward()
        else:
            red, need_grad, chunk = variant
            out = CL.aam_cross_entropy_op(x, w, y, 30.0, 0.5, red, need_grad, "cpp", chunk, **kw)
            (out * torch.arange(1.0, 10.0) if red == "none" else out * 1.5).sum().backward()
        name = out.grad_fn.name()
        return out.detach(), x.grad, w.grad, tau.grad, name

    variants = ([("mean", True, 3), ("sum", True, 3), ("none", True, 3), ("mean", False, 3)]
                if op == "aam_cross_entropy" else [False, True])
    for v in variants:
        c, p = run(False, v), run(True, v)
        assert "CppNode" in c[4] and "CppNode" not in p[4]
        for a, b in zip(c[:4], p[:4], strict=False):
            if b is None:
                assert a is None
            else:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

"""The cosine-logits core shared by the prototype and aam families (ssgan_fast/ops/cosine_logits.py,
csrc/cosine_logits/, kernels/cosine_logits*.py): each op's autograd forms agree - the C++ autograd
Function (the cpp / cuda backends' eager form), the Python Function (Triton's eager form) and the
torch.library custom op (what torch.compile traces, and the form bench/ops/cosine_logits.py times) - and
the glue handles strided inputs, autocast and second derivatives. The kernels themselves are checked
against the float64 reference in test_prototype.py and test_aam.py."""
import pytest
import torch

from ssgan_fast.ops import aam_cross_entropy, aam_logits, cosine_softmax

X = torch.randn(4, 6)
P = torch.randn(3, 6)
T = torch.tensor([0, 2, 1, 1])


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


@pytest.mark.parametrize("op", ["cosine_softmax", "clustering_loss", "aam_logits", "aam_cross_entropy"])
def test_the_three_autograd_forms_agree(op, use_backend):
    """The autograd glue, not the kernels: eager calls on the cpp backend run the C++ autograd
    Function (csrc/cosine_logits/cosine_logits_autograd.cpp), and it must give the values and gradients
    of the Python Function (the Triton path's form) and of the custom op around the same cpp host calls -
    what is saved, the temperature's
    gradient (dtau), the group ranges, every reduction and the fused / recomputed cross-entropy
    branches. The kernels themselves are checked against the float64 reference in test_prototype /
    test_aam."""
    from ssgan_fast.ops import cosine_logits as CL
    use_backend("cpp")
    g = torch.Generator().manual_seed(3)
    x0, w0 = torch.randn(9, 13, generator=g), torch.randn(7, 13, generator=g)
    y = torch.randint(0, 7, (9,), generator=g)
    up = torch.randn(9, 7, generator=g)
    lo, hi = torch.tensor([0, 2, 2, 0, 5, 0, 2, 5, 0]), torch.tensor([2, 5, 5, 2, 7, 2, 5, 7, 2])
    tau0 = torch.tensor(0.7)

    def call(wrapper, args, python, kw):
        return wrapper.custom_op(*args)[0] if python == "custom_op" else wrapper(*args, **kw)

    def run(python, variant):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        tau = tau0.clone().requires_grad_()
        # the eager form; the host is the cpp backend's either way. "custom_op": the torch.library op, eagerly
        kw = {} if python == "custom_op" else {"python_function": python}
        if op == "cosine_softmax":
            args = (x, w, tau, 1.0, lo, hi, "cpp") if variant else (x, w, None, 2.0, None, None, "cpp")
            out = call(CL.cosine_softmax_op, args, python, kw)
            (out * up).sum().backward()
        elif op == "clustering_loss":
            args = (x, w, tau if variant else None, 1.0 if variant else 2.0, 4.0, "cpp")
            out = call(CL.clustering_loss_op, args, python, kw)
            out.backward()
        elif op == "aam_logits":
            args = (x, w, y, 30.0, 0.5 if variant else 0.0, "cpp")
            out = call(CL.aam_logits_op, args, python, kw)
            (out * up).sum().backward()
        else:
            red, need_grad, chunk = variant
            args = (x, w, y, 30.0, 0.5, red, need_grad, "cpp", chunk)
            out = call(CL.aam_cross_entropy_op, args, python, kw)
            (out * torch.arange(1.0, 10.0) if red == "none" else out * 1.5).sum().backward()
        name = out.grad_fn.name()
        return out.detach(), x.grad, w.grad, tau.grad, name

    variants = ([("mean", True, 3), ("sum", True, 3), ("none", True, 3), ("mean", False, 3)]
                if op == "aam_cross_entropy" else [False, True])
    for v in variants:
        c, p, o = run(False, v), run(True, v), run("custom_op", v)
        assert "CppNode" in c[4] and "CppNode" not in p[4] and "CppNode" not in o[4]
        for other in (p, o):
            for a, b in zip(c[:4], other[:4], strict=False):
                if b is None:
                    assert a is None
                else:
                    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

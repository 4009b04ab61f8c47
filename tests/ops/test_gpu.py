"""GPU-only checks (marked `gpu`, skipped without CUDA): the papers' shapes on the Triton and CUDA
backends (autotuned kernels, several row blocks, the generic and the single-launch paths), and
CUDA-graph capture of a forward + backward that uses the ops (no host sync, static memory)."""
import pytest
import torch

from ssgan_fast.ops import aam_cross_entropy, aam_logits, clustering_loss, cosine_softmax
from ssgan_fast.ops import reference as R

from .util import assert_close

pytestmark = pytest.mark.gpu


def _ref_grads(fn, *tensors):
    leaves = [t.detach().double().cpu().requires_grad_() for t in tensors]
    out = fn(*leaves)
    out.backward()
    return out, [t.grad for t in leaves]


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("B,D,K", [(256, 512, 200), (64, 128, 10), (256, 512, 300)])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_paper_shapes(backend, B, D, K, dtype, tol, use_backend):
    use_backend(backend)
    g = torch.Generator().manual_seed(0)
    x0, p0 = torch.randn(B, D, generator=g).to(dtype), torch.randn(K, D, generator=g).to(dtype)
    t = torch.randint(0, K, (B,), generator=g)
    cases = [
        (lambda a, b: clustering_loss(a, b, 0.3), lambda a, b: R.clustering_loss(a, b, 0.3)),
        (lambda a, b: cosine_softmax(a, b, 0.3).float().square().sum(),
         lambda a, b: R.cosine_softmax(a, b, 0.3).square().sum()),
        (lambda a, b: aam_cross_entropy(a, b, t.cuda(), 30.0, 0.5),
         lambda a, b: R.aam_cross_entropy(a, b, t, 30.0, 0.5)),
        (lambda a, b: aam_logits(a, b, t.cuda(), 30.0, 0.5).float().square().mean(),
         lambda a, b: R.aam_logits(a, b, t, 30.0, 0.5).square().mean()),
    ]
    for fused, ref in cases:
        x, p = x0.cuda().requires_grad_(), p0.cuda().requires_grad_()
        out = fused(x, p)
        out.backward()
        want, (gx, gp) = _ref_grads(ref, x0, p0)
        assert_close(out, want, tol, tol, "value")
        assert_close(x.grad, gx, tol, tol, "grad x")
        assert_close(p.grad, gp, tol, tol, "grad w")


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_large_C_cross_entropy_memory(backend, use_backend):
    """C = 100 000: the fused loss keeps no [B, C] tensor; its fwd+bwd peak is <= 1/3 of eager's."""
    use_backend(backend)
    B, D, C = 256, 512, 100_000
    x = torch.randn(B, D, device="cuda", requires_grad=True)
    w = torch.randn(C, D, device="cuda", requires_grad=True)
    t = torch.randint(0, C, (B,), device="cuda")

    def peak(fn):
        x.grad = w.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    fused = peak(lambda: aam_cross_entropy(x, w, t))
    gx, gw = x.grad.clone(), w.grad.clone()
    eager = peak(lambda: R.aam_cross_entropy(x, w, t))
    assert torch.allclose(gx, x.grad, atol=1e-5, rtol=1e-3) and torch.allclose(gw, w.grad, atol=1e-6, rtol=1e-3)
    assert fused <= eager / 3, f"fused peak {fused / 2**20:.0f} MiB vs eager {eager / 2**20:.0f} MiB"


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_cuda_graph_capture(backend, use_backend):
    """A step using the ops captures into a CUDA graph and replays to the eager result."""
    use_backend(backend)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(64, 128, device="cuda", generator=g, requires_grad=True)
    w = torch.randn(10, 128, device="cuda", generator=g, requires_grad=True)
    p = torch.randn(20, 128, device="cuda", generator=g, requires_grad=True)
    t = torch.randint(0, 10, (64,), device="cuda", generator=g)

    def step():
        loss = aam_cross_entropy(x, w, t, 16.0, 0.3) + clustering_loss(x, p, 0.5) + cosine_softmax(x, p).square().mean()
        return (loss, *torch.autograd.grad(loss, (x, w, p)))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: autotuning and allocator pools happen here, not in the capture
            eager = step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = step()
    with torch.no_grad():
        x.add_(0.01)  # new values in the same memory: the replay must see them
    graph.replay()
    eager = step()
    for a, b in zip(static, eager, strict=False):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_cutmix_pipeline_cuda_graph_capture(use_backend):
    """Box sampling (explicit generator) + cutmix + mask_embed capture in one CUDA graph; each replay
    draws new boxes, and the outputs match the eager reference for the boxes it drew."""
    from ssgan_fast.ops import cutmix, mask_embed, sample_cutmix_boxes
    from ssgan_fast.ops import reference as R
    use_backend("triton")
    dev = "cuda"
    gen = torch.Generator(dev).manual_seed(0)
    xa, xb = torch.randn(8, 3, 32, 32, device=dev), torch.randn(8, 3, 32, 32, device=dev)
    emb = torch.randn(8, 1, 8, 8, device=dev)

    def step():
        boxes, area = sample_cutmix_boxes(8, 32, 32, 0.2, generator=gen, device=dev)
        mixed, mask = cutmix(xa, xb, boxes)
        return boxes, mixed, mask_embed(mixed, emb)

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    g.register_generator_state(gen.graphsafe_get_state())
    with torch.cuda.graph(g):
        out = step()
    seen = []
    for _ in range(3):
        g.replay()
        torch.cuda.synchronize()
        boxes, mixed, emb_out = (t.clone() for t in out)
        ref_mixed, _ = R.cutmix(xa, xb, boxes)
        torch.testing.assert_close(mixed, ref_mixed, rtol=0, atol=0)
        torch.testing.assert_close(emb_out, R.mask_embed(ref_mixed, emb))
        seen.append(boxes.cpu())
    assert not torch.equal(seen[0], seen[1])


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_feature_stats_large_cuda(backend, use_backend):
    """Inception-sized features on the GPU (2048-d, 200 classes, several row chunks) vs float64."""
    from ssgan_fast.ops import FeatureStats
    use_backend(backend)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(9000, 2048, generator=g) * 2
    y = torch.randint(0, 200, (9000,), generator=g)
    y[:5000] = 7  # one class over two 4096-row chunks
    st = FeatureStats(2048, 200, device="cuda").update(x.cuda(), y.cuda())
    xd = x.double()
    for c in (7, 100):
        xc = xd[y == c]
        torch.testing.assert_close(st.mean(c).cpu(), xc.mean(0), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(st.cov(c).cpu(), torch.cov(xc.t()), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(st.cov().cpu(), torch.cov(xd.t()), rtol=1e-4, atol=1e-5)

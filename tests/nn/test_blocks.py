"""ssgan_fast.nn.blocks: spectral norm under torch.compile."""
import torch


def test_spectral_norm_compiles_with_two_forwards_before_backward():
    """The case torch's own parametrization fails under inductor (torch 2.14): same values and grads as
    eager, and the same u / v updates, over three steps."""
    import copy

    from ssgan_fast.nn.blocks import SNLinear
    torch.manual_seed(0)
    m = torch.nn.Sequential(SNLinear(4, 8), torch.nn.ReLU(), SNLinear(8, 1))
    ref = copy.deepcopy(m)
    m.compile(backend="inductor")
    x = torch.randn(5, 4)
    for _ in range(3):
        for net in (m, ref):
            net.zero_grad()
            (net(x).sum() - net(x + 1).sum()).backward()
        for (n, a), b in zip(m.named_parameters(), ref.parameters(), strict=False):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=n)
    for (n, a), b in zip(m.named_buffers(), ref.buffers(), strict=False):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)

"""ssgan_fast.nn heads: PrototypeHead, AAMHead and AuxClassifier as drop-in modules, against their formulas."""
import pytest
import torch
import torch.nn.functional as F

from ssgan_fast.nn import AAMHead, AuxClassifier, PrototypeHead
from ssgan_fast.ops import reference as R


def test_modules_drop_in():
    torch.manual_seed(0)
    head = PrototypeHead(6, 4, tau=0.2, learn_tau=True)
    x = torch.randn(9, 6, requires_grad=True)
    probs = head(x)
    assert probs.shape == (9, 4) and torch.allclose(probs.sum(1), torch.ones(9), atol=1e-5)
    head.clustering_loss(x).backward()
    assert head.prototypes.grad is not None and head.log_tau.grad is not None and x.grad is not None
    ref = R.cosine_softmax(x.detach(), head.prototypes.detach(), head.tau.detach())
    assert torch.allclose(probs.detach(), ref, atol=1e-6)

    aam = AAMHead(6, 5, s=10.0, m=0.3, calibrate=False)
    y = torch.randint(0, 5, (9,))
    loss = aam.loss(x, y)
    loss.backward()
    assert aam.weight.grad is not None
    assert torch.allclose(loss, R.aam_cross_entropy(x, aam.weight, y, 10.0, 0.3), atol=1e-5)
    pred = aam(x)
    assert torch.allclose(pred, 10.0 * R.cosine_logits(x, aam.weight), atol=1e-4)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        AAMHead(6, 1)
    with pytest.raises(ValueError, match="tau must be > 0"):
        PrototypeHead(6, 3, tau=0.0)


def test_aux_classifier_matches_formulas():
    torch.manual_seed(1)
    h, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(0, 4, (7,))
    soft = AuxClassifier(5, 4, "softmax").double()
    assert torch.allclose(soft.loss(h, y), F.cross_entropy(soft.fc(h), y))
    aam = AuxClassifier(5, 4, "aam", s=10.0, m=0.3).double()
    W = F.normalize(aam.head.weight, dim=1)
    cos = F.normalize(h, dim=1) @ W.t()
    th = torch.acos(cos.gather(1, y[:, None]).clamp(-1, 1))
    logits = (10 * cos).scatter(1, y[:, None], 10 * torch.cos(th + 0.3))  # Eq. 8 (theta + m <= pi here)
    assert torch.allclose(aam.loss(h, y), F.cross_entropy(logits, y), atol=1e-6)
    # multi-attribute: softmax = per-attribute BCE; AAM = mean of per-attribute 2-class AAM losses
    a = torch.randint(0, 2, (7, 3)).double()
    ms = AuxClassifier(5, 4, "softmax", num_attrs=3).double()
    assert torch.allclose(ms.loss(h, a), F.binary_cross_entropy_with_logits(ms.fc(h), a))
    ma = AuxClassifier(5, 4, "aam", num_attrs=3).double()
    want = sum(hd.loss(h, a[:, i].long()) for i, hd in enumerate(ma.heads)) / 3
    assert torch.allclose(ma.loss(h, a), want) and ma.probs(h).shape == (7, 3)
    with pytest.raises(ValueError, match="aam' or 'softmax"):
        AuxClassifier(5, 4, "arc")


@pytest.mark.parametrize("C,s,m", [(10, 30.0, 0.5), (2, 64.0, 0.5), (100, 8.0, 0.2), (7, 5.0, 2.0)])
def test_chance_loss_is_the_loss_at_right_angles(C, s, m):
    """aam_chance_loss = the Eq. 8 loss of a feature orthogonal to every class weight (m = 2 > pi / 2:
    the op's linear continuation of the target logit)."""
    from ssgan_fast.ops import aam_chance_loss
    w = torch.eye(C + 1, dtype=torch.float64)[:C]  # class weights: the first C axes
    x = torch.eye(C + 1, dtype=torch.float64)[C:].repeat(3, 1)  # the last axis: cos theta = 0 for every class
    y = torch.tensor([0, C - 1, C // 2])
    assert aam_chance_loss(C, s, m) == pytest.approx(float(R.aam_cross_entropy(x, w, y, s, m)), rel=1e-9)
    with pytest.raises(ValueError, match="num_classes"):
        aam_chance_loss(1, s, m)


def test_calibrated_head_starts_at_log_c_and_scales_only_the_loss():
    """AAMHead(calibrate=True), the default: the raw Eq. 8 loss times log C / aam_chance_loss, so an
    untrained head's loss is log C as softmax's; the logits are Eq. 8's."""
    import math

    from ssgan_fast.ops import aam_chance_loss
    torch.manual_seed(3)
    cal, raw = AAMHead(11, 10), AAMHead(11, 10, calibrate=False)
    raw.weight.data.copy_(cal.weight.data)
    x, y = torch.randn(32, 11, dtype=torch.float64), torch.randint(0, 10, (32,))
    cal, raw = cal.double(), raw.double()
    k = math.log(10) / aam_chance_loss(10, 30.0, 0.5)
    assert cal.calibrate and not raw.calibrate and cal.loss_scale == pytest.approx(k)
    assert torch.allclose(cal.loss(x, y), k * raw.loss(x, y))
    assert torch.equal(cal(x, y), raw(x, y)) and torch.equal(cal(x), raw(x))
    w = torch.linalg.qr(torch.randn(11, 11, dtype=torch.float64))[0]  # an orthonormal basis
    cal.weight.data.copy_(w[:10])
    assert float(cal.loss(w[10:].repeat(4, 1), y[:4])) == pytest.approx(math.log(10), rel=1e-9)


def test_aam_head_conv_features_and_ignore_index():
    """[B, D, 1, 1] features (a conv classifier's output) are flattened; rows with target ==
    ignore_index add nothing: "mean" over the rest, "none" zero there, no row left -> 0."""
    torch.manual_seed(4)
    head = AAMHead(6, 4).double()
    x = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, -1, 2, 3, -1, 1, 0, 2])
    keep = y >= 0
    assert torch.allclose(head.loss(x[:, :, None, None], y.clamp(min=0)), head.loss(x, y.clamp(min=0)))
    assert torch.allclose(head(x[:, :, None, None]), head(x))
    got = head.loss(x, y, ignore_index=-1)
    assert torch.allclose(got, head.loss(x[keep], y[keep]))
    got.backward()
    assert torch.all(x.grad[~keep] == 0) and torch.any(x.grad[keep] != 0)
    per = head.loss(x, y, "none", ignore_index=-1)
    assert torch.all(per[~keep] == 0) and torch.allclose(per[keep], head.loss(x[keep], y[keep], "none"))
    assert float(head.loss(x[:2], torch.tensor([-1, -1]), ignore_index=-1)) == 0.0

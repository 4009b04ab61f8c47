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

    aam = AAMHead(6, 5, s=10.0, m=0.3)
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

"""Precision / recall on VGG-16 fc2 features (pr_features="vgg16", stylegan2-ada's pr50k3 choice) and the
float16 kept-features option. A random-weight VGG-16 stands in for the registry weights (the same code
path); 12 images of 16 px a side."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import vgg16

from ssgan_fast.data import images_to_tensor
from ssgan_fast.evaluate import main as evaluate_main
from ssgan_fast.evaluation import EvalError, evaluate
from ssgan_fast.metrics.manifold import manifold_metrics
from ssgan_fast.metrics.vgg16 import IMAGENET_MEAN, IMAGENET_STD, VGG16Features
from ssgan_fast.weights import WeightsError

C, PER, SIZE = 3, 4, 16


def _pictures(seed: int, shift: float):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), PER)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=float)[y][:, None, None, :]
    x = base + shift + rng.normal(0, 30, (len(y), SIZE, SIZE, 3))
    return x.clip(0, 255).astype(np.uint8), y


pytestmark = pytest.mark.usefixtures("private_caches", "small_inception")


@pytest.fixture(scope="module")
def net():
    return VGG16Features(pretrained=False)


def test_features_are_torchvision_vgg16_fc2_after_relu(net):
    """The 4096-d output equals the activations after fc2's ReLU of torchvision's VGG-16 (a forward hook
    on classifier[4]) with the same weights, on the ImageNet-normalised 224 px input; gray is repeated."""
    ref = vgg16(weights=None).eval()
    ref.features.load_state_dict(net.features.state_dict())
    sd = {f"{i}.{k}": v for i, m in enumerate(net.head) for k, v in m.state_dict().items()}
    ref.classifier.load_state_dict(sd, strict=False)
    got = {}
    ref.classifier[4].register_forward_hook(lambda m, i, o: got.__setitem__("fc2", o))
    x = torch.rand(3, 3, 37, 29) * 2 - 1
    with torch.no_grad():
        out = net(x)["pool"]
        z = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        z = ((z + 1) / 2 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        ref(z)
    assert out.shape == (3, 4096) and bool((out >= 0).all())
    torch.testing.assert_close(out, got["fc2"], rtol=1e-5, atol=1e-6)
    g = x[:, :1]
    torch.testing.assert_close(net(g)["pool"], net(g.expand(-1, 3, -1, -1))["pool"])
    assert net.ident.startswith("vgg16-random:") and net.ident.endswith("+fc2-relu")
    assert VGG16Features(pretrained=False).ident == net.ident  # seeded: the same random network each build
    with pytest.raises(ValueError, match="images must be"):
        net(torch.zeros(2, 4, 8, 8))


def test_registry_weights_are_required_for_vgg16(tmp_path):
    with pytest.raises(WeightsError, match="vgg16-397923af.pth"):
        VGG16Features(pretrained=True)
    fx, fy = _pictures(0, 30.0)
    with pytest.raises(EvalError, match="VGG-16 weights"):
        evaluate((fx, fy), (fx, fy), None, ["pr"], extractor="inception-random", pr_features="vgg16")


def test_precision_recall_on_vgg16_features(net):
    """pr / intra_pr with pr_features=vgg16-random: keys with the _vgg16 suffix, equal to the k-NN metrics
    on the VGG features of the same images; the other kept metrics (kid, dc) stay on the extractor's."""
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    out = evaluate((fx, fy), (rx, ry), None, ["kid", "pr", "intra_pr", "dc"], extractor="inception-random",
                   pr_features="vgg16-random", batch=6)
    M = out["metrics"]
    assert "precision" not in M and "recall" not in M and {"kid_mean", "density", "coverage"} <= set(M)
    with torch.no_grad():
        fr = net(images_to_tensor(rx))["pool"]
        ff = net(images_to_tensor(fx))["pool"]
    want = manifold_metrics(fr, ff, k_pr=3, k_dc=None)
    assert M["precision_vgg16"] == pytest.approx(want["precision"], abs=1e-12)
    assert M["recall_vgg16"] == pytest.approx(want["recall"], abs=1e-12)
    per = [manifold_metrics(fr[torch.from_numpy(ry == c)], ff[torch.from_numpy(fy == c)], k_pr=3, k_dc=None)
           for c in range(C)]
    assert M["intra_precision_vgg16"] == pytest.approx(np.mean([p["precision"] for p in per]), abs=1e-12)
    assert M["intra_recall_vgg16"] == pytest.approx(np.mean([p["recall"] for p in per]), abs=1e-12)
    v = out["pr_vgg16"]
    assert v["extractor"] == net.ident and v["kept_features"]["dim"] == 4096 and v["kept_features"]["n_fake"] == 12
    assert out["kept_features"]["dim"] == 2048  # the Inception's, for kid / dc
    with pytest.raises(EvalError, match="unknown pr_features"):
        evaluate((fx, fy), (rx, ry), None, ["pr"], extractor="inception-random", pr_features="vgg19")


def test_float16_kept_features(capsys):
    """kept_dtype=float16 keeps the features in half the memory (stated in the result); KID and the k-NN
    metrics move by no more than the rounding's effect (bench/results/.../knn.json measures it at scale)."""
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    kw = {"extractor": "inception-random", "batch": 6}
    a = evaluate((fx, fy), (rx, ry), None, ["kid", "pr", "dc"], **kw)
    b = evaluate((fx, fy), (rx, ry), None, ["kid", "pr", "dc"], kept_dtype="float16", **kw)
    assert a["kept_features"]["dtype"] == "float32" and b["kept_features"]["dtype"] == "float16"
    for k in ("precision", "recall", "density", "coverage"):
        assert abs(a["metrics"][k] - b["metrics"][k]) <= 1 / 12 + 1e-9, k  # at most one point of 12 moves
    assert b["metrics"]["kid_mean"] == pytest.approx(a["metrics"]["kid_mean"], rel=1e-2, abs=1e-5)
    with pytest.raises(EvalError, match="unknown kept_dtype"):
        evaluate((fx, fy), (rx, ry), None, ["kid"], kept_dtype="int8", **kw)
    with pytest.raises(SystemExit):
        evaluate_main(["--fake", "digits", "--metrics", "pr", "--kept-dtype", "bf16"])
    assert "invalid choice" in capsys.readouterr().err

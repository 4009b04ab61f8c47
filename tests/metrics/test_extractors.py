"""The feature spaces of published numbers: --extractor inception-tf (stylegan2-ada / clean-fid's TorchScript
Inception), dinov2 (FD_DINOv2) and clip / clip-l14. Without the real files (none can be fetched here) each
is tested with random weights of its architecture and through its loading path: a TorchScript archive
with stylegan2-ada's calling convention, a DINOv2 checkpoint in the torch-hub layout, written by the test."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssgan_fast.data import images_to_tensor
from ssgan_fast.evaluate import main as evaluate_main
from ssgan_fast.evaluation import EvalError, evaluate, higher_is_better, metric_of
from ssgan_fast.metrics.extractors import DINOv2Features, InceptionTF, dinov2_pos_embed
from ssgan_fast.ops import frechet_distance
from ssgan_fast.weights import REGISTRY, WeightsError, register_weights, sha256_file

pytestmark = pytest.mark.usefixtures("private_caches")
C, PER, SIZE = 2, 5, 16


def _pictures(seed: int, shift: float):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(C), PER)
    base = np.array([[200, 40, 40], [40, 40, 200]], dtype=float)[y][:, None, None, :]
    x = base + shift + rng.normal(0, 30, (len(y), SIZE, SIZE, 3))
    return x.clip(0, 255).astype(np.uint8), y


class _FakeTFInception(torch.nn.Module):
    """stylegan2-ada's calling convention: uint8 [N, 3, H, W] in; 2048-d features with return_features,
    else softmax probabilities over 1008 classes (no_output_bias drops the output bias)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2048, 4, 4)
        self.fc = torch.nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        assert img.dtype == torch.uint8
        x = F.interpolate(img.float() / 127.5 - 1, size=(32, 32), mode="bilinear", align_corners=False)
        f = self.conv(x).relu().mean((2, 3))
        if return_features:
            return f
        logits = f @ self.fc.weight.t()
        if not no_output_bias:
            logits = logits + self.fc.bias
        return torch.softmax(logits, 1)


@pytest.fixture
def tf_inception(tmp_path, monkeypatch):
    """A TorchScript archive in the registry's place of inception-2015-12-05.pt, registered by its sha256."""
    net = _FakeTFInception().eval()
    path = tmp_path / "weights" / REGISTRY["inception-tf"].file
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(net), str(path))
    monkeypatch.setitem(REGISTRY, "inception-tf", REGISTRY["inception-tf"])
    register_weights("inception-tf", path.name, sha256_file(path), "test")
    return net, path


def test_without_the_weights_one_line_says_which_file_to_put_where(tmp_path, capsys):
    with pytest.raises(WeightsError, match=r"inception-2015-12-05\.pt.*f58cb9b6"):
        InceptionTF()
    fx, fy = _pictures(0, 0.0)
    with pytest.raises(EvalError, match="inception-tf needs its weights"):
        evaluate((fx, fy), (fx, fy), None, ["fid"], extractor="inception-tf")
    np.savez(tmp_path / "s.npz", images=fx, labels=fy)
    for kind, file in (("dinov2", "dinov2_vitl14_pretrain.pth"), ("clip-l14", "ViT-L-14.pt")):
        code = evaluate_main(["--fake", str(tmp_path / "s.npz"), "--real", str(tmp_path / "s.npz"), "--extractor", kind,
                              "--metrics", "fid"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and file in err[0] and "SSGAN_FAST_WEIGHTS" in err[0], err


def test_inception_tf_loads_the_torchscript_and_feeds_it_uint8(tf_inception):
    """Features are the archive's return_features output on stylegan2-ada's uint8 conversion (uint8 data
    comes back exactly); the IS logits are the log of its no-output-bias probabilities; a wrong file is
    refused by its hash."""
    net, path = tf_inception
    ext = InceptionTF()
    assert ext.ident == "inception-tf:" + sha256_file(path)[:16] and ext.dim == 2048
    u8 = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    x = u8.float() / 127.5 - 1
    assert torch.equal(InceptionTF.to_uint8(x), u8)
    out = ext(x)
    with torch.no_grad():
        torch.testing.assert_close(out["pool"], net(u8, return_features=True))
        torch.testing.assert_close(torch.softmax(out["logits"], 1), net(u8, no_output_bias=True))
    torch.testing.assert_close(ext(x[:, :1])["pool"], ext(x[:, :1].expand(-1, 3, -1, -1))["pool"])
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(WeightsError, match="wrong or corrupt"):
        InceptionTF()


def test_evaluate_in_the_inception_tf_space(tf_inception):
    """FID / IS keys without a suffix (the Inception's space), the extractor named in the result; FID equals
    the Fréchet distance of the archive's features of both sides."""
    net, _ = tf_inception
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    out = evaluate((fx, fy), (rx, ry), None, ["fid", "is"], extractor="inception-tf", batch=4)
    M = out["metrics"]
    assert out["extractor"].startswith("inception-tf:") and out["extractor_kind"] == "inception-tf"
    assert "TensorFlow" in out["feature_space"] and {"fid", "is_mean", "is_std"} <= set(M)
    with torch.no_grad():
        f_r = net(torch.from_numpy(rx).permute(0, 3, 1, 2).contiguous(), return_features=True).double()
        f_f = net(torch.from_numpy(fx).permute(0, 3, 1, 2).contiguous(), return_features=True).double()
    want = frechet_distance(f_r.mean(0), torch.cov(f_r.T), f_f.mean(0), torch.cov(f_f.T))
    assert M["fid"] == pytest.approx(float(want), rel=1e-6, abs=1e-8)


def _hub_checkpoint(net) -> dict:
    """A timm DINOv2 ViT's weights in the torch-hub layout (37 x 37 position grid, mask_token)."""
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    return sd


def test_dinov2_position_embedding_follows_dinov2s_rule():
    """37 x 37 -> 16 x 16 as DINOv2's interpolate_pos_encoding: bicubic at scale (16 + 0.1) / 37 without
    antialiasing; the class token's row unchanged; a grid already right is returned as is."""
    torch.manual_seed(0)
    pe = torch.randn(1, 1 + 37 * 37, 8)
    got = dinov2_pos_embed(pe, 16)
    grid = pe[:, 1:].reshape(1, 37, 37, 8).permute(0, 3, 1, 2)
    want = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", antialias=False)
    assert got.shape == (1, 257, 8) and torch.equal(got[:, 0], pe[:, 0])
    torch.testing.assert_close(got[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 256, 8))
    assert dinov2_pos_embed(got, 16) is got
    with pytest.raises(ValueError, match="square grid"):
        dinov2_pos_embed(torch.zeros(1, 11, 8), 4)


def test_dinov2_loads_a_torch_hub_checkpoint(tmp_path):
    """A torch-hub checkpoint (518 px position grid, mask_token) loads into the 224 px network; its features
    are the CLS token of timm's ViT with those weights and the interpolated position grid, on the image
    resized to 224 (bicubic, antialiased) and ImageNet-normalised. A file of another architecture is refused
    naming what is missing; without the file the error names it and its source."""
    import timm
    with pytest.raises(WeightsError, match=r"dinov2_vits14_pretrain\.pth.*dl\.fbaipublicfiles"):
        DINOv2Features(arch="vits14")
    torch.manual_seed(1)
    src = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0).eval()  # 518 px
    path = tmp_path / "weights" / "dinov2_vits14_pretrain.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_hub_checkpoint(src), path)
    ext = DINOv2Features(arch="vits14")
    assert ext.ident == "dinov2-vits14:" + sha256_file(path)[:16] and ext.dim == 384
    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224).eval()
    sd = dict(src.state_dict())
    sd["pos_embed"] = dinov2_pos_embed(sd["pos_embed"], 16)
    ref.load_state_dict(sd)
    x = torch.rand(2, 3, 20, 20) * 2 - 1
    z = F.interpolate((x + 1) / 2, size=(224, 224), mode="bicubic", align_corners=False, antialias=True)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    z = (z - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ext(x)["pool"], ref.forward_head(ref.forward_features(z)), rtol=1e-4, atol=1e-5)
    bad = _hub_checkpoint(src)
    bad.pop("norm.weight")
    torch.save(bad, path)
    with pytest.raises(WeightsError, match="not a DINOv2 vits14 torch-hub checkpoint.*norm.weight"):
        DINOv2Features(arch="vits14")


@pytest.mark.parametrize("kind,suffix,dim", [("dinov2-random", "_dinov2", 384), ("clip-random", "_clip", 512)])
def test_evaluate_in_the_dinov2_and_clip_spaces(kind, suffix, dim):
    """FD, KID, precision / recall under the space's suffix, equal to the metrics of the extractor's
    features computed here; no IS (no class logits: a clear refusal); the result names the space; a
    request for fid says where the value is."""
    from ssgan_fast.evaluation import _random_extractor
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    out = evaluate((fx, fy), (rx, ry), None, ["fid", "kid", "pr"], extractor=kind, batch=5)
    M = out["metrics"]
    assert {f"fid{suffix}", f"kid{suffix}_mean", f"precision{suffix}", f"recall{suffix}"} <= set(M)
    assert out["extractor_kind"] == kind.removesuffix("-random") and "random" in out["extractor_note"]
    ext = _random_extractor(kind)
    assert out["extractor"] == ext.ident and ext.dim == dim
    with torch.no_grad():
        f_r = ext(images_to_tensor(rx))["pool"].double()
        f_f = ext(images_to_tensor(fx))["pool"].double()
    want = frechet_distance(f_r.mean(0), torch.cov(f_r.T), f_f.mean(0), torch.cov(f_f.T))
    assert M[f"fid{suffix}"] == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(KeyError, match=f"fid{suffix}"):
        M["fid"]
    assert not higher_is_better(f"fid{suffix}") and higher_is_better(f"recall{suffix}")
    assert metric_of(f"precision{suffix}") == "pr" and metric_of(f"kid{suffix}_mean") == "kid"
    with pytest.raises(EvalError, match="is needs class logits"):
        evaluate((fx, fy), (rx, ry), None, ["is"], extractor=kind)
    with pytest.raises(EvalError, match="resizes its own way"):
        evaluate((fx, fy), (rx, ry), None, ["fid"], extractor=kind, resize="clean")


def test_periodic_evaluations_reuse_the_extractor_and_the_reference_statistics(tf_inception, tmp_path, caplog):
    """A second evaluation in the same process (a trainer's periodic one) takes the built extractor and the
    real side's statistics from memory: no rebuild, no file read; a replaced weights file builds anew."""
    import logging
    import os

    from ssgan_fast.evaluation import _other_extractor
    net, path = tf_inception
    a = _other_extractor("inception-tf", "cpu")
    assert _other_extractor("inception-tf", "cpu") is a
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    first = evaluate((fx, fy), (rx, ry), None, ["fid", "kid"], extractor="inception-tf", batch=4)
    for f in (tmp_path / "stats").glob("*.npz"):
        f.unlink()  # the file is gone: only the memory can serve the statistics
    with caplog.at_level(logging.INFO, logger="ssgan_fast"):
        second = evaluate((fx, fy), (rx, ry), None, ["fid", "kid"], extractor="inception-tf", batch=4)
    assert "reference statistics" not in caplog.text  # neither read from the file nor computed and cached
    assert dict(second["metrics"]) == dict(first["metrics"])
    os.utime(path, ns=(1, 1))
    assert _other_extractor("inception-tf", "cpu") is not a


def test_first_classifier_training_says_what_it_does_and_how_long_it_will_take(caplog):
    """The RA classifier's first training (evaluate()'s hidden cost) is announced at warning level - what,
    how many images and epochs, where it is cached - with a time estimate after the first epoch."""
    import logging
    fx, fy = _pictures(0, 30.0)
    rx, ry = _pictures(1, 0.0)
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        evaluate((fx, fy), (rx, ry), None, ["ra"], extractor="dinov2-random", classifier_epochs=3, batch=5)
    text = caplog.text
    assert "training the RA classifier" in text and "10 images, 3 epochs" in text and "cached in" in text
    assert "epoch 1 / 3" in text and "s left" in text and "epoch 3 / 3" in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        evaluate((fx, fy), (rx, ry), None, ["ra"], extractor="dinov2-random", classifier_epochs=3, batch=5)
    assert "training the RA classifier" not in caplog.text  # cached


def test_the_built_in_digits_classifiers_are_shipped(tmp_path, monkeypatch, caplog):
    """evaluate() on the built-in digits at the default 30 epochs (16 and 32 px) and the default run's
    classifier (16 px, 10 epochs) load the package's files, checked against the manifest's sha256, and
    train nothing; a file that fails its check is an error, not a silent retraining."""
    import json
    import logging

    import ssgan_fast.evaluation as ev
    from ssgan_fast.data import open_dataset
    from ssgan_fast.weights import sha256_file
    monkeypatch.setenv("SSGAN_FAST_WEIGHTS", str(tmp_path / "empty"))
    manifest = json.loads((ev.SHIPPED_DIR / "manifest.json").read_text())["files"]
    assert {(e["size"], e["seed"], e["epochs"]) for e in manifest.values()} == {(16, 0, 10), (16, 0, 30), (32, 0, 30)}
    for name, e in manifest.items():
        ds = open_dataset("digits", "train", e["size"])
        with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
            model, path, sha = ev.get_classifier("digits", e["size"], ds, "cpu", epochs=e["epochs"], seed=e["seed"])
        assert "training the RA classifier" not in caplog.text
        assert path == str(ev.SHIPPED_DIR / name) and sha == e["sha256"] == sha256_file(ev.SHIPPED_DIR / name)
        test = open_dataset("digits", "test", e["size"])
        acc = ev.test_accuracy(lambda x, m=model: m(x)["logits"].argmax(1), test, "cpu")
        assert acc > 95, (name, acc)  # a trained classifier, not random weights
    fake = open_dataset("digits", "test", 16)
    x = torch.from_numpy(fake.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with caplog.at_level(logging.WARNING, logger="ssgan_fast"):
        out = evaluate((x, torch.from_numpy(fake.labels)), "digits", None, ["fid", "ra"])
    assert "training the RA classifier" not in caplog.text and out["classifier"].startswith(str(ev.SHIPPED_DIR))
    assert not (tmp_path / "empty").exists() or not list((tmp_path / "empty").glob("classifier-*"))
    name = next(iter(manifest))
    monkeypatch.setattr(ev, "_shipped_manifest", lambda: {name: {"sha256": "0" * 64}})
    with pytest.raises(ev.EvalError, match="does not match its sha256"):
        ev.get_classifier("digits", 16, open_dataset("digits", "train", 16), "cpu", epochs=10, seed=0)
